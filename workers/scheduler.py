"""The DAG scheduler and the job follower (BEE's workflow and task managers).

``advance`` is event driven: it runs when a workflow starts or resumes and whenever one of its
steps ends. It promotes WAITING steps whose upstream steps all succeeded, marks DEP_FAIL those
with a failed upstream, evaluates ExpressionTools, submits ready CommandLineTool steps to the
batch system, and ends the workflow when every step has ended.

``finalize_run`` records the end of a batch job (pushed by the job wrapper or found by the
reconcile), collects the step's outputs with cwltool, and enqueues ``advance``.

``reconcile`` is the safety net run by beat: one batched query of all unfinished jobs (at most
one ``squeue`` and one ``sacct``), catching ends that no push reported.

Each function takes ids, re-reads state, and may run twice: claims are compare-and-swap, a run
row is written before ``sbatch`` and its job id after, and the job name
(``apiary-<run id>-<token prefix>``) finds a job again whose ``sbatch`` reply was lost.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from workers import cwl_job, slurm_hints
from workers.batch import BatchError, JobStatus, get_batch_system
from workers.batch import base as batch_states
from workers.jobscript import render
from workflows import cwl
from workflows.graph.outbox import kick as kick_graph_projection
from workflows.models import Step, StepRun, Workflow
from workflows.services import step_transition, steps_create, workflow_transition
from workflows.states import (
    STEP_IN_BATCH,
    STEP_SUCCEEDED,
    STEP_TERMINAL,
    STEP_UNSUCCESSFUL,
    StepState,
    WorkflowState,
)
from workflows.storage import source_dir, step_dir

log = logging.getLogger(__name__)
RunState = StepRun.BatchState

# A run written but not yet given a job id for this long is looked up by name (lost reply).
PREPARING_GRACE = timedelta(seconds=120)
# A job the batch system has forgotten, with no exit code file, after this long is lost.
UNKNOWN_GRACE = timedelta(seconds=60)


def load_workflow_process(workflow: Workflow):
    requirements = cwl.input_requirements(workflow.inputs or {})
    return cwl.load_process(source_dir(workflow.id) / workflow.main_document, requirements)


Kind = Step.Kind
SCOPE_KINDS = (Kind.WORKFLOW, Kind.SCATTER)


def advance(workflow_id) -> None:
    workflow = Workflow.objects.filter(pk=workflow_id).first()
    if workflow is None or workflow.state != WorkflowState.RUNNING:
        return
    root = load_workflow_process(workflow)
    moved = True
    while moved:
        moved = _promote(workflow)
        moved |= _close_scopes(workflow, root)
        for step in list(workflow.steps.filter(state=StepState.READY).select_related("parent")):
            workflow.refresh_from_db(fields=["state"])
            if workflow.state != WorkflowState.RUNNING:
                return
            try:
                _start_step(workflow, root, step)
            except Exception as exc:  # one bad step must not stall the workflow: fail it, go on
                log.exception("starting step %s of workflow %s", step.name, workflow.id)
                step.refresh_from_db(fields=["state"])
                if step.state == StepState.READY:
                    step_transition(
                        step=step,
                        new=StepState.FAILED,
                        reason="internal error",
                        error=f"Apiary could not start this step: {type(exc).__name__}: {exc}",
                    )
            moved = True
    _maybe_finish(workflow, root)


def _promote(workflow: Workflow) -> bool:
    """WAITING -> READY or DEP_FAIL from upstream states; True if anything moved."""
    moved = False
    steps = {s.pk: s for s in workflow.steps.all()}
    upstream: dict[int, list[Step]] = {pk: [] for pk in steps}
    edges = Step.depends_on.through.objects.filter(downstream__workflow=workflow)
    for down, up in edges.values_list("downstream_id", "upstream_id"):
        upstream[down].append(steps[up])
    for step in steps.values():
        if step.state != StepState.WAITING:
            continue
        ups = upstream[step.pk]
        failed = [u.name for u in ups if u.state in STEP_UNSUCCESSFUL]
        if failed:
            reason = f"upstream {', '.join(failed)} did not succeed"
            moved |= step_transition(step=step, new=StepState.DEP_FAIL, reason=reason)
        elif all(u.state in STEP_SUCCEEDED for u in ups):
            moved |= step_transition(step=step, new=StepState.READY, reason="inputs available")
    return moved


def _scope(workflow: Workflow, step: Step) -> tuple[dict, dict[str, dict]]:
    """The inputs of the workflow containing ``step`` and its finished siblings' outputs."""
    parent = step.parent
    inputs = cwl.input_values(workflow.inputs) if parent is None else (parent.job_order or {})
    siblings = Step.objects.filter(workflow=workflow, parent=parent, state__in=STEP_SUCCEEDED)
    return inputs, {s.short_name: (s.outputs or {}) for s in siblings}


