"""Portal pages rendered by Django; the browser tests are in tests/functional/."""

import io
import re
import tarfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import EXAMPLES, REPO, example_files
from workflows.models import Step, StepRun, Workflow
from workflows.services import workflow_submit
from workflows.storage import run_dir, workflow_dir

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def signed_in(client, user):
    assert client.login(username="alice", password="alice-password")
    return client


def _workflow(owner):
    return workflow_submit(
        owner=owner, files=example_files("grep-wc"), main="workflow.cwl", inputs="inputs.yml", start=False
    )


def test_pages_need_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_dashboard_lists_my_workflows_with_progress(signed_in, user):
    workflow = _workflow(user)
    page = signed_in.get("/").content.decode()
    assert workflow.name in page
    assert "0 / 2" in page
    assert "<title>Workflows · Apiary</title>" in page


def test_dashboard_polling_stops_when_nothing_is_active(signed_in, user):
    workflow = _workflow(user)
    assert signed_in.get("/", HTTP_HX_REQUEST="true").status_code == 200
    type(workflow).objects.filter(pk=workflow.pk).update(state="COMPLETED")
    assert signed_in.get("/", HTTP_HX_REQUEST="true").status_code == 286


def test_workflow_page_shows_steps_and_start_action(signed_in, user):
    workflow = _workflow(user)
    page = signed_in.get(f"/workflows/{workflow.id}").content.decode()
    assert "grep" in page and "wc" in page
    assert f"/workflows/{workflow.id}/start" in page
    assert f"/workflows/{workflow.id}/pause" not in page


def test_another_users_workflow_page_is_404(signed_in, other_user):
    theirs = _workflow(other_user)
    assert signed_in.get(f"/workflows/{theirs.id}").status_code == 404
    assert signed_in.post(f"/workflows/{theirs.id}/cancel").status_code == 404
    assert signed_in.get(f"/workflows/{theirs.id}/steps/grep/script").status_code == 404


def test_submit_form_shows_validation_errors_not_a_traceback(signed_in):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = signed_in.post("/workflows/new", {"files": [SimpleUploadedFile("w.cwl", b"class: [oops\n")]})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'class="msg error"' in page
    assert "Traceback" not in page


def test_token_page_creates_a_token_shown_once(signed_in, user):
    page = signed_in.post("/tokens/", {"name": "laptop"}).content.decode()
    assert 'id="new-token">apy_' in page
    assert user.api_tokens.filter(name="laptop").exists()


HX = {"HTTP_HX_REQUEST": "true"}
GREP_WC = EXAMPLES / "grep-wc"


def _uploads(*names, folder=GREP_WC):
    return [SimpleUploadedFile(n, (folder / n).read_bytes()) for n in names]


def _run_with_log(step, text: str, attempt: int = 1) -> StepRun:
    run = StepRun.objects.create(step=step, attempt=attempt, batch_system="slurm", batch_job_id="4242")
    folder = run_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.out").write_text(text)
    return run


def test_workflow_page_draws_the_dag_with_an_edge(signed_in, user):
    workflow = _workflow(user)
    page = signed_in.get(f"/workflows/{workflow.id}").content.decode()
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="dag"' in page
    assert page.count('class="node s-WAITING"') == 2
    assert page.count('class="edge s-WAITING"') == 1
    assert f"<title>{workflow.name} (SUBMITTED) · Apiary</title>" in page


def test_scatter_elements_are_drawn_inside_their_step(signed_in, user):
    folder = REPO / "tests" / "fixtures" / "scatter"
    workflow = workflow_submit(
        owner=user,
        files={p.name: p.read_bytes() for p in folder.iterdir()},
        inputs_text="numbers: [1, 2, 3]",
        start=False,
    )
    square = workflow.steps.get(name="square")
    Step.objects.filter(pk=square.pk).update(state="RUNNING")
    for i in range(3):
        Step.objects.create(
            workflow=workflow,
            parent=square,
            name=f"square[{i}]",
            tool_path=square.tool_path,
            kind="TOOL",
            scatter_index=i,
            tool_ref=square.tool_ref,
            tool_class=square.tool_class,
            state="COMPLETED" if i else "RUNNING",
        )
    page = signed_in.get(f"/workflows/{workflow.id}").content.decode()
    assert 'class="node group s-RUNNING" id="node-' in page and 'data-step="square"' in page
    for i in range(3):
        assert f'data-step="square[{i}]"' in page
    # the table lists each element right under its step, indented
    rows = [
        page.index(f'id="step-{s.pk}"')
        for s in (square, *square.children.all(), workflow.steps.get(name="count"))
    ]
    assert rows == sorted(rows)
    assert 'style="--depth: 1"' in page


