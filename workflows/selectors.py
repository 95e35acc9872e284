"""Read paths for workflows: what a user may see (their own; admins see all)."""

from __future__ import annotations

import uuid
from pathlib import Path

from django.db.models import Count, Q, QuerySet

from portal.errors import Conflict, NotFound
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


def workflow_edges(*, workflow: Workflow) -> list[tuple[int, int]]:
    """The DAG's dependency edges as ``(upstream step id, downstream step id)`` pairs."""
    from workflows.models import StepDependency

    edges = StepDependency.objects.filter(downstream__workflow=workflow)
    return list(edges.values_list("upstream_id", "downstream_id"))


def steps_in_tree_order(steps: list[Step]) -> list[Step]:
    """Steps with each one's children right after it (top-level steps in their stored order).

    Sets ``depth`` on each step (0 for top-level steps), for indenting.
    """
    children: dict = {}
    for step in steps:
        children.setdefault(step.parent_id, []).append(step)
    ordered: list[Step] = []

    def visit(parent_id, depth):
        for step in children.get(parent_id, []):
            step.depth = depth
            ordered.append(step)
            visit(step.pk, depth + 1)

    visit(None, 0)
    seen = {s.pk for s in ordered}
    ordered.extend(s for s in steps if s.pk not in seen)  # orphans cannot exist, but never hide one
    return ordered


LOG_CHUNK_BYTES = 256 * 1024


def step_log_read(*, step: Step, stream: str, offset: int | None = None) -> dict:
    """Up to ``LOG_CHUNK_BYTES`` of a step's log from byte ``offset`` (None: the last chunk).

    Returns ``text``, ``offset`` (where the next read starts), ``start`` (where this text
    begins), ``size`` (of the file now), ``exists`` and ``run`` (the latest attempt, or None).
    A multi-byte character cut at the end of a chunk is left for the next read.
    """
    run = step_latest_run(step=step)
    path = step_log_path(step=step, stream=stream)
    at = offset or 0
    result = {"text": "", "offset": at, "start": at, "size": 0, "exists": False, "run": run}
    if path is None or not path.is_file():
        return result
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        start = max(0, size - LOG_CHUNK_BYTES) if offset is None else min(max(0, offset), size)
        fh.seek(start)
        data = fh.read(LOG_CHUNK_BYTES)
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        if exc.start >= len(data) - 3 and exc.reason == "unexpected end of data":
            data = data[: exc.start]
        text = data.decode(errors="replace")
    result.update(text=text, offset=start + len(data), start=start, size=size, exists=True)
    return result


def workflow_archive_get(*, workflow: Workflow):
    """The archive of an ARCHIVED workflow; Conflict (409) while it is not archived yet."""
    from portal.errors import Conflict
    from workflows.models import Archive

    archive = Archive.objects.filter(workflow=workflow).first()
    if workflow.state != WorkflowState.ARCHIVED or archive is None:
        raise Conflict(
            f"Workflow {workflow.id} is {workflow.state}, not archived yet.", extra={"state": workflow.state}
        )
    if not Path(archive.path).is_file():
        raise NotFound(f"The archive file of workflow {workflow.id} is missing.")
    return archive


def archived_workflows(*, user) -> QuerySet[Workflow]:
    """The user's ARCHIVED workflows (admins: all) with their archive, newest first."""
    return workflow_list(user=user, state=WorkflowState.ARCHIVED).select_related("archive")


def workflow_dag(*, workflow: Workflow) -> dict:
    """The workflow's graph as plain data (``workflows.graph.base``), from the configured store."""
    from workflows.graph import get_graph_store

    store = get_graph_store()
    try:
        data = store.export(workflow.id)
    except Exception as exc:  # the projection's server is away: say so, 409 (PostgreSQL is fine)
        raise Conflict(
            f"The {store.name} graph store is unreachable: {type(exc).__name__}", extra={"store": store.name}
        ) from None
    if data is None:
        raise Conflict(
            f"The graph of workflow {workflow.id} is not in the {store.name} store yet; try again shortly.",
            extra={"store": store.name},
        )
    data["store"] = store.name
    return data