def _start_step(workflow: Workflow, root, step: Step) -> None:
    try:
        if step.scatter_index is not None:
            job_order = step.job_order  # computed when the scatter created its elements
        else:
            scope_inputs, siblings = _scope(workflow, step)
            raw = cwl.resolve_step_inputs(root, step.tool_path, scope_inputs, siblings)
            if step.kind == Kind.SCATTER:
                _start_scatter(workflow, root, step, raw)
                return
            job_order = cwl.evaluate_step_inputs(root, step.tool_path, raw)
    except cwl.CwlError as exc:
        step_transition(
            step=step, new=StepState.FAILED, reason="inputs could not be computed", error=exc.message
        )
        return
    if job_order is None:
        step_transition(step=step, new=StepState.SKIPPED, reason="'when' is false", outputs={})
        return
    process = cwl.node_process(root, step.tool_path)
    if step.kind == Kind.EXPRESSION:
        try:
            outputs = cwl_job.run_expression_tool(
                process, job_order, step_dir(workflow.id, step.name) / "expression"
            )
        except cwl_job.JobBuildError as exc:
            step_transition(
                step=step,
                new=StepState.FAILED,
                reason="expression failed",
                error=str(exc),
                job_order=job_order,
            )
            return
        step_transition(
            step=step,
            new=StepState.COMPLETED,
            reason="expression evaluated",
            outputs=outputs,
            job_order=job_order,
        )
    elif step.kind == Kind.WORKFLOW:
        with transaction.atomic():
            if step_transition(
                step=step, new=StepState.RUNNING, reason="nested workflow started", job_order=job_order
            ):
                steps_create(
                    workflow=workflow,
                    parent=step,
                    specs=cwl.child_specs(process),
                    base_path=list(step.tool_path),
                    name_prefix=f"{step.name}/",
                )
    else:
        _submit_step(workflow, process, step, job_order)


def _start_scatter(workflow: Workflow, root, step: Step, raw: dict) -> None:
    elements, shape = cwl.scatter_elements(root, step.tool_path, raw)
    evaluated = [cwl.evaluate_step_inputs(root, step.tool_path, e) for e in elements]
    kind = cwl.kind_of(cwl.node_process(root, step.tool_path))
    with transaction.atomic():
        if not step_transition(
            step=step,
            new=StepState.RUNNING,
            reason=f"scattered into {len(elements)} elements",
            scatter_shape=shape,
        ):
            return
        Step.objects.bulk_create(
            Step(
                workflow=workflow,
                parent=step,
                name=f"{step.name}[{i}]",
                tool_path=step.tool_path,
                kind=kind,
                scatter_index=i,
                tool_ref=step.tool_ref,
                tool_class=step.tool_class,
                job_order=job,
                state=StepState.READY if job is not None else StepState.SKIPPED,
                outputs=None if job is not None else {},
            )
            for i, job in enumerate(evaluated)
        )


