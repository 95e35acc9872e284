"""Who may see and act on what: every endpoint under ``/api/v1/`` and every portal page, walked
with two users and an admin.

The rows are checked against the URL resolver: an endpoint or page added without a row here
fails :func:`test_every_route_has_a_row`. For each object-bearing row, a fresh workflow is made
for its owner and requested by:

* its owner — the row's success status;
* the other user, both ways round — 404 (never 403: ids do not leak);
* the admin (Keycloak role ``admin``, hence Django staff) — the row's success status.

The API half authenticates with real Keycloak access tokens (password grant of ``apiary-cli``
for the realm's test users); the pages half signs in as the users those tokens created.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from portal.models import ApiToken
from portal.services import api_token_create
from tests.conftest import example_files
from tests.integration.keycloak import access_token, configure
from workflows import drafts, services
from workflows.models import StepRun, Workflow

pytestmark = [pytest.mark.integration, pytest.mark.keycloak, pytest.mark.django_db]

# (requester, owner of the object): who asks for whose workflow, and what it should get.
PAIRS = [
    ("alice", "alice", "own"),
    ("bob", "alice", "other"),
    ("alice", "bob", "other"),
    ("admin", "bob", "admin"),
]


@pytest.fixture
def keycloak(settings):
    return configure(settings)


_tokens: dict[str, tuple[str, float]] = {}


def jwt_for(username: str) -> str:
    token, at = _tokens.get(username, ("", 0.0))
    if time.monotonic() - at > 200:  # the realm's access tokens live 300 s
        token = access_token(username)
        _tokens[username] = (token, time.monotonic())
    return token


@pytest.fixture
def users(keycloak):
    """alice, bob (role user) and admin (roles user, admin), created from their Keycloak tokens."""
    made = {}
    for name in ("alice", "bob", "admin"):
        made[name] = keycloak.user_from_claims(keycloak.validate_access_token(jwt_for(name)))
    assert made["admin"].is_staff and not made["alice"].is_staff and not made["bob"].is_staff
    return made


def api_as(username: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {jwt_for(username)}")
    return client


def page_as(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_workflow(owner, state: str | None = None) -> Workflow:
    workflow = services.workflow_submit(
        owner=owner,
        files=example_files("grep-wc"),
        main="workflow.cwl",
        inputs="inputs.yml",
        name=f"wf-of-{owner.username}",
        start=False,
    )
    if state == "ARCHIVED":
        Workflow.objects.filter(pk=workflow.pk).update(state="COMPLETED", outcome="COMPLETED")
        services.workflow_archive(workflow_id=workflow.id)
    elif state:
        Workflow.objects.filter(pk=workflow.pk).update(state=state)
    workflow.refresh_from_db()
    assert state is None or workflow.state == state
    return workflow


@dataclass
class Row:
    """One request against a workflow: ``path`` is formatted with ``wf`` (the workflow id)."""

    method: str
    path: str
    ok: tuple[int, ...]
    state: str | None = None  # the workflow's state before the request
    data: Any = None
    other: tuple[int, ...] = (404,)  # what another user gets
    headers: dict = field(default_factory=dict)


# --- the API --------------------------------------------------------------------------------------

API_ROWS: dict[str, list[Row]] = {
    "api/v1/workflows/<str:workflow_id>/": [
        Row("GET", "/api/v1/workflows/{wf}/", (200,)),
        Row("DELETE", "/api/v1/workflows/{wf}/", (204,), state="COMPLETED"),
    ],
    "api/v1/workflows/<str:workflow_id>/<str:action>/": [
        Row("POST", "/api/v1/workflows/{wf}/start/", (200,), state="SUBMITTED"),
        Row("POST", "/api/v1/workflows/{wf}/pause/", (200,), state="RUNNING"),
        Row("POST", "/api/v1/workflows/{wf}/resume/", (200,), state="PAUSED"),
        Row("POST", "/api/v1/workflows/{wf}/cancel/", (200,), state="RUNNING"),
    ],
    "api/v1/workflows/<str:workflow_id>/archive": [
        Row("GET", "/api/v1/workflows/{wf}/archive", (200,), state="ARCHIVED"),
    ],
    "api/v1/workflows/<str:workflow_id>/outputs": [Row("GET", "/api/v1/workflows/{wf}/outputs", (200,))],
    "api/v1/workflows/<str:workflow_id>/dag": [
        Row("GET", "/api/v1/workflows/{wf}/dag", (200,)),
        Row("GET", "/api/v1/workflows/{wf}/dag?format=graphml", (200,)),
    ],
    "api/v1/workflows/<str:workflow_id>/files/<path:path>": [
        Row("GET", "/api/v1/workflows/{wf}/files/src/workflow.cwl", (200,)),
    ],
    "api/v1/workflows/<str:workflow_id>/steps/<path:step_name>/logs/<str:stream>": [
        Row("GET", "/api/v1/workflows/{wf}/steps/grep/logs/script", (200,)),
        Row("GET", "/api/v1/workflows/{wf}/steps/grep/logs/stdout?offset=0", (200,)),
    ],
    "api/v1/workflows/reexecute": [
        Row("POST", "/api/v1/workflows/reexecute", (201,), state="ARCHIVED", data={"workflow": "{wf}"}),
    ],
    "api/v1/workflows/reexecute/": [
        Row("POST", "/api/v1/workflows/reexecute/", (201,), state="ARCHIVED", data={"workflow": "{wf}"}),
    ],
}
# Rows without a workflow in the path, checked by their own tests below.
API_SPECIAL = {
    "api/v1/workflows/": "test_api_workflow_list_shows_own_only_admin_all, test_api_submit_owns_the_workflow",
    "api/v1/runs/<int:run_id>/finished": "test_run_notice_needs_the_run_token_not_a_user",
}

# --- the pages ------------------------------------------------------------------------------------

HX = {"HTTP_HX_REQUEST": "true"}
PAGE_ROWS: dict[str, list[Row]] = {
    "workflows/<str:workflow_id>": [Row("GET", "/workflows/{wf}", (200,))],
    "workflows/<str:workflow_id>/files/<path:path>": [
        Row("GET", "/workflows/{wf}/files/src/workflow.cwl", (200,))
    ],
    "workflows/<str:workflow_id>/viewer/<str:stream>/<path:step_name>": [
        Row("GET", "/workflows/{wf}/viewer/stdout/grep", (200,), headers=HX),
        Row("GET", "/workflows/{wf}/viewer/script/grep", (302,)),  # without HTMX: the workflow page
    ],
    "workflows/<str:workflow_id>/tail/<str:stream>/<path:step_name>": [
        Row("GET", "/workflows/{wf}/tail/stdout/grep?offset=0&attempt=0", (200, 286), headers=HX),
    ],
    "workflows/<str:workflow_id>/steps/<path:step_name>/<str:stream>": [
        Row("GET", "/workflows/{wf}/steps/grep/script", (200,)),
    ],
    "workflows/<str:workflow_id>/<str:action>": [
        Row("POST", "/workflows/{wf}/start", (302,), state="SUBMITTED"),
        Row("POST", "/workflows/{wf}/pause", (302,), state="RUNNING"),
        Row("POST", "/workflows/{wf}/resume", (302,), state="PAUSED"),
        Row("POST", "/workflows/{wf}/cancel", (302,), state="RUNNING"),
    ],
}
PAGE_SPECIAL = {
    "": "test_pages_dashboard_and_archives_show_own_only_admin_all",
    "archives/": "test_pages_dashboard_and_archives_show_own_only_admin_all",
    "archives/reexecute": "test_page_reexecute_of_anothers_archive_is_refused",
    "workflows/new": "test_pages_without_objects_answer_everyone",
    "workflows/new/<str:draft_id>": "test_page_drafts_are_private",
    "tokens/": "test_page_tokens_are_private",
}
# Routes that are not per-user objects, and why.
EXEMPT = {
    "healthz": "public health probe, no user data",
    "admin/": "Django admin: staff only (test_admin_site_is_staff_only)",
    "login/": "sign-in page",
    "logout/": "sign-out",
    "oidc/login": "starts a Keycloak sign-in",
    "oidc/callback": "ends a Keycloak sign-in (tests/integration/test_keycloak.py)",
    "oidc/cli-config": "public: where the CLI signs in",
    "api/schema/": "the OpenAPI schema, no user data",
}


def all_routes(patterns=None, prefix: str = "") -> set[str]:
    routes = set()
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            if str(entry.pattern) == "admin/":
                routes.add("admin/")
                continue
            routes |= all_routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            routes.add(prefix + str(entry.pattern))
    return routes


def test_every_route_has_a_row():
    routes = all_routes()
    api = {r for r in routes if r.startswith("api/v1/")}
    assert api == set(API_ROWS) | set(API_SPECIAL), "an /api/v1/ endpoint without a row (or a stale row)"
    pages = routes - api - set(EXEMPT)
    assert pages == set(PAGE_ROWS) | set(PAGE_SPECIAL), "a page without a row (or a stale row)"


def _request(client, row: Row, wf: Workflow):
    path = row.path.format(wf=wf.id)
    data = {k: (v.format(wf=wf.id) if isinstance(v, str) else v) for k, v in (row.data or {}).items()}
    if row.method == "GET":
        return client.get(path, **row.headers)
    if row.method == "DELETE":
        return client.delete(path, **row.headers)
    return client.post(path, data, **row.headers)


def _walk(users, rows: dict[str, list[Row]], client_for, route: str):
    failures = []
    for row in rows[route]:
        for requester, owner, relation in PAIRS:
            wf = make_workflow(users[owner], row.state)
            response = _request(client_for(requester), row, wf)
            expected = row.other if relation == "other" else row.ok
            if response.status_code not in expected:
                failures.append(
                    f"{row.method} {row.path} by {requester} on {owner}'s workflow ({relation}): "
                    f"{response.status_code}, expected {expected}"
                )
            if relation == "other":
                wf.refresh_from_db()
                assert wf.state == (row.state or "SUBMITTED"), f"{row.path} by {requester} changed it"
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("route", sorted(API_ROWS))
def test_api_matrix(users, route):
    _walk(users, API_ROWS, api_as, route)


@pytest.mark.parametrize("route", sorted(PAGE_ROWS))
def test_page_matrix(users, route):
    _walk(users, PAGE_ROWS, lambda name: page_as(users[name]), route)


# --- rows without a workflow in the path ----------------------------------------------------------


def test_api_workflow_list_shows_own_only_admin_all(users):
    mine, theirs = make_workflow(users["alice"]), make_workflow(users["bob"])

    def ids(name):
        response = api_as(name).get("/api/v1/workflows/?limit=500")
        assert response.status_code == 200
        return {item["id"] for item in response.json()["results"]}

    assert ids("alice") == {str(mine.id)}
    assert ids("bob") == {str(theirs.id)}
    assert ids("admin") >= {str(mine.id), str(theirs.id)}


def test_api_submit_owns_the_workflow(users):
    from django.core.files.uploadedfile import SimpleUploadedFile

    for name in ("alice", "admin"):
        files = [SimpleUploadedFile(n, d) for n, d in example_files("grep-wc").items()]
        response = api_as(name).post(
            "/api/v1/workflows/",
            {"files": files, "main": "workflow.cwl", "inputs": "inputs.yml", "start": "false"},
            format="multipart",
        )
        assert response.status_code == 201, response.content
        assert Workflow.objects.get(pk=response.json()["id"]).owner == users[name]


def test_run_notice_needs_the_run_token_not_a_user(users):
    wf = make_workflow(users["alice"])
    run = StepRun.objects.create(step=wf.steps.get(name="grep"), attempt=1, batch_system="local")
    for name in ("alice", "bob", "admin"):
        assert (
            api_as(name).post(f"/api/v1/runs/{run.id}/finished", {"exit_code": 0}, format="json").status_code
            == 404
        )
    response = APIClient().post(
        f"/api/v1/runs/{run.id}/finished", {"exit_code": 0}, format="json", HTTP_X_APIARY_RUN_TOKEN=run.token
    )
    assert response.status_code == 202


def test_pages_dashboard_and_archives_show_own_only_admin_all(users):
    mine, theirs = make_workflow(users["alice"], "ARCHIVED"), make_workflow(users["bob"], "ARCHIVED")
    for path in ("/", "/archives/"):
        alice = page_as(users["alice"]).get(path).content.decode()
        assert str(mine.id) in alice and str(theirs.id) not in alice, path
        bob = page_as(users["bob"]).get(path).content.decode()
        assert str(theirs.id) in bob and str(mine.id) not in bob, path
        admin = page_as(users["admin"]).get(path).content.decode()
        assert str(mine.id) in admin and str(theirs.id) in admin, path


def test_pages_without_objects_answer_everyone(users):
    for name in ("alice", "bob", "admin"):
        assert page_as(users[name]).get("/workflows/new").status_code == 200
    assert Client().get("/workflows/new").status_code == 302  # signed out: to the sign-in page


def test_page_reexecute_of_anothers_archive_is_refused(users):
    theirs = make_workflow(users["bob"], "ARCHIVED")
    before = Workflow.objects.count()
    response = page_as(users["alice"]).post("/archives/reexecute", {"workflow": str(theirs.id)}, follow=True)
    assert Workflow.objects.count() == before
    assert f"No workflow {theirs.id}" in response.content.decode()
    response = page_as(users["admin"]).post("/archives/reexecute", {"workflow": str(theirs.id)})
    assert response.status_code == 302 and Workflow.objects.count() == before + 1
    response = page_as(users["bob"]).post("/archives/reexecute", {"workflow": str(theirs.id)})
    assert response.status_code == 302 and Workflow.objects.count() == before + 2


def test_page_drafts_are_private(users):
    draft = drafts.draft_create(user=users["bob"], files=example_files("grep-wc"), main="workflow.cwl")
    assert page_as(users["bob"]).get(f"/workflows/new/{draft.id}").status_code == 200
    response = page_as(users["alice"]).get(f"/workflows/new/{draft.id}")
    assert response.status_code == 302 and response["Location"] == "/workflows/new"


def test_page_tokens_are_private(users):
    theirs, _ = api_token_create(user=users["bob"], name="bobs")
    alice = page_as(users["alice"])
    page = alice.get("/tokens/").content.decode()
    assert "bobs" not in page
    alice.post("/tokens/", {"revoke": str(theirs.id)})
    assert ApiToken.objects.get(pk=theirs.pk).revoked_at is None
    page_as(users["admin"]).post("/tokens/", {"revoke": str(theirs.id)})
    assert ApiToken.objects.get(pk=theirs.pk).revoked_at is None  # tokens are personal, even for admins
    page_as(users["bob"]).post("/tokens/", {"revoke": str(theirs.id)})
    assert ApiToken.objects.get(pk=theirs.pk).revoked_at is not None


def test_admin_site_is_staff_only(users):
    assert page_as(users["alice"]).get("/admin/").status_code == 302
    assert page_as(users["admin"]).get("/admin/").status_code == 200
