"""Portal pages for workflows (Django templates + HTMX). Thin: selectors and services only.

Live parts poll with HTMX; a partial answers HTTP 286 once nothing it shows can change, which
tells HTMX to stop polling.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from portal.errors import ApplicationError, NotFound
from workflows import selectors, services
from workflows.serializers import public_outputs
from workflows.states import WORKFLOW_ACTIVE, WorkflowState

STOP_POLLING = 286


def _get(request, workflow_id):
    try:
        return selectors.workflow_get(user=request.user, workflow_id=workflow_id)
    except NotFound:
        raise Http404("No such workflow") from None


@login_required
def dashboard(request):
    state, name = request.GET.get("state", ""), request.GET.get("name", "")
    try:
        workflows = list(
            selectors.workflow_list(user=request.user, state=state or None, name=name or None)[:200]
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        workflows = []
    context = {
        "workflows": workflows,
        "state": state,
        "name": name,
        "states": WorkflowState.values,
        "title": "Workflows",
    }
    live = any(w.state in WORKFLOW_ACTIVE for w in workflows)
    if request.htmx:
        return render(request, "workflows/_table.html", context, status=200 if live else STOP_POLLING)
    context["live"] = live
    return render(request, "workflows/dashboard.html", context)


@login_required
def submit(request):
    errors = []
    if request.method == "POST":
        files = request.FILES.getlist("files")
        inputs_file = request.FILES.get("inputs_file")
        payload = {f.name: f.read() for f in files}
        inputs_text = request.POST.get("inputs_text") or None
        if inputs_file is not None:
            inputs_text = inputs_file.read().decode(errors="replace")
        if not payload:
            errors.append("Choose the CWL files (or one zip/tar bundle) to upload.")
        else:
            try:
                workflow = services.workflow_submit(
                    owner=request.user,
                    files=payload,
                    main=request.POST.get("main") or None,
                    inputs_text=inputs_text,
                    name=request.POST.get("name", ""),
                )
                return redirect("workflow-detail", workflow_id=workflow.id)
            except ApplicationError as exc:
                errors.append(exc.message)
    return render(request, "workflows/submit.html", {"errors": errors, "title": "Submit a workflow"})


@login_required
def detail(request, workflow_id):
    workflow = _get(request, workflow_id)
    steps = selectors.workflow_steps(workflow=workflow)
    context = {
        "workflow": workflow,
        "steps": steps,
        "outputs": public_outputs(workflow.outputs or {}, workflow, None),
        "title": f"Workflow {workflow.name}",
        "active": workflow.state in WORKFLOW_ACTIVE,
    }
    if request.htmx:
        return render(
            request, "workflows/_detail.html", context, status=200 if context["active"] else STOP_POLLING
        )
    return render(request, "workflows/detail.html", context)


@login_required
@require_POST
def action(request, workflow_id, action):
    workflow = _get(request, workflow_id)
    handlers = {
        "start": services.workflow_start,
        "pause": services.workflow_pause,
        "resume": services.workflow_resume,
        "cancel": services.workflow_cancel,
    }
    if action not in handlers:
        raise Http404("Unknown action")
    try:
        handlers[action](workflow=workflow)
        messages.success(request, f"Workflow {action} requested.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("workflow-detail", workflow_id=workflow.id)


@login_required
def step_log(request, workflow_id, step_name, stream):
    workflow = _get(request, workflow_id)
    try:
        step = selectors.step_get(workflow=workflow, name=step_name)
        path = selectors.step_log_path(step=step, stream=stream)
    except ApplicationError:
        raise Http404("No such step or stream") from None
    text = path.read_text(errors="replace")[-200_000:] if path and path.is_file() else ""
    return HttpResponse(text, content_type="text/plain; charset=utf-8")
