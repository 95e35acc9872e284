"""Workflows, their steps, the dependency edges between steps, run attempts and state events.

PostgreSQL (or SQLite) is the source of truth. The DAG is ``Step`` rows plus ``StepDependency``
edges; this is also the embedded SQL graph store.
"""

import secrets
import uuid

from django.conf import settings
from django.db import models

from workflows.states import WORKFLOW_ENDED, StepState, WorkflowState


class Workflow(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="workflows")
    name = models.CharField(max_length=200)
    state = models.CharField(max_length=20, choices=WorkflowState.choices, default=WorkflowState.SUBMITTED)
    # The entry document, relative to the run directory's ``src/`` folder, and the job order
    # (inputs) with File locations rewritten to absolute file:// URIs under ``src/``.
    main_document = models.CharField(max_length=500)
    cwl_version = models.CharField(max_length=10, blank=True)
    process_class = models.CharField(max_length=30, blank=True)
    inputs = models.JSONField(default=dict)
    outputs = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # How the run ended (COMPLETED, FAILED, PARTIAL_FAIL or CANCELLED), set by the transition
    # that ended it and kept when the workflow becomes ARCHIVED; empty while it runs.
    outcome = models.CharField(
        max_length=20,
        blank=True,
        choices=[(s.value, s.label) for s in WORKFLOW_ENDED],
    )
    # Provenance of a re-executed run: the workflow and the archive (sha256 of the .tgz) it was
    # re-executed from. The source may live on another Apiary instance, hence no foreign key.
    source_workflow_id = models.UUIDField(null=True, blank=True)
    source_archive_sha256 = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "state"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def run_dir(self):
        from workflows.storage import workflow_dir

        return workflow_dir(self.id)


class Archive(models.Model):
    """The archive of a finished workflow: ``<APIARY_ARCHIVE_DIR>/<workflow id>.tgz``.

    A row of its own rather than fields on ``Workflow``: it exists only once packaging has
    succeeded, so "archived" is one join away and a workflow's columns stay about its run. The
    row is written (with the workflow's move to ARCHIVED) only after the file is complete and
    renamed into place; ``size`` and ``sha256`` are those of the file, served to ``apiary copy``
    for verification. Deleting the workflow deletes the row (cascade) and the file (service).
    The archive's own contents are described in ``workers/archive.py``.
    """

    workflow = models.OneToOneField(Workflow, on_delete=models.CASCADE, related_name="archive")
    path = models.CharField(max_length=1000)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    format_version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"archive of {self.workflow_id} ({self.size} bytes)"


class WorkflowEvent(models.Model):
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="events")
    old_state = models.CharField(max_length=20, blank=True)
    new_state = models.CharField(max_length=20)
    reason = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.old_state or '-'} -> {self.new_state} ({self.reason})"


class Step(models.Model):
    """One node of the DAG.

    A top-level step has no ``parent``. A step that runs a nested workflow (kind WORKFLOW) or
    scatters (kind SCATTER) becomes RUNNING when it starts and gets child steps: the nested
    workflow's steps (``outer/inner``) or one element per scatter combination (``step[3]``).
    ``tool_path`` locates the step's process in the submitted document (see ``workflows.cwl``).
    """

    class Kind(models.TextChoices):
        TOOL = "TOOL"  # a CommandLineTool: one batch job per attempt
        EXPRESSION = "EXPRESSION"  # an ExpressionTool: evaluated in the worker
        WORKFLOW = "WORKFLOW"  # a nested workflow: its steps become children
        SCATTER = "SCATTER"  # a scatter: its elements become children

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="steps")
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="children"
    )
    name = models.CharField(max_length=500)
    tool_path = models.JSONField(default=list)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    scatter_index = models.PositiveIntegerField(null=True, blank=True)
    scatter_shape = models.JSONField(null=True, blank=True)
    tool_ref = models.TextField()
    tool_class = models.CharField(max_length=30)
    state = models.CharField(max_length=20, choices=StepState.choices, default=StepState.WAITING)
    job_order = models.JSONField(null=True, blank=True)
    outputs = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    depends_on = models.ManyToManyField(
        "self",
        symmetrical=False,
        through="StepDependency",
        through_fields=("downstream", "upstream"),
        related_name="dependents",
    )

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["workflow", "name"], name="uniq_step_name")]
        indexes = [models.Index(fields=["workflow", "state"])]

    def __str__(self) -> str:
        return f"{self.name} [{self.state}]"

    @property
    def short_name(self) -> str:
        """The name of this step among its siblings (the CWL step id)."""
        return self.tool_path[-1] if self.tool_path else self.name


class StepDependency(models.Model):
    upstream = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="+")
    downstream = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["upstream", "downstream"], name="uniq_step_edge")]

    def __str__(self) -> str:
        return f"{self.upstream_id} -> {self.downstream_id}"


class StepEvent(models.Model):
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="events")
    old_state = models.CharField(max_length=20, blank=True)
    new_state = models.CharField(max_length=20)
    reason = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.old_state or '-'} -> {self.new_state} ({self.reason})"


def _new_run_token() -> str:
    return secrets.token_urlsafe(24)


class StepRun(models.Model):
    """One attempt at running a step as a batch job.

    The job name given to the batch system is :attr:`job_name`, so a job whose ``sbatch``
    reply was lost can be found again by name. ``token`` authenticates the job wrapper's
    completion notice for this run only.
    """

    class BatchState(models.TextChoices):
        PREPARING = "PREPARING"  # row written, script not yet submitted
        SUBMITTED = "SUBMITTED"
        PENDING = "PENDING"
        RUNNING = "RUNNING"
        ENDED = "ENDED"  # the batch job left the system; see exit_code / batch_state_detail

    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="runs")
    attempt = models.PositiveIntegerField()
    batch_system = models.CharField(max_length=20)
    batch_job_id = models.CharField(max_length=64, blank=True)
    batch_state = models.CharField(max_length=20, choices=BatchState.choices, default=BatchState.PREPARING)
    batch_state_detail = models.CharField(max_length=40, blank=True)
    node = models.CharField(max_length=200, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    token = models.CharField(max_length=64, default=_new_run_token, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    finalized = models.BooleanField(default=False)

    class Meta:
        ordering = ["step_id", "attempt"]
        constraints = [models.UniqueConstraint(fields=["step", "attempt"], name="uniq_run_attempt")]
        indexes = [
            models.Index(
                fields=["batch_state"],
                name="run_unfinalized",
                condition=models.Q(finalized=False),
            )
        ]

    def __str__(self) -> str:
        return f"run {self.pk} (attempt {self.attempt}, job {self.batch_job_id or '-'})"

    @property
    def job_name(self) -> str:
        """``apiary-<run id>-<8 characters of the run's token>``: unique even when several Apiary
        instances (or test databases, whose run ids all start at 1) share one Slurm."""
        return f"apiary-{self.pk}-{self.token[:8]}"

    @property
    def run_dir(self):
        from workflows.storage import run_dir

        return run_dir(self)


class GraphOutbox(models.Model):
    """A change to a workflow's graph, to be projected into the graph store (Neo4j) after commit.

    Written in the transaction of the change (``workflows.graph.outbox.graph_changed``), drained by
    ``workers.project_graph`` and the periodic reconcile; kept until the projection succeeded.
    """

    workflow_id = models.UUIDField()
    event = models.CharField(max_length=40)
    created = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["workflow_id", "id"],
                name="graph_outbox_unprocessed",
                condition=models.Q(processed_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} {self.event} ({'done' if self.processed_at else 'pending'})"
