"""Portal pages rendered by Django (the browser tests with Playwright come with the portal issue)."""

import pytest

from tests.conftest import example_files
from workflows.services import workflow_submit

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
