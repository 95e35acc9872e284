"""Read paths for workflows: what a user may see (their own; admins see all)."""

from __future__ import annotations

import uuid
from pathlib import Path

from django.db.models import Count, Q, QuerySet

from portal.errors import NotFound
from workflows.models import Step, StepRun, Workflow
from workflows.states import StepState, WorkflowState
from workflows.storage import run_dir, workflow_dir


def workflow_list(*, user, state: str | None = None, name: str | None = None) -> QuerySet[Workflow]:
    qs = Workflow.objects.all() if user.is_staff else Workflow.objects.filter(owner=user)
    if state:
        states = [s.strip().upper() for s in state.split(",") if s.strip()]
        unknown = [s for s in states if s not in WorkflowState.values]
        if unknown:
            from portal.errors import ApplicationError

            raise ApplicationError(
                f"Unknown state {', '.join(unknown)}; use one of {', '.join(WorkflowState.values)}."
            )
        qs = qs.filter(state__in=states)
    if name:
        qs = qs.filter(name__icontains=name)
    return qs.select_related("owner").annotate(
        steps_total=Count("steps"),
        steps_done=Count("steps", filter=Q(steps__state__in=[StepState.COMPLETED, StepState.SKIPPED])),
    )


def workflow_get(*, user, workflow_id) -> Workflow:
    """The workflow if ``user`` may see it; otherwise NotFound (never 403: no existence leak)."""
    try:
        uuid.UUID(str(workflow_id))
        return workflow_list(user=user).get(pk=workflow_id)
    except (ValueError, Workflow.DoesNotExist):
        raise NotFound(f"No workflow {workflow_id}.") from None


def workflow_steps(*, workflow: Workflow) -> list[Step]:
    """The steps with their dependencies and ``last_run`` (the latest attempt, or None)."""
    steps = list(workflow.steps.prefetch_related("runs", "depends_on"))
    for step in steps:
        runs = list(step.runs.all())
        step.last_run = runs[-1] if runs else None
    return steps


def step_get(*, workflow: Workflow, name: str) -> Step:
    step = workflow.steps.filter(name=name).first()
    if step is None:
        raise NotFound(f"Workflow {workflow.id} has no step {name!r}.")
    return step


def step_latest_run(*, step: Step) -> StepRun | None:
    return step.runs.order_by("-attempt").first()


LOG_STREAMS = {"script": "job.sh", "stdout": "job.out", "stderr": "job.err"}


def step_log_path(*, step: Step, stream: str) -> Path | None:
    if stream not in LOG_STREAMS:
        from portal.errors import ApplicationError

        raise ApplicationError(f"Unknown stream {stream!r}; use one of {', '.join(LOG_STREAMS)}.")
    run = step_latest_run(step=step)
    if run is None:
        return None
    return run_dir(run) / LOG_STREAMS[stream]


def workflow_file(*, workflow: Workflow, relative: str) -> Path:
    """A file inside the workflow's folder (outputs, logs); NotFound for anything else."""
    root = workflow_dir(workflow.id).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFound(f"No file {relative!r} in workflow {workflow.id}.")
    return path
