"""Write paths for workflows and steps. Views, tasks, commands and the CLI call these.

Every state change goes through :func:`workflow_transition` / :func:`step_transition`: the move
is checked against the state map and written with compare-and-swap, with an event row, in one
transaction. Work outside the database (``sbatch``, ``scancel``) is enqueued on commit.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from portal.errors import ApplicationError, Conflict, NotFound
from workflows import cwl
from workflows.bundles import extract, is_bundle, safe_relative
from workflows.models import Step, StepDependency, StepEvent, StepRun, Workflow, WorkflowEvent
from workflows.states import (
    STEP_TERMINAL,
    STEP_TRANSITIONS,
    WORKFLOW_TRANSITIONS,
    StepState,
    WorkflowState,
    can_move,
)
from workflows.storage import source_dir, workflow_dir

log = logging.getLogger(__name__)


# --- transitions --------------------------------------------------------------------------


def workflow_transition(*, workflow: Workflow, new: str, reason: str = "", **fields) -> bool:
    """Move a workflow to ``new`` if it is still in the state we read; False if it moved on."""
    old = workflow.state
    if not can_move(WORKFLOW_TRANSITIONS, old, new):
        raise Conflict(
            f"Workflow {workflow.id} is {old}; it cannot become {new}.",
            extra={"state": old},
        )
    now = timezone.now()
    if new == WorkflowState.RUNNING and workflow.started_at is None:
        fields["started_at"] = now
    if new in (
        WorkflowState.COMPLETED,
        WorkflowState.FAILED,
        WorkflowState.PARTIAL_FAIL,
        WorkflowState.CANCELLED,
    ):
        fields["ended_at"] = now
    with transaction.atomic():
        updated = Workflow.objects.filter(pk=workflow.pk, state=old).update(state=new, **fields)
        if not updated:
            return False
        WorkflowEvent.objects.create(workflow=workflow, old_state=old, new_state=new, reason=reason)
    workflow.state = new
    for key, value in fields.items():
        setattr(workflow, key, value)
    return True


def step_transition(*, step: Step, new: str, reason: str = "", **fields) -> bool:
    old = step.state
    if not can_move(STEP_TRANSITIONS, old, new):
        raise Conflict(f"Step {step.name} is {old}; it cannot become {new}.")
    if new in STEP_TERMINAL:
        fields.setdefault("ended_at", timezone.now())
    with transaction.atomic():
        updated = Step.objects.filter(pk=step.pk, state=old).update(state=new, **fields)
        if not updated:
            return False
        StepEvent.objects.create(step=step, old_state=old, new_state=new, reason=reason)
    step.state = new
    for key, value in fields.items():
        setattr(step, key, value)
    return True


# --- submission ---------------------------------------------------------------------------


def _write_upload(dest: Path, files: dict[str, bytes]) -> None:
    total = sum(len(data) for data in files.values())
    if total > settings.APIARY_MAX_UPLOAD_BYTES:
        raise ApplicationError(
            f"The upload is {total} bytes; the limit is {settings.APIARY_MAX_UPLOAD_BYTES}."
        )
    for name, data in files.items():
        if is_bundle(name):
            extract(data, name, dest)
        else:
            target = dest / safe_relative(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def _find_main(src: Path, main: str | None) -> Path:
    if main:
        path = (src / safe_relative(main)).resolve()
        if not path.is_file():
            raise ApplicationError(f"The main document {main!r} is not among the uploaded files.")
        return path
    candidates = sorted(p for p in src.rglob("*.cwl"))
    if len(candidates) == 1:
        return candidates[0]
    for preferred in ("workflow.cwl", "main.cwl"):
        found = [p for p in candidates if p.name == preferred]
        if len(found) == 1:
            return found[0]
    if not candidates:
        raise ApplicationError("No .cwl document was uploaded.")
    raise ApplicationError(
        "Several .cwl documents were uploaded; say which one is the workflow with 'main'.",
        extra={"documents": [str(p.relative_to(src)) for p in candidates]},
    )


def workflow_submit(
    *,
    owner,
    files: dict[str, bytes],
    main: str | None = None,
    inputs: str | None = None,
    inputs_text: str | None = None,
    name: str = "",
    start: bool = True,
) -> Workflow:
    """Validate and store a CWL submission; create the workflow, its steps and edges.

    ``files`` maps names (paths relative to the submission, or bundle file names) to contents.
    ``inputs`` names the inputs file among them; ``inputs_text`` gives the inputs directly.
    Invalid CWL or inputs raise :class:`workflows.cwl.CwlError` and nothing is stored.
    """
    workflow_id = uuid.uuid4()
    incoming = Path(settings.APIARY_RUNS_DIR) / ".incoming" / str(workflow_id)
    src = incoming / "src"
    src.mkdir(parents=True)
    try:
        _write_upload(src, files)
        main_path = _find_main(src, main)
        process = cwl.load_process(main_path)
        spec = cwl.describe(process)
        if inputs_text is None and inputs:
            inputs_path = (src / safe_relative(inputs)).resolve()
            if not inputs_path.is_file():
                raise ApplicationError(f"The inputs file {inputs!r} is not among the uploaded files.")
            inputs_text = inputs_path.read_text(errors="replace")
            base = inputs_path.parent
        else:
            base = main_path.parent
        job_order = cwl.parse_job_order(inputs_text or "", inputs or "inputs")
        job_order = cwl.resolve_locations(job_order, base)
        cwl.validate_job_order(process, job_order)
        final = workflow_dir(workflow_id)
        with transaction.atomic():
            workflow = Workflow.objects.create(
                id=workflow_id,
                owner=owner,
                name=(name or main_path.stem)[:200],
                main_document=str(main_path.relative_to(src.resolve())),
                cwl_version=spec.cwl_version,
                process_class=spec.process_class,
                inputs=_relocate(job_order, src.resolve().as_uri(), source_dir(workflow_id).as_uri()),
            )
            WorkflowEvent.objects.create(
                workflow=workflow, new_state=WorkflowState.SUBMITTED, reason="submitted"
            )
            top_level = spec.process_class == "Workflow"
            steps_create(
                workflow=workflow,
                parent=None,
                specs=spec.steps,
                base_path=[],
                name_prefix="",
                path_of=(lambda s: [s.name]) if top_level else (lambda s: []),
                relocate=(src.resolve().as_uri(), source_dir(workflow_id).as_uri()),
            )
            final.parent.mkdir(parents=True, exist_ok=True)
            incoming.rename(final)
    except cwl.CwlError as exc:
        shutil.rmtree(incoming, ignore_errors=True)
        exc.message = _relative_paths(exc.message, src)
        raise
    except Exception:
        shutil.rmtree(incoming, ignore_errors=True)
        if "final" in locals() and final.exists() and not Workflow.objects.filter(pk=workflow_id).exists():
            shutil.rmtree(final, ignore_errors=True)
        raise
    if start:
        workflow_start(workflow=workflow)
    return workflow


def steps_create(
    *,
    workflow: Workflow,
    parent: Step | None,
    specs,
    base_path: list[str],
    name_prefix: str,
    path_of=None,
    relocate: tuple[str, str] | None = None,
) -> list[Step]:
    """Create WAITING steps for ``specs`` (one workflow's steps) and their dependency edges."""
    path_of = path_of or (lambda s: [*base_path, s.name])
    steps = {}
    for spec in specs:
        ref = spec.tool_ref.replace(*relocate) if relocate else spec.tool_ref
        steps[spec.name] = Step.objects.create(
            workflow=workflow,
            parent=parent,
            name=f"{name_prefix}{spec.name}",
            tool_path=path_of(spec),
            kind=spec.kind,
            tool_ref=ref,
            tool_class=spec.tool_class,
        )
    StepDependency.objects.bulk_create(
        StepDependency(upstream=steps[up], downstream=steps[spec.name])
        for spec in specs
        for up in spec.upstream
    )
    return list(steps.values())


def _relative_paths(message: str, src: Path) -> str:
    """Show paths in validator messages relative to the submission, as the user knows them."""
    for prefix in (str(src.resolve()), os.path.relpath(src.resolve()), str(src)):
        message = message.replace(prefix + "/", "")
    return message


def _relocate(value, old_prefix: str, new_prefix: str):
    if isinstance(value, list):
        return [_relocate(v, old_prefix, new_prefix) for v in value]
    if isinstance(value, dict):
        return {k: _relocate(v, old_prefix, new_prefix) for k, v in value.items()}
    if isinstance(value, str) and value.startswith(old_prefix):
        return new_prefix + value[len(old_prefix) :]
    return value


# --- control ------------------------------------------------------------------------------


def _enqueue_advance(workflow_id) -> None:
    from workers.tasks import advance

    transaction.on_commit(lambda: advance.delay(str(workflow_id)), robust=True)


def workflow_start(*, workflow: Workflow) -> Workflow:
    with transaction.atomic():
        if not workflow_transition(workflow=workflow, new=WorkflowState.RUNNING, reason="started"):
            raise Conflict(f"Workflow {workflow.id} changed state meanwhile; try again.")
        _enqueue_advance(workflow.id)
    return workflow


def workflow_pause(*, workflow: Workflow) -> Workflow:
    """Running jobs finish; nothing new is submitted until resumed."""
    if workflow.state != WorkflowState.RUNNING:
        raise Conflict(f"Only a RUNNING workflow can be paused; {workflow.id} is {workflow.state}.")
    if not workflow_transition(workflow=workflow, new=WorkflowState.PAUSED, reason="paused by user"):
        raise Conflict(f"Workflow {workflow.id} changed state meanwhile; try again.")
    return workflow


def workflow_resume(*, workflow: Workflow) -> Workflow:
    if workflow.state != WorkflowState.PAUSED:
        raise Conflict(f"Only a PAUSED workflow can be resumed; {workflow.id} is {workflow.state}.")
    with transaction.atomic():
        if not workflow_transition(workflow=workflow, new=WorkflowState.RUNNING, reason="resumed by user"):
            raise Conflict(f"Workflow {workflow.id} changed state meanwhile; try again.")
        _enqueue_advance(workflow.id)
    return workflow


def workflow_cancel(*, workflow: Workflow, reason: str = "cancelled by user") -> Workflow:
    """Cancel: every unfinished step CANCELLED now; its batch jobs are ``scancel``-ed by a task."""
    from workers.tasks import cancel_jobs

    with transaction.atomic():
        if not workflow_transition(workflow=workflow, new=WorkflowState.CANCELLED, reason=reason):
            raise Conflict(f"Workflow {workflow.id} changed state meanwhile; try again.")
        for step in workflow.steps.exclude(state__in=STEP_TERMINAL):
            step_transition(step=step, new=StepState.CANCELLED, reason=reason)
        transaction.on_commit(lambda: cancel_jobs.delay(str(workflow.id)), robust=True)
    return workflow


def workflow_delete(*, workflow: Workflow) -> None:
    if workflow.state in (WorkflowState.RUNNING, WorkflowState.PAUSED, WorkflowState.SUBMITTED):
        raise Conflict(f"Workflow {workflow.id} is {workflow.state}; cancel it before deleting it.")
    path = workflow_dir(workflow.id)
    workflow.delete()
    shutil.rmtree(path, ignore_errors=True)


def run_report_finished(*, run_id: int, token: str, exit_code: int | None, node: str = "") -> None:
    """The job wrapper's completion notice. Authenticated by the run's own token."""
    from workers.tasks import finalize_run

    run = StepRun.objects.filter(pk=run_id).first()
    if run is None or not token or run.token != token:
        raise NotFound(f"No run {run_id} with this token.")
    if node and not run.node:
        StepRun.objects.filter(pk=run.pk, node="").update(node=node[:200])
    transaction.on_commit(lambda: finalize_run.delay(run.pk, exit_code), robust=True)