def _close_scopes(workflow: Workflow, root) -> bool:
    """Finish RUNNING nested workflows and scatters whose children have all ended."""
    moved = False
    for step in workflow.steps.filter(state=StepState.RUNNING, kind__in=SCOPE_KINDS):
        children = list(step.children.order_by("scatter_index", "id"))
        if any(c.state not in STEP_TERMINAL for c in children):
            continue
        failed = [c.name for c in children if c.state in STEP_UNSUCCESSFUL]
        if failed:
            moved |= step_transition(
                step=step,
                new=StepState.FAILED,
                reason="a child step failed",
                error=f"failed: {', '.join(failed[:10])}",
            )
            continue
        try:
            if step.kind == Kind.SCATTER:
                outputs = cwl.gather_scatter(
                    root, step.tool_path, [c.outputs for c in children], step.scatter_shape
                )
            else:
                outputs = cwl.scope_outputs(
                    cwl.node_process(root, step.tool_path),
                    step.job_order or {},
                    {c.short_name: c.outputs or {} for c in children},
                )
        except cwl.CwlError as exc:
            moved |= step_transition(step=step, new=StepState.FAILED, reason="outputs", error=exc.message)
            continue
        moved |= step_transition(
            step=step, new=StepState.COMPLETED, reason="children completed", outputs=outputs
        )
    return moved


def _submit_step(workflow: Workflow, tool, step: Step, job_order: dict) -> None:
    batch = get_batch_system()
    with transaction.atomic():
        attempt = step.attempts + 1
        if not step_transition(
            step=step,
            new=StepState.SUBMITTED,
            reason=f"attempt {attempt}",
            job_order=job_order,
            attempts=attempt,
        ):
            return  # another worker claimed it
        run = StepRun.objects.create(step=step, attempt=attempt, batch_system=batch.name)
    run_dir = run.run_dir
    try:
        hint_options = slurm_hints.sbatch_options(tool)
        run_dir.mkdir(parents=True, exist_ok=True)
        spec = cwl_job.prepare_command_job(tool, job_order, run_dir)
    except Exception as exc:  # e.g. cwltool's ValidationException for a missing input file
        # Whatever stops the job from being built fails the step now; left SUBMITTED with an
        # unsubmitted run it would be "recovered" and rebuilt every PREPARING_GRACE, forever.
        if not isinstance(exc, (cwl_job.JobBuildError, OSError)):
            log.exception("building the job of step %s of workflow %s", step.name, workflow.id)
        _end_run(run, RunState.ENDED, batch_state_detail="not submitted")
        step_transition(step=step, new=StepState.FAILED, reason="job could not be built", error=str(exc))
        return
    spec.job_name = run.job_name
    spec.title = f"Apiary workflow {workflow.name} ({workflow.id}), step {step.name}, attempt {attempt}"
    spec.sbatch_options = list(settings.APIARY_SBATCH_OPTIONS) + hint_options
    if settings.APIARY_CALLBACK_URL:
        spec.callback_url = f"{settings.APIARY_CALLBACK_URL.rstrip('/')}/api/v1/runs/{run.pk}/finished"
        spec.callback_token = run.token
    script = run_dir / "job.sh"
    script.write_text(render(spec))
    script.chmod(0o755)
    try:
        job_id = batch.submit(script, job_name=run.job_name, workdir=run_dir)
    except BatchError as exc:
        # Not known whether the job exists; the reconcile looks it up by name before retrying.
        log.warning("submitting %s failed: %s", run.job_name, exc)
        return
    StepRun.objects.filter(pk=run.pk, batch_job_id="").update(
        batch_job_id=job_id, batch_state=RunState.SUBMITTED, submitted_at=timezone.now()
    )
    workflow.refresh_from_db(fields=["state"])
    if workflow.state == WorkflowState.CANCELLED:
        batch.cancel([job_id])  # the workflow was cancelled while we were submitting


