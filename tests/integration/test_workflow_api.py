"""The workflow API's answers to bad input and to other users, and the health endpoint."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import example_files
from workflows.models import Step, Workflow

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def _files(mapping):
    return [SimpleUploadedFile(name, data) for name, data in mapping.items()]


def test_invalid_cwl_is_400_with_the_validators_message_and_nothing_stored(api, settings):
    bad = {
        "workflow.cwl": b"cwlVersion: v1.2\nclass: Workflow\ninputs: {}\noutputs: []\n"
        b"steps:\n  a:\n    run: nowhere.cwl\n    in: {}\n    out: []\n"
    }
    response = api.post("/api/v1/workflows/", {"files": _files(bad)}, format="multipart")
    assert response.status_code == 400
    body = response.json()
    assert "nowhere.cwl" in body["message"]
    assert Workflow.objects.count() == 0
    incoming = settings.APIARY_RUNS_DIR / ".incoming"
    assert not incoming.exists() or list(incoming.iterdir()) == []


def test_inputs_that_do_not_match_the_schema_are_400(api):
    files = example_files("grep-wc")
    response = api.post(
        "/api/v1/workflows/",
        {"files": _files(files), "main": "workflow.cwl", "inputs_text": "pattern: 3\n"},
        format="multipart",
    )
    assert response.status_code == 400
    assert "Invalid inputs" in response.json()["message"]
    assert Workflow.objects.count() == 0


def test_several_documents_without_main_lists_them(api):
    files = {k: v for k, v in example_files("grep-wc").items() if k in ("grep.cwl", "wc.cwl")}
    response = api.post("/api/v1/workflows/", {"files": _files(files)}, format="multipart")
    assert response.status_code == 400
    assert "main" in response.json()["message"]
    assert response.json()["extra"]["documents"] == ["grep.cwl", "wc.cwl"]


def test_validator_messages_name_files_as_submitted(api):
    files = example_files("grep-wc")
    response = api.post(
        "/api/v1/workflows/", {"files": _files(files), "inputs_text": "pattern: x\n"}, format="multipart"
    )
    assert response.status_code == 400
    message = response.json()["message"]
    assert "workflow.cwl:" in message and "infile" in message
    assert ".incoming" not in message


def test_submit_without_start_creates_steps_and_edges(api):
    files = example_files("grep-wc")
    response = api.post(
        "/api/v1/workflows/",
        {"files": _files(files), "main": "workflow.cwl", "inputs": "inputs.yml", "start": "false"},
        format="multipart",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["state"] == "SUBMITTED"
    steps = {s["name"]: s for s in body["steps"]}
    assert steps["wc"]["depends_on"] == ["grep"]
    assert {s.state for s in Step.objects.filter(workflow_id=body["id"])} == {"WAITING"}


def test_unknown_and_malformed_ids_are_404(api):
    for wid in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        response = api.get(f"/api/v1/workflows/{wid}/")
        assert response.status_code == 404
        assert "No workflow" in response.json()["message"]


def test_another_users_workflow_is_404_everywhere(api, other_user):
    from workflows.services import workflow_submit

    theirs = workflow_submit(
        owner=other_user,
        files=example_files("grep-wc"),
        main="workflow.cwl",
        inputs="inputs.yml",
        start=False,
    )
    for method, url in [
        ("get", f"/api/v1/workflows/{theirs.id}/"),
        ("post", f"/api/v1/workflows/{theirs.id}/start/"),
        ("post", f"/api/v1/workflows/{theirs.id}/cancel/"),
        ("get", f"/api/v1/workflows/{theirs.id}/outputs"),
        ("get", f"/api/v1/workflows/{theirs.id}/steps/grep/logs/stdout"),
        ("get", f"/api/v1/workflows/{theirs.id}/files/src/workflow.cwl"),
        ("delete", f"/api/v1/workflows/{theirs.id}/"),
    ]:
        assert getattr(api, method)(url).status_code == 404, url
    assert api.get("/api/v1/workflows/").json()["count"] == 0
    assert Workflow.objects.get(pk=theirs.id).state == "SUBMITTED"


def test_acting_on_a_finished_workflow_is_409(api, user):
    from workflows.services import workflow_submit

    workflow = workflow_submit(
        owner=user, files=example_files("grep-wc"), main="workflow.cwl", inputs="inputs.yml", start=False
    )
    Workflow.objects.filter(pk=workflow.pk).update(state="COMPLETED")
    response = api.post(f"/api/v1/workflows/{workflow.id}/pause/")
    assert response.status_code == 409
    assert "COMPLETED" in response.json()["message"]


def test_file_download_cannot_leave_the_workflow_folder(api, user):
    from workflows.services import workflow_submit

    workflow = workflow_submit(
        owner=user, files=example_files("grep-wc"), main="workflow.cwl", inputs="inputs.yml", start=False
    )
    assert api.get(f"/api/v1/workflows/{workflow.id}/files/src/lorem.txt").status_code == 200
    assert api.get(f"/api/v1/workflows/{workflow.id}/files/../../../../etc/passwd").status_code == 404


def test_unauthenticated_requests_are_refused(client):
    response = client.get("/api/v1/workflows/")
    assert response.status_code in (401, 403)
    assert "message" in response.json()


def test_healthz_reports_every_component(client):
    response = client.get("/healthz")
    body = response.json()
    assert set(body["components"]) == {"database", "broker", "batch_system", "graph_store"}
    assert response.status_code == 200, body
    assert body["components"]["database"]["status"] == "ok"
    assert "slurm" in body["components"]["batch_system"]["detail"]


def test_healthz_is_503_when_the_broker_is_down(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["components"]["broker"]["status"] == "down"


def test_a_tar_bundle_is_accepted_as_one_upload(api):
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in example_files("grep-wc").items():
            info = tarfile.TarInfo(f"grep-wc/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    bundle = SimpleUploadedFile("grep-wc.tar.gz", buf.getvalue())
    response = api.post(
        "/api/v1/workflows/",
        {"files": [bundle], "main": "grep-wc/workflow.cwl", "inputs": "grep-wc/inputs.yml", "start": "false"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert response.json()["main_document"] == "grep-wc/workflow.cwl"


def test_a_hostile_bundle_is_refused_with_the_rule_it_broke(api, settings):
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../../escape.cwl")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    response = api.post(
        "/api/v1/workflows/",
        {"files": [SimpleUploadedFile("evil.tar.gz", buf.getvalue())]},
        format="multipart",
    )
    assert response.status_code == 400
    assert "'..'" in response.json()["message"]
    assert not (settings.APIARY_RUNS_DIR.parent / "escape.cwl").exists()
    assert Workflow.objects.count() == 0


def test_openapi_schema_is_published(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/v1/workflows/" in response.content
