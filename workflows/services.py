"""Write paths for workflows and steps. Views, tasks, commands and the CLI call these.

Every state change goes through :func:`workflow_transition` / :func:`step_transition`: the move
is checked against the state map and written with compare-and-swap, with an event row, in one
transaction. Work outside the database (``sbatch``, ``scancel``) is enqueued on commit.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tarfile
import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from portal.errors import ApplicationError, Conflict, NotFound
from workflows import cwl
from workflows.bundles import (
    ArchiveLimits,
    ArchiveRuleError,
    extract,
    is_bundle,
    safe_relative,
    unpack_archive,
)
from workflows.graph.outbox import graph_changed
from workflows.models import Archive, Step, StepDependency, StepEvent, StepRun, Workflow, WorkflowEvent
from workflows.states import (
    STEP_TERMINAL,
    STEP_TRANSITIONS,
    WORKFLOW_ENDED,
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
    ended = new in WORKFLOW_ENDED
    if ended:
        fields["ended_at"] = now
        fields["outcome"] = new  # kept when the workflow becomes ARCHIVED
    with transaction.atomic():
        updated = Workflow.objects.filter(pk=workflow.pk, state=old).update(state=new, **fields)
        if not updated:
            return False
        WorkflowEvent.objects.create(workflow=workflow, old_state=old, new_state=new, reason=reason)
        graph_changed(workflow.pk, f"workflow {new}")
        if ended and settings.APIARY_ARCHIVE_ENABLED:
            _enqueue_archive(workflow.id)  # every end (scheduler, cancel) is archived, on commit
    workflow.state = new
    for key, value in fields.items():
        setattr(workflow, key, value)
    return True


def _enqueue_archive(workflow_id) -> None:
    from workers.tasks import archive_workflow

    transaction.on_commit(lambda: archive_workflow.delay(str(workflow_id)), robust=True)


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
        graph_changed(step.workflow_id, f"step {new}")
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


def find_main_document(src: Path, main: str | None) -> Path:
    """The submission's main document under ``src`` (resolved): ``main`` if given, else the
    only ``.cwl`` file, else the only ``workflow.cwl`` or ``main.cwl``; the submission form's
    drafts choose it the same way."""
    if main:
        # "packed.cwl#tool" names one process of a packed document (see cwl.load_process).
        document, fragment = cwl.split_fragment(src / safe_relative(main))
        path = document.resolve()
        if not path.is_file():
            raise ApplicationError(f"The main document {main!r} is not among the uploaded files.")
        return path.with_name(f"{path.name}#{fragment}") if fragment else path
    candidates = sorted(p for p in src.rglob("*.cwl"))
    if len(candidates) == 1:
        return candidates[0].resolve()
    for preferred in ("workflow.cwl", "main.cwl"):
        found = [p for p in candidates if p.name == preferred]
        if len(found) == 1:
            return found[0].resolve()
    if not candidates:
        raise ApplicationError("No .cwl document was uploaded.")
    raise ApplicationError(
        "Several .cwl documents were uploaded; say which one is the workflow (the main document).",
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
    local_dir: Path | None = None,
) -> Workflow:
    """Validate and store a CWL submission; create the workflow, its steps and edges.

    ``files`` maps names (paths relative to the submission, or bundle file names) to contents.
    ``inputs`` names the inputs file among them; ``inputs_text`` gives the inputs directly.
    Invalid CWL or inputs raise :class:`workflows.cwl.CwlError` and nothing is stored.

    ``local_dir`` (trusted local callers only, e.g. ``apiary-cwl-runner``; never the API or the
    pages): instead of uploaded ``files``, the documents and data are used in place in this
    folder of the local filesystem. Nothing is copied: the run's ``src/`` is a symbolic link to
    it, and ``main``/``inputs`` are paths relative to it. As with cwltool, inputs may then name
    any local file (absolute ``file://`` locations in ``inputs_text``, or ``../`` paths).
    """
    workflow_id = uuid.uuid4()
    incoming = Path(settings.APIARY_RUNS_DIR) / ".incoming" / str(workflow_id)
    src = incoming / "src"
    if local_dir is not None:
        if files:
            raise ApplicationError("Give either uploaded files or a local folder, not both.")
        local_dir = Path(local_dir).resolve()
        if not local_dir.is_dir():
            raise ApplicationError(f"The folder {local_dir} does not exist.")
        incoming.mkdir(parents=True)
        src.symlink_to(local_dir, target_is_directory=True)
    else:
        src.mkdir(parents=True)
    try:
        if local_dir is None:
            _write_upload(src, files)
        main_path = find_main_document(src, main)
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
        # Uploaded inputs stay inside the upload; a trusted local caller may name any local file.
        root = Path("/") if local_dir is not None else src.resolve()
        job_order = cwl.resolve_locations(job_order, base, root=root)
        requirements = cwl.input_requirements(job_order)
        if requirements:
            process = cwl.load_process(main_path, requirements)
        job_order = cwl.with_input_requirements(cwl.validate_job_order(process, job_order), requirements)
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
            graph_changed(workflow.id, "submitted")
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
    graph_changed(workflow.id, "steps created")
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


# The user's actions on a workflow, by the name the API, the pages and the CLI use.
WORKFLOW_ACTIONS = {
    "start": workflow_start,
    "pause": workflow_pause,
    "resume": workflow_resume,
    "cancel": workflow_cancel,
}


def workflow_act(*, workflow: Workflow, action: str) -> Workflow:
    """Apply the user action named ``action`` (one of ``WORKFLOW_ACTIONS``)."""
    handler = WORKFLOW_ACTIONS.get(action)
    if handler is None:
        raise NotFound(f"No action {action!r}; use one of {', '.join(WORKFLOW_ACTIONS)}.")
    return handler(workflow=workflow)


def workflow_delete(*, workflow: Workflow) -> None:
    if workflow.state in (WorkflowState.RUNNING, WorkflowState.PAUSED, WorkflowState.SUBMITTED):
        raise Conflict(f"Workflow {workflow.id} is {workflow.state}; cancel it before deleting it.")
    path = workflow_dir(workflow.id)
    archive = Archive.objects.filter(workflow=workflow).first()
    archive_files = {Path(settings.APIARY_ARCHIVE_DIR) / f"{workflow.id}.tgz"}
    if archive is not None:
        archive_files.add(Path(archive.path))
    workflow.delete()
    shutil.rmtree(path, ignore_errors=True)
    for archive_file in archive_files:
        archive_file.unlink(missing_ok=True)


def run_report_finished(*, run_id: int, token: str, exit_code: int | None, node: str = "") -> None:
    """The job wrapper's completion notice. Authenticated by the run's own token."""
    from workers.tasks import finalize_run

    run = StepRun.objects.filter(pk=run_id).first()
    if run is None or not token or run.token != token:
        raise NotFound(f"No run {run_id} with this token.")
    if node and not run.node:
        StepRun.objects.filter(pk=run.pk, node="").update(node=node[:200])
    transaction.on_commit(lambda: finalize_run.delay(run.pk, exit_code), robust=True)


# --- archive, re-execute ------------------------------------------------------------------


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def _events(rows) -> list[dict]:
    return [
        {"old_state": e.old_state, "new_state": e.new_state, "reason": e.reason, "at": _iso(e.at)}
        for e in rows
    ]


def _archive_spec(workflow: Workflow):
    """What the archive records about ``workflow``, as the plain values ``workers.archive`` takes."""
    from importlib.metadata import PackageNotFoundError, version

    from workers.archive import ArchiveSpec, RunInfo, StepInfo

    try:
        apiary_version = version("apiary")
    except PackageNotFoundError:
        apiary_version = ""
    steps = []
    for step in workflow.steps.prefetch_related("runs", "events", "depends_on").order_by("id"):
        runs = [
            RunInfo(
                attempt=r.attempt,
                batch_system=r.batch_system,
                batch_job_id=r.batch_job_id,
                batch_state=r.batch_state,
                batch_state_detail=r.batch_state_detail,
                node=r.node,
                exit_code=r.exit_code,
                submitted_at=_iso(r.submitted_at),
                started_at=_iso(r.started_at),
                ended_at=_iso(r.ended_at),
            )
            for r in step.runs.all()
        ]
        steps.append(
            StepInfo(
                name=step.name,
                kind=step.kind,
                tool_class=step.tool_class,
                tool_path=list(step.tool_path or []),
                state=step.state,
                error=step.error,
                attempts=step.attempts,
                created_at=_iso(step.created_at),
                ended_at=_iso(step.ended_at),
                depends_on=sorted(s.name for s in step.depends_on.all()),
                job_order=step.job_order,
                outputs=step.outputs,
                events=_events(step.events.all()),
                runs=runs,
            )
        )
    return ArchiveSpec(
        workflow_id=str(workflow.id),
        name=workflow.name,
        owner=workflow.owner.get_username(),
        run_dir=workflow_dir(workflow.id),
        main_document=workflow.main_document,
        outcome=workflow.outcome or workflow.state,
        cwl_version=workflow.cwl_version,
        process_class=workflow.process_class,
        error=workflow.error,
        inputs=workflow.inputs or {},
        outputs=workflow.outputs,
        created_at=_iso(workflow.created_at),
        started_at=_iso(workflow.started_at),
        ended_at=_iso(workflow.ended_at),
        events=_events(workflow.events.all()),
        steps=steps,
        source_workflow_id=str(workflow.source_workflow_id) if workflow.source_workflow_id else None,
        source_archive_sha256=workflow.source_archive_sha256,
        batch_system=settings.APIARY_BATCH_SYSTEM,
        apiary_version=apiary_version,
    )


def workflow_archive_waiting(*, workflow_id) -> bool:
    """True while batch jobs of the workflow are still being closed (e.g. just cancelled)."""
    return (
        StepRun.objects.filter(step__workflow_id=workflow_id, finalized=False)
        .exclude(batch_job_id="")
        .exists()
    )


def workflow_archive(*, workflow_id) -> Archive | None:
    """Package an ended workflow into its archive and make it ARCHIVED. Idempotent.

    The archive is written under a temporary name; then, with the workflow row locked, it is
    renamed into place, recorded (size, sha256) and the workflow moves to ARCHIVED, keeping
    its ``outcome``. A second run finds it ARCHIVED and returns the recorded archive; a
    workflow deleted meanwhile leaves no file behind. Returns None if there is nothing to do.
    """
    from workers import archive as engine

    workflow = Workflow.objects.select_related("owner").filter(pk=workflow_id).first()
    if workflow is None:
        return None
    if workflow.state == WorkflowState.ARCHIVED:
        return Archive.objects.filter(workflow=workflow).first()
    if workflow.state not in WORKFLOW_ENDED:
        return None
    packaged = engine.package(
        _archive_spec(workflow),
        Path(settings.APIARY_ARCHIVE_DIR),
        max_output_bytes=settings.APIARY_ARCHIVE_MAX_OUTPUT_BYTES,
        max_log_bytes=settings.APIARY_ARCHIVE_MAX_LOG_BYTES,
    )
    try:
        with transaction.atomic():
            locked = Workflow.objects.select_for_update().filter(pk=workflow_id).first()
            if locked is None or locked.state not in WORKFLOW_ENDED:
                engine.discard(packaged)
                return Archive.objects.filter(workflow_id=workflow_id).first() if locked else None
            engine.install(packaged)
            archive, _ = Archive.objects.update_or_create(
                workflow=locked,
                defaults={
                    "path": str(packaged.path),
                    "size": packaged.size,
                    "sha256": packaged.sha256,
                    "format_version": engine.FORMAT_VERSION,
                },
            )
            workflow_transition(
                workflow=locked, new=WorkflowState.ARCHIVED, reason=f"archived ({packaged.size} bytes)"
            )
    finally:
        engine.discard(packaged)  # no-op once installed
    log.info("archived workflow %s: %s (%s bytes)", workflow_id, packaged.path, packaged.size)
    return archive


def _archive_limits() -> ArchiveLimits:
    return ArchiveLimits(
        max_members=settings.APIARY_ARCHIVE_MAX_MEMBERS,
        max_bytes=settings.APIARY_ARCHIVE_MAX_BYTES,
        max_ratio=settings.APIARY_ARCHIVE_MAX_RATIO,
    )


def _save_upload(upload, dest: Path) -> str:
    """Copy an uploaded archive (a file object) to ``dest`` within the size limit; its sha256."""
    limit = settings.APIARY_ARCHIVE_MAX_BYTES
    digest, size = hashlib.sha256(), 0
    chunks = upload.chunks() if hasattr(upload, "chunks") else iter(lambda: upload.read(1024 * 1024), b"")
    with open(dest, "wb") as out:
        for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise ArchiveRuleError("max-bytes", f"the archive is over {limit} bytes.", limit=limit)
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _inputs_for_main(value, main_dir: str):
    """Archive job-order locations (``src/…``) made relative to the main document's folder."""
    if isinstance(value, list):
        return [_inputs_for_main(v, main_dir) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _inputs_for_main(v, main_dir) for k, v in value.items()}
    location = out.get("location")
    if out.get("class") in ("File", "Directory") and isinstance(location, str) and "://" not in location:
        out["location"] = os.path.relpath(location, start=os.path.join("src", main_dir))
    return out


def workflow_reexecute(
    *,
    owner,
    upload=None,
    source: Workflow | None = None,
    name: str = "",
    inputs_text: str | None = None,
    start: bool = True,
) -> Workflow:
    """A new workflow from an archive: same documents and inputs, new id, every state reset.

    The archive is an ``upload`` (a file object: untrusted, checked against every rule of
    ``workflows.bundles.ARCHIVE_RULES``) or the archive of ``source``, one of the caller's
    ARCHIVED workflows (Conflict if it is not archived yet). Only ``manifest.json`` and ``src/``
    are unpacked, into a scratch folder removed afterwards. ``inputs_text`` (YAML/JSON object)
    overrides archived inputs by name; its File paths are relative to the main document inside
    ``src/``. The submission takes the normal path (:func:`workflow_submit`); the new workflow
    records the source workflow id and the archive's sha256.
    """
    from workers import archive as engine

    if (upload is None) == (source is None):
        raise ApplicationError("Give either an archive file or an archived workflow id, not both or neither.")
    scratch = Path(settings.APIARY_RUNS_DIR) / ".scratch" / str(uuid.uuid4())
    scratch.mkdir(parents=True)
    try:
        if source is not None:
            archive = Archive.objects.filter(workflow=source).first()
            if source.state != WorkflowState.ARCHIVED or archive is None:
                raise Conflict(
                    f"Workflow {source.id} is {source.state}, not archived yet; re-execute it once ARCHIVED.",
                    extra={"state": source.state},
                )
            path, sha256, limits = Path(archive.path), archive.sha256, None
            if not path.is_file():
                raise Conflict(f"The archive of workflow {source.id} is missing from {path.parent}.")
        else:
            path = scratch / "upload.tgz"
            sha256, limits = _save_upload(upload, path), _archive_limits()
        tree = scratch / "tree"
        tree.mkdir()
        written = unpack_archive(
            path,
            tree,
            limits=limits,
            wanted=lambda p: p.as_posix() == engine.MANIFEST_NAME or p.parts[0] == "src",
        )
        if engine.MANIFEST_NAME not in written:
            raise ArchiveRuleError("manifest-missing", "there is no manifest.json at the top of the archive.")
        manifest = engine.validate_manifest((tree / engine.MANIFEST_NAME).read_bytes())
        main = manifest["main_document"]
        document, _ = cwl.split_fragment(tree / "src" / main)  # "packed.cwl#main": a process in it
        if not document.is_file():
            raise ArchiveRuleError(
                "manifest-malformed", f"manifest.json names main_document {main!r}, which is not in src/."
            )
        job_order = _inputs_for_main(manifest["inputs"], os.path.dirname(main))
        if inputs_text and inputs_text.strip():
            job_order.update(cwl.parse_job_order(inputs_text, "inputs_text"))
        bundle = io.BytesIO()
        with tarfile.open(fileobj=bundle, mode="w") as tar:
            tar.add(tree / "src", arcname=".", recursive=True)
        workflow = workflow_submit(
            owner=owner,
            files={"archive-src.tar": bundle.getvalue()},
            main=main,
            inputs_text=json.dumps(job_order),
            name=name or manifest["name"],
            start=False,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    Workflow.objects.filter(pk=workflow.pk).update(
        source_workflow_id=manifest["workflow_id"], source_archive_sha256=sha256
    )
    workflow.source_workflow_id = uuid.UUID(manifest["workflow_id"])
    workflow.source_archive_sha256 = sha256
    if start:
        workflow_start(workflow=workflow)
    return workflow