def _end_run(run: StepRun, state: str, **fields) -> bool:
    fields.setdefault("ended_at", timezone.now())
    return bool(
        StepRun.objects.filter(pk=run.pk, finalized=False).update(batch_state=state, finalized=True, **fields)
    )


def _maybe_finish(workflow: Workflow, root) -> None:
    top = list(workflow.steps.filter(parent=None))
    states = [s.state for s in top]
    if not all(s in STEP_TERMINAL for s in states):
        return
    if all(s in STEP_SUCCEEDED for s in states):
        try:
            inputs = cwl.input_values(workflow.inputs)
            outputs = cwl.scope_outputs(root, inputs, {s.short_name: s.outputs or {} for s in top})
        except cwl.CwlError as exc:
            workflow_transition(
                workflow=workflow, new=WorkflowState.FAILED, reason="outputs", error=exc.message
            )
            return
        workflow_transition(
            workflow=workflow, new=WorkflowState.COMPLETED, reason="all steps completed", outputs=outputs
        )
    elif any(s == StepState.COMPLETED for s in states):
        workflow_transition(workflow=workflow, new=WorkflowState.PARTIAL_FAIL, reason="some steps failed")
    else:
        workflow_transition(workflow=workflow, new=WorkflowState.FAILED, reason="steps failed")