def test_the_partial_is_the_whole_page_on_a_history_restore(signed_in, user):
    workflow = _workflow(user)
    partial = signed_in.get(f"/workflows/{workflow.id}", **HX).content.decode()
    assert "<html" not in partial and 'id="workflow-state"' in partial
    restore = signed_in.get(f"/workflows/{workflow.id}", HTTP_HX_HISTORY_RESTORE_REQUEST="true", **HX)
    assert "<html" in restore.content.decode()


def test_the_log_viewer_follows_from_an_offset_and_stops_when_the_step_ended(signed_in, user):
    workflow = _workflow(user)
    step = workflow.steps.get(name="grep")
    run = _run_with_log(step, "one\n")
    base = f"/workflows/{workflow.id}"

    viewer = signed_in.get(f"{base}/viewer/stdout/grep", **HX).content.decode()
    assert "one\n</pre>" in viewer
    assert "tail/stdout/grep?offset=4&amp;attempt=1" in viewer and 'hx-trigger="every 1s"' in viewer

    with open(run_dir(run) / "job.out", "a") as fh:
        fh.write("two ünïcode\n")
    tail = signed_in.get(f"{base}/tail/stdout/grep?offset=4&attempt=1", **HX)
    body = tail.content.decode()
    assert tail.status_code == 200
    assert body.startswith('two ünïcode\n<p id="log-status"')  # the text to append, nothing more
    size = 4 + len("two ünïcode\n".encode())
    assert f"offset={size}&amp;attempt=1" in body and 'hx-swap-oob="true"' in body

    Step.objects.filter(pk=step.pk).update(state="COMPLETED")
    StepRun.objects.filter(pk=run.pk).update(exit_code=0)
    done = signed_in.get(f"{base}/tail/stdout/grep?offset={size}&attempt=1", **HX)
    assert done.status_code == 286  # htmx stops polling
    assert "hx-trigger" not in done.content.decode() and "exit code 0" in done.content.decode()


def test_the_log_viewer_starts_over_when_a_new_attempt_begins(signed_in, user):
    workflow = _workflow(user)
    step = workflow.steps.get(name="grep")
    _run_with_log(step, "first\n")
    _run_with_log(step, "second\n", attempt=2)
    tail = signed_in.get(f"/workflows/{workflow.id}/tail/stdout/grep?offset=6&attempt=1", **HX)
    assert tail["HX-Retarget"] == "#log-panel"
    assert "second" in tail.content.decode() and "attempt 2" in tail.content.decode()


def test_the_log_viewer_without_htmx_is_the_workflow_page(signed_in, user):
    workflow = _workflow(user)
    _run_with_log(workflow.steps.get(name="wc"), "<b>not markup</b>\n")
    response = signed_in.get(f"/workflows/{workflow.id}/viewer/stdout/wc")
    assert response.status_code == 302 and response["Location"].endswith("?step=wc&stream=stdout#log-panel")
    page = signed_in.get(f"/workflows/{workflow.id}?step=wc&stream=stdout").content.decode()
    assert 'id="log-viewer" data-step="wc" data-stream="stdout"' in page
    assert "&lt;b&gt;not markup&lt;/b&gt;" in page


def test_outputs_are_downloaded_through_the_page(signed_in, user):
    workflow = _workflow(user)
    out = workflow_dir(workflow.id) / "steps" / "wc" / "1" / "outdir" / "counts.txt"
    out.parent.mkdir(parents=True)
    out.write_text("87\n")
    Workflow.objects.filter(pk=workflow.pk).update(
        state="COMPLETED",
        outputs={"counts": {"class": "File", "location": out.as_uri(), "basename": "counts.txt", "size": 3}},
    )
    page = signed_in.get(f"/workflows/{workflow.id}").content.decode()
    url = f"/workflows/{workflow.id}/files/steps/wc/1/outdir/counts.txt"
    assert f'href="{url}"' in page
    download = signed_in.get(url)
    assert download["Content-Disposition"].startswith("attachment")
    assert b"".join(download.streaming_content) == b"87\n"
    assert signed_in.get(f"/workflows/{workflow.id}/files/../../etc/passwd").status_code == 404


def test_submit_in_two_stages_through_the_inputs_form(signed_in, user, settings):
    stage1 = signed_in.post(
        "/workflows/new",
        {
            "files": _uploads("workflow.cwl", "grep.cwl", "wc.cwl"),
            "inputs_text": "pattern: integer\n",
            "mode": "form",
            "name": "two stages",
        },
    )
    assert stage1.status_code == 302
    form_url = stage1["Location"]
    assert re.fullmatch(r"/workflows/new/[\w-]+", form_url)
    page = signed_in.get(form_url).content.decode()
    assert 'name="in_pattern" value="integer"' in page  # filled in from the inputs text
    assert 'name="in_infile"' in page and 'type="file"' in page
    assert 'value="two stages"' in page

    done = signed_in.post(
        form_url, {"in_pattern": "integer", "in_infile": _uploads("lorem.txt")[0], "name": "two stages"}
    )
    assert done.status_code == 302, done.content.decode()[:3000]
    workflow = Workflow.objects.get(name="two stages")
    assert workflow.state == "SUBMITTED"  # "start" was not ticked
    assert workflow.inputs["pattern"] == "integer"
    assert workflow.inputs["infile"]["location"].endswith("/src/_inputs/infile/lorem.txt")
    assert (workflow_dir(workflow.id) / "src" / "_inputs" / "infile" / "lorem.txt").is_file()
    assert signed_in.get(form_url).status_code == 302  # the draft is gone once submitted


