"""Portal pages for workflows (Django templates + HTMX). Thin: selectors and services only.

Live parts poll with HTMX; a partial answers HTTP 286 once nothing it shows can change, which
tells HTMX to stop polling. Every page also works without JavaScript (it just stops being live).
"""

from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from portal.errors import ApplicationError, NotFound
from workflows import cwl, dag, drafts, selectors, services
from workflows.forms import EXISTING, InputsForm, input_specs
from workflows.serializers import public_outputs
from workflows.states import STEP_TERMINAL, WORKFLOW_ACTIVE, WorkflowState

STOP_POLLING = 286
LOG_STREAMS = ("stdout", "stderr", "script")
NO_JOB_KINDS = {"WORKFLOW": "a nested workflow", "SCATTER": "a scatter", "EXPRESSION": "an expression"}


def _get(request, workflow_id):
    try:
        return selectors.workflow_get(user=request.user, workflow_id=workflow_id)
    except NotFound:
        raise Http404("No such workflow") from None


def _partial(request) -> bool:
    """An HTMX request for a fragment (not a history restore, which needs the whole page)."""
    return bool(request.htmx) and not request.htmx.history_restore_request


# --- dashboard ------------------------------------------------------------------------------


@login_required
def dashboard(request):
    state, name = request.GET.get("state", ""), request.GET.get("name", "").strip()
    try:
        workflows = list(
            selectors.workflow_list(user=request.user, state=state or None, name=name or None)[:200]
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        workflows = []
    for w in workflows:
        w.percent = round(100 * w.steps_done / w.steps_total) if w.steps_total else 0
    live = any(w.state in WORKFLOW_ACTIVE for w in workflows)
    context = {
        "workflows": workflows,
        "state": state,
        "name": name,
        "states": WorkflowState.values,
        "title": "Workflows",
        "live": live,
        "filtered": bool(state or name),
    }
    if _partial(request):
        return render(request, "workflows/_table.html", context, status=200 if live else STOP_POLLING)
    return render(request, "workflows/dashboard.html", context)


# --- submit ---------------------------------------------------------------------------------


def _inputs_text(request) -> str | None:
    inputs_file = request.FILES.get("inputs_file")
    if inputs_file is not None:
        return inputs_file.read().decode(errors="replace")
    return request.POST.get("inputs_text") or None


@login_required
@require_http_methods(["GET", "POST"])
def submit(request):
    """Stage one: the upload. Either submit it with an inputs file, or go on to the inputs form."""
    errors: list[str] = []
    documents: list[str] = []
    if request.method == "POST":
        files = request.FILES.getlist("files")
        payload = {f.name: f.read() for f in files}
        main = request.POST.get("main", "").strip() or None
        name = request.POST.get("name", "").strip()
        start = request.POST.get("start") == "on"
        inputs_text = _inputs_text(request)
        if not payload:
            errors.append("Choose the CWL files (or one zip/tar bundle) to upload.")
        elif request.POST.get("mode") == "form":
            try:
                draft = drafts.draft_create(
                    user=request.user, files=payload, main=main, name=name, start=start, prefill=inputs_text
                )
                return redirect("workflow-submit-inputs", draft_id=draft.id)
            except ApplicationError as exc:
                errors.append(exc.message)
                documents = exc.extra.get("documents", [])
        else:
            try:
                workflow = services.workflow_submit(
                    owner=request.user,
                    files=payload,
                    main=main,
                    inputs_text=inputs_text,
                    name=name,
                    start=start,
                )
                return redirect("workflow-detail", workflow_id=workflow.id)
            except ApplicationError as exc:
                errors.append(exc.message)
                documents = exc.extra.get("documents", [])
                if "Invalid inputs" in exc.message and not inputs_text:
                    errors.append(
                        "No inputs were given: add an inputs file, or choose "
                        "“Continue to the inputs form” to fill them in."
                    )
    context = {
        "errors": errors,
        "documents": documents,
        "values": request.POST if request.method == "POST" else {"start": "on"},
        "title": "Submit a workflow",
    }
    return render(request, "workflows/submit.html", context)


def _field_errors(form: InputsForm, message: str) -> bool:
    """Attach a validator message to the inputs it names; True if it named any."""
    detail = [
        line.strip()
        for line in message.splitlines()
        if line.strip() and not line.startswith(("Invalid inputs", "Invalid job input record"))
    ]
    text = re.sub(r"^\S+\.cwl:\d+:\d+:\s*", "", " ".join(detail)) or message
    named = False
    for spec in form.specs:
        if f"'{spec.name}'" in message or f"`{spec.name}`" in message:
            form.add_error(spec.field_name, text)
            named = True
    return named


@login_required
@require_http_methods(["GET", "POST"])
def submit_inputs(request, draft_id):
    """Stage two: a form generated from the workflow's inputs; submitting it submits the workflow."""
    try:
        draft = drafts.draft_get(user=request.user, draft_id=draft_id)
        process = draft.process()
        specs = input_specs(process, draft.main_path)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("workflow-submit")
    errors: list[str] = []
    if request.method == "POST":
        data = request.POST.copy()
        for spec in specs:  # keep files uploaded here, so that an error elsewhere does not lose them
            uploads = request.FILES.getlist(spec.field_name)
            if not uploads:
                continue
            saved = [draft.save_upload(spec.name, f) for f in uploads]
            if spec.kind == "File":
                data[spec.field_name + EXISTING] = saved[-1]
            else:
                data.setlist(spec.field_name + EXISTING, data.getlist(spec.field_name + EXISTING) + saved)
        form = InputsForm(data, specs=specs, data_files=draft.data_files(), folders=draft.folders())
        if form.is_valid():
            try:
                workflow = drafts.draft_submit(
                    user=request.user,
                    draft=draft,
                    job_order=form.job_order(base=draft.main_folder),
                    name=request.POST.get("name", "").strip(),
                    start=request.POST.get("start") == "on",
                )
                return redirect("workflow-detail", workflow_id=workflow.id)
            except ApplicationError as exc:
                if not _field_errors(form, exc.message):
                    errors.append(exc.message)
        if form.errors and not errors:
            errors.append("Some inputs need attention; see the messages next to them.")
        values = data
    else:
        form = InputsForm(specs=specs, data_files=draft.data_files(), folders=draft.folders())
        if draft.prefill:
            try:
                form.prefill(cwl.parse_job_order(draft.prefill, "the inputs file"), draft.main_folder)
            except ApplicationError as exc:
                errors.append(f"The inputs file was not used: {exc.message}")
        values = {"name": draft.name, "start": "on" if draft.start else ""}
    context = {
        "draft": draft,
        "form": form,
        "process": process.tool,
        "errors": errors,
        "values": values,
        "title": "Submit a workflow: inputs",
    }
    return render(request, "workflows/submit_inputs.html", context)


# --- the workflow page ----------------------------------------------------------------------


def output_rows(outputs, prefix: str = "") -> list[dict]:
    """The output object (as :func:`public_outputs` gives it) as rows: files with their paths."""
    rows: list[dict] = []

    def walk(label, value):
        if isinstance(value, dict) and value.get("class") in ("File", "Directory"):
            rows.append(
                {
                    "name": label,
                    "class": value["class"],
                    "basename": value.get("basename") or str(value.get("path", "")).rsplit("/", 1)[-1],
                    "path": value.get("path"),
                    "size": value.get("size"),
                }
            )
            for i, item in enumerate(value.get("secondaryFiles") or []):
                walk(f"{label} (secondary {i + 1})", item)
            for item in value.get("listing") or []:
                walk(f"{label}/", item)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                walk(f"{label}[{i}]", item)
        else:
            rows.append({"name": label, "value": value})

    for key, value in (outputs or {}).items():
        walk(f"{prefix}{key}", value)
    return rows


def _log_context(workflow, step, stream: str) -> dict:
    chunk = selectors.step_log_read(step=step, stream=stream)
    return {
        "workflow": workflow,
        "step": step,
        "stream": stream,
        "streams": LOG_STREAMS,
        "chunk": chunk,
        "run": chunk["run"],
        "following": step.state not in STEP_TERMINAL,
        "no_job": NO_JOB_KINDS.get(step.kind),
    }


def _detail_context(request, workflow) -> dict:
    steps = selectors.steps_in_tree_order(selectors.workflow_steps(workflow=workflow))
    graph = dag.layout(steps, selectors.workflow_edges(workflow=workflow))
    done = sum(1 for s in steps if s.state in ("COMPLETED", "SKIPPED"))
    return {
        "workflow": workflow,
        "steps": steps,
        "graph": graph,
        "done": done,
        "percent": round(100 * done / len(steps)) if steps else 0,
        "outputs": output_rows(public_outputs(workflow.outputs or {}, workflow, None)),
        "title": f"{workflow.name} ({workflow.state})",
        "active": workflow.state in WORKFLOW_ACTIVE,
        "states": sorted({s.state for s in steps}),
        "log_streams": LOG_STREAMS,
    }


@login_required
def detail(request, workflow_id):
    workflow = _get(request, workflow_id)
    context = _detail_context(request, workflow)
    if _partial(request):
        status = 200 if context["active"] else STOP_POLLING
        return render(request, "workflows/_detail.html", context, status=status)
    step_name, stream = request.GET.get("step"), request.GET.get("stream", "stdout")
    if step_name and stream in LOG_STREAMS:
        step = next((s for s in context["steps"] if s.name == step_name), None)
        if step is not None:
            context["log"] = _log_context(workflow, step, stream)
    return render(request, "workflows/detail.html", context)


@login_required
@require_POST
def action(request, workflow_id, action):
    workflow = _get(request, workflow_id)
    if action not in services.WORKFLOW_ACTIONS:
        raise Http404("Unknown action")
    done = {"start": "started", "pause": "paused", "resume": "resumed", "cancel": "cancelled"}[action]
    try:
        services.workflow_act(workflow=workflow, action=action)
        messages.success(request, f"Workflow {done}.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("workflow-detail", workflow_id=workflow.id)


def _step(workflow, step_name):
    try:
        return selectors.step_get(workflow=workflow, name=step_name)
    except ApplicationError:
        raise Http404("No such step") from None


@login_required
def step_log(request, workflow_id, step_name, stream):
    """A step's script, stdout or stderr as plain text (the raw view)."""
    workflow = _get(request, workflow_id)
    step = _step(workflow, step_name)
    if stream not in LOG_STREAMS:
        raise Http404("No such stream")
    path = selectors.step_log_path(step=step, stream=stream)
    text = path.read_text(errors="replace")[-200_000:] if path and path.is_file() else ""
    return HttpResponse(text, content_type="text/plain; charset=utf-8")


@login_required
def log_viewer(request, workflow_id, stream, step_name):
    """The log viewer for one step and stream (a fragment; the whole page without HTMX)."""
    workflow = _get(request, workflow_id)
    step = _step(workflow, step_name)
    if stream not in LOG_STREAMS:
        raise Http404("No such stream")
    if not _partial(request):
        url = reverse("workflow-detail", args=[workflow.id])
        return redirect(f"{url}?step={step.name}&stream={stream}#log-panel")
    return render(request, "workflows/_log.html", {"log": _log_context(workflow, step, stream)})


@login_required
def log_tail(request, workflow_id, stream, step_name):
    """What a followed log gained since ``offset``; 286 once the step ended and all was read."""
    workflow = _get(request, workflow_id)
    step = _step(workflow, step_name)  # read the state before the file: a final state means all written
    if stream not in LOG_STREAMS:
        raise Http404("No such stream")
    try:
        offset = max(0, int(request.GET.get("offset", "0")))
        attempt = int(request.GET.get("attempt", "0"))
    except ValueError:
        return HttpResponse("offset and attempt must be whole numbers", status=400)
    chunk = selectors.step_log_read(step=step, stream=stream, offset=offset)
    run = chunk["run"]
    if (run.attempt if run else 0) != attempt:  # a (new) attempt began: show it from the start
        response = render(request, "workflows/_log.html", {"log": _log_context(workflow, step, stream)})
        response["HX-Retarget"] = "#log-panel"
        response["HX-Reswap"] = "innerHTML"
        return response
    following = step.state not in STEP_TERMINAL or chunk["offset"] < chunk["size"]
    log = {
        "workflow": workflow,
        "step": step,
        "stream": stream,
        "chunk": chunk,
        "run": run,
        "following": following,
        "no_job": NO_JOB_KINDS.get(step.kind),
    }
    status = 200 if following else STOP_POLLING
    return render(request, "workflows/_log_tail.html", {"log": log}, status=status)


@login_required
def download(request, workflow_id, path):
    """A file of the workflow's run (an output) for the signed-in owner."""
    workflow = _get(request, workflow_id)
    try:
        file = selectors.workflow_file(workflow=workflow, relative=path)
    except ApplicationError:
        raise Http404("No such file") from None
    return FileResponse(open(file, "rb"), as_attachment=True, filename=file.name)


# --- archives (README: "Archives, copy and re-execute") ------------------------------------------


@login_required
def archives(request):
    """The user's archived workflows: download each archive, re-execute it, or upload one."""
    workflows = list(selectors.archived_workflows(user=request.user)[:500])
    return render(request, "workflows/archives.html", {"workflows": workflows, "title": "Archives"})


@login_required
@require_POST
def reexecute(request):
    """Re-execute an archive (one of the user's archived workflows, or an uploaded .tgz)."""
    upload = request.FILES.get("archive")
    source = None
    try:
        if upload is None:
            source = selectors.workflow_get(user=request.user, workflow_id=request.POST.get("workflow", ""))
        workflow = services.workflow_reexecute(
            owner=request.user,
            upload=upload,
            source=source,
            name=request.POST.get("name", "").strip(),
            inputs_text=request.POST.get("inputs_text") or None,
        )
    except ApplicationError as exc:
        messages.error(request, f"Not re-executed: {exc.message}")
        if source is not None:
            return redirect("workflow-detail", workflow_id=source.id)
        return redirect("archives")
    messages.success(request, f"Re-executed as a new workflow, {workflow.name}.")
    return redirect("workflow-detail", workflow_id=workflow.id)