def _read_started(run_dir: Path) -> dict:
    """``job.started``, written by the job script as it begins: node and start time."""
    try:
        fields = dict(part.split("=", 1) for part in (run_dir / "job.started").read_text().split())
    except (OSError, ValueError):
        return {}
    result = {}
    if fields.get("node"):
        result["node"] = fields["node"][:200]
    try:
        result["started_at"] = datetime.fromisoformat(fields["started"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        pass
    return result


def _read_exit_code(run_dir: Path) -> int | None:
    try:
        return int((run_dir / "exit_code").read_text().strip())
    except (OSError, ValueError):
        return None


def finalize_run(run_id: int, status: JobStatus | None = None, reported_exit_code: int | None = None) -> bool:
    """Record the end of a run's batch job and its step's outcome; True if this call did it.

    The exit code is read from the ``exit_code`` file the job wrapper wrote; the code it
    reported in its notice is used only if the file cannot be read (e.g. an NFS cache lag).
    """
    run = StepRun.objects.select_related("step__workflow").filter(pk=run_id).first()
    if run is None or run.finalized:
        return False
    step, workflow = run.step, run.step.workflow
    run_dir = run.run_dir
    exit_code = _read_exit_code(run_dir)
    if exit_code is None:
        exit_code = reported_exit_code
    batch_state = status.state if status else None
    if exit_code is None and status is None:
        return False  # push without an exit code file yet: the reconcile will see the end
    fields = {"exit_code": exit_code if exit_code is not None else (status.exit_code if status else None)}
    started = _read_started(run_dir)
    fields["node"] = run.node or started.get("node", "")
    fields["started_at"] = run.started_at or started.get("started_at")
    if status:
        fields.update(
            node=fields["node"] or status.node,
            batch_state_detail=status.summary[:40],
            started_at=fields["started_at"] or status.started_at,
        )
        if status.ended_at:
            fields["ended_at"] = status.ended_at

    if exit_code is None and batch_state in batch_states.RETRYABLE_STATES | {
        batch_states.CANCELLED,
        batch_states.TIMEOUT,
        batch_states.FAILED,
        batch_states.OUT_OF_MEMORY,
    }:
        # The job ended without running our wrapper to the end: no outputs to collect.
        if batch_state in batch_states.RETRYABLE_STATES and run.attempt <= settings.APIARY_RETRY_LIMIT:
            outcome = (StepState.READY, f"{batch_state}: retrying as a new attempt", {})
        else:
            new = {
                batch_states.TIMEOUT: StepState.TIMEOUT,
                batch_states.CANCELLED: StepState.CANCELLED,
            }.get(batch_state, StepState.FAILED)
            outcome = (new, f"batch job ended {batch_state}", {"error": f"batch system: {status.summary}"})
        return _close_run(run, fields, outcome)

    if exit_code is None:
        exit_code = status.exit_code if status and status.exit_code is not None else 1
    if step.state in STEP_IN_BATCH:
        tool = cwl.node_process(load_workflow_process(workflow), step.tool_path)
        try:
            succeeded, outputs = cwl_job.collect_outputs(tool, step.job_order or {}, run_dir, exit_code)
            error = "" if succeeded else f"exit code {exit_code}; see the step's stderr"
        except cwl_job.JobBuildError as exc:
            succeeded, outputs, error = False, {}, str(exc)
    else:
        succeeded, outputs, error = False, {}, ""  # cancelled meanwhile: nothing to collect
    if succeeded:
        outcome = (StepState.COMPLETED, f"exit code {exit_code}", {"outputs": outputs})
    elif batch_state == batch_states.TIMEOUT:
        outcome = (StepState.TIMEOUT, "time limit", {"error": error})
    else:
        outcome = (StepState.FAILED, f"exit code {exit_code}", {"error": error})
    return _close_run(run, fields, outcome)


def _close_run(run: StepRun, fields: dict, outcome: tuple[str, str, dict]) -> bool:
    """End the run and move its step, serialised with every other writer of that step.

    The step row is locked first, so a concurrent reconcile recording PENDING -> RUNNING cannot
    slip between our read and our write (which would leave the run ended and the step stuck).
    A step that already left the batch states (cancelled meanwhile) keeps its state.
    """
    new_state, reason, step_fields = outcome
    with transaction.atomic():
        step = Step.objects.select_for_update().get(pk=run.step_id)
        if not _end_run(run, RunState.ENDED, **fields):
            return False
        if step.state in STEP_IN_BATCH:
            if not step_transition(step=step, new=new_state, reason=reason, **step_fields):
                raise RuntimeError(f"step {step.pk} changed state while locked")  # cannot happen
            _enqueue_advance(step.workflow_id)
    return True


def _enqueue_advance(workflow_id) -> None:
    from workers.tasks import advance as advance_task

    transaction.on_commit(lambda: advance_task.delay(str(workflow_id)), robust=True)


def reconcile(batch=None) -> dict:
    """Check every unfinished run against the batch system in one batched query."""
    batch = batch or get_batch_system()
    now = timezone.now()
    runs = list(StepRun.objects.select_related("step").filter(finalized=False, batch_system=batch.name))
    summary = {"runs": len(runs), "finalized": 0, "updated": 0}
    for run in [r for r in runs if not r.batch_job_id]:
        _recover_unsubmitted(batch, run, now)
    with_ids = [r for r in runs if r.batch_job_id]
    # Jobs of cancelled steps whose scancel task was lost (broker down at cancel time).
    orphans = [r for r in with_ids if r.step.state == StepState.CANCELLED]
    if orphans:
        batch.cancel([r.batch_job_id for r in orphans])
        for run in orphans:
            summary["finalized"] += _end_run(run, RunState.ENDED, batch_state_detail="CANCELLED")
        with_ids = [r for r in with_ids if r not in orphans]
    statuses = batch.query([r.batch_job_id for r in with_ids]) if with_ids else {}
    for run in with_ids:
        status = statuses.get(run.batch_job_id)
        if status is None:
            if _read_exit_code(run.run_dir) is not None:
                summary["finalized"] += finalize_run(
                    run.pk, JobStatus(run.batch_job_id, batch_states.COMPLETED)
                )
            elif run.submitted_at and now - run.submitted_at > UNKNOWN_GRACE:
                lost = JobStatus(
                    run.batch_job_id, batch_states.NODE_FAIL, detail="unknown to the batch system"
                )
                summary["finalized"] += finalize_run(run.pk, lost)
        elif status.active:
            summary["updated"] += _record_progress(run, status)
        else:
            summary["finalized"] += finalize_run(run.pk, status)
    _kick_stalled_workflows()
    _kick_unarchived_workflows(now)
    summary["graph_pending"] = kick_graph_projection()  # Neo4j catch-up, in its own task
    return summary


def _record_progress(run: StepRun, status: JobStatus) -> int:
    new_run_state = RunState.RUNNING if status.state == batch_states.RUNNING else RunState.PENDING
    if run.batch_state == new_run_state:
        return 0
    target = StepState.RUNNING if new_run_state == RunState.RUNNING else StepState.PENDING
    with transaction.atomic():
        step = Step.objects.select_for_update().get(pk=run.step_id)
        updated = StepRun.objects.filter(pk=run.pk, finalized=False).update(
            batch_state=new_run_state,
            node=status.node or run.node,
            started_at=status.started_at or run.started_at,
        )
        if updated and step.state in (StepState.SUBMITTED, StepState.PENDING) and step.state != target:
            step_transition(step=step, new=target, reason=f"batch job {run.batch_job_id} {status.state}")
    return 1


def _recover_unsubmitted(batch, run: StepRun, now) -> None:
    if now - run.created_at < PREPARING_GRACE:
        return
    job_id = batch.find(run.job_name)
    if job_id:
        StepRun.objects.filter(pk=run.pk, batch_job_id="").update(
            batch_job_id=job_id, batch_state=RunState.SUBMITTED, submitted_at=now
        )
        return
    with transaction.atomic():
        step = Step.objects.select_for_update().get(pk=run.step_id)
        if _end_run(run, RunState.ENDED, batch_state_detail="never submitted"):
            if step.state in STEP_IN_BATCH:
                step_transition(step=step, new=StepState.READY, reason="submission was lost; retrying")
                _enqueue_advance(step.workflow_id)


def _kick_stalled_workflows() -> None:
    """Advance running workflows with READY steps or all steps ended (a lost advance task)."""
    stalled = Workflow.objects.filter(state=WorkflowState.RUNNING, steps__state=StepState.READY).distinct()
    for workflow_id in stalled.values_list("pk", flat=True):
        _enqueue_advance(workflow_id)
    for workflow in Workflow.objects.filter(state=WorkflowState.RUNNING).exclude(
        steps__state__in=[s for s in StepState.values if s not in STEP_TERMINAL]
    ):
        _enqueue_advance(workflow.pk)


# An ended workflow still not archived this long after its end lost its archive task.
ARCHIVE_GRACE = timedelta(minutes=10)


def _kick_unarchived_workflows(now) -> None:
    """Re-enqueue archiving for ended workflows whose archive task was lost (at most 20 a cycle)."""
    if not settings.APIARY_ARCHIVE_ENABLED:
        return
    from workers.tasks import archive_workflow

    ended = Workflow.objects.filter(
        state__in=[
            WorkflowState.COMPLETED,
            WorkflowState.FAILED,
            WorkflowState.PARTIAL_FAIL,
            WorkflowState.CANCELLED,
        ],
        ended_at__lt=now - ARCHIVE_GRACE,
    ).values_list("pk", flat=True)[:20]
    for workflow_id in ended:
        transaction.on_commit(lambda w=workflow_id: archive_workflow.delay(str(w)), robust=True)


def cancel_jobs(workflow_id) -> None:
    """``scancel`` the unfinished jobs of this workflow only, then close their runs."""
    batch = get_batch_system()
    runs = list(
        StepRun.objects.filter(step__workflow_id=workflow_id, finalized=False).exclude(batch_job_id="")
    )
    batch.cancel([r.batch_job_id for r in runs])
    for run in runs:
        _end_run(run, RunState.ENDED, batch_state_detail="CANCELLED")