def test_a_bundle_in_a_folder_with_a_file_from_the_upload(signed_in, user):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in ("workflow.cwl", "grep.cwl", "wc.cwl", "lorem.txt"):
            tar.add(GREP_WC / name, arcname=f"grep-wc/{name}")
    bundle = SimpleUploadedFile("grep-wc.tar.gz", buffer.getvalue())
    stage1 = signed_in.post("/workflows/new", {"files": [bundle], "mode": "form"})
    assert stage1.status_code == 302
    page = signed_in.get(stage1["Location"]).content.decode()
    assert '<option value="grep-wc/lorem.txt">' in page
    done = signed_in.post(
        stage1["Location"], {"in_pattern": "dolor", "in_infile__existing": "grep-wc/lorem.txt"}
    )
    assert done.status_code == 302, done.content.decode()[:3000]
    workflow = Workflow.objects.get(owner=user)
    assert workflow.main_document == "grep-wc/workflow.cwl"
    assert workflow.inputs["infile"]["location"].endswith("/src/grep-wc/lorem.txt")


def test_inputs_form_errors_are_next_to_the_field(signed_in, user):
    stage1 = signed_in.post(
        "/workflows/new",
        {"files": _uploads("slow-grep.cwl", "wc.cwl", "lorem.txt"), "main": "slow-grep.cwl", "mode": "form"},
    )
    form_url = stage1["Location"]
    response = signed_in.post(
        form_url, {"in_pattern": "x", "in_infile__existing": "lorem.txt", "in_seconds": "soon"}
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert re.search(r'id="input-seconds".*?class="field-error"[^>]*>Enter a whole number', page, re.S)
    assert 'aria-invalid="true"' in page and "Traceback" not in page
    assert not Workflow.objects.exists()


def test_several_documents_without_a_main_one_ask_which(signed_in, user):
    response = signed_in.post(
        "/workflows/new", {"files": _uploads("grep.cwl", "wc.cwl", "slow-grep.cwl"), "mode": "form"}
    )
    page = response.content.decode()
    assert "say which one is the workflow" in page
    assert '<datalist id="documents">' in page and '<option value="slow-grep.cwl">' in page


def test_another_users_draft_is_not_found(client, user, other_user):
    assert client.login(username="bob", password="bob-password")
    stage1 = client.post(
        "/workflows/new", {"files": _uploads("workflow.cwl", "grep.cwl", "wc.cwl"), "mode": "form"}
    )
    client.logout()
    assert client.login(username="alice", password="alice-password")
    response = client.get(stage1["Location"])
    assert response.status_code == 302 and response["Location"] == "/workflows/new"


@pytest.fixture
def admin_client_signed_in(client, django_user_model):
    django_user_model.objects.create_superuser("root", "root@example.org", "root-password")
    assert client.login(username="root", password="root-password")
    return client


def test_admin_renders_every_registered_model(admin_client_signed_in):
    from django.contrib import admin

    for model in admin.site._registry:
        meta = model._meta
        url = f"/admin/{meta.app_label}/{meta.model_name}/"
        assert admin_client_signed_in.get(url).status_code == 200, url
    assert admin_client_signed_in.get("/admin/workflows/workflow/add/").status_code == 403


def test_admin_shows_states_read_only_and_pauses_through_the_service(admin_client_signed_in, user):
    workflow = _workflow(user)
    Workflow.objects.filter(pk=workflow.pk).update(state="RUNNING")
    change = admin_client_signed_in.get(f"/admin/workflows/workflow/{workflow.id}/change/").content.decode()
    assert 'name="state"' not in change
    response = admin_client_signed_in.post(
        "/admin/workflows/workflow/",
        {"action": "pause_selected", "_selected_action": [str(workflow.id)]},
        follow=True,
    )
    assert "1 workflow(s) paused." in response.content.decode()
    workflow.refresh_from_db()
    assert workflow.state == "PAUSED"
    assert workflow.events.filter(new_state="PAUSED").exists()  # through the transition service
    response = admin_client_signed_in.post(
        "/admin/workflows/workflow/",
        {"action": "pause_selected", "_selected_action": [str(workflow.id)]},
        follow=True,
    )
    assert "Only a RUNNING workflow can be paused" in response.content.decode()
