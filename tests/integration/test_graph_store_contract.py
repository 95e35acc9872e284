"""The graph-store contract (DESIGN.md), one suite for both stores, and the Neo4j projection.

The SQL store is the ``Step``/``StepDependency`` tables; the Neo4j store is the real Neo4j from
``scripts/services`` (``NEO4J_URL``/``NEO4J_USER``/``NEO4J_PASSWORD`` from ``scripts/services env``).
"""

import contextlib
import os
import uuid
from unittest import mock

import pytest

from tests.conftest import example_files
from tests.integration.conftest import wait_for
from workers import scheduler
from workers.batch import get_batch_system
from workflows.graph import get_graph_store
from workflows.graph.outbox import drain
from workflows.models import GraphOutbox, Step, StepDependency, Workflow
from workflows.services import workflow_submit

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

UNREACHABLE = "bolt://127.0.0.1:1"


@pytest.fixture
def neo4j_settings(settings):
    url = os.environ.get("NEO4J_URL", "")
    if not url.startswith("bolt://"):
        pytest.fail('the graph store tests need the real Neo4j: eval "$(scripts/services env)" (NEO4J_URL)')
    settings.APIARY_NEO4J_URL = url
    settings.APIARY_NEO4J_USER = os.environ.get("NEO4J_USER", "neo4j")
    settings.APIARY_NEO4J_PASSWORD = os.environ.get("NEO4J_PASSWORD", "")
    return settings


@pytest.fixture(params=["sql", "neo4j"])
def store(request, settings):
    if request.param == "neo4j":
        request.getfixturevalue("neo4j_settings")
    settings.APIARY_GRAPH_STORE = request.param
    return get_graph_store()


@pytest.fixture
def diamond(user):
    """a → b, a → c, (b, c) → d, stored the way steps_create stores a workflow's steps."""
    workflow = Workflow.objects.create(owner=user, name="diamond", main_document="none.cwl")
    steps = {
        n: Step.objects.create(workflow=workflow, name=n, kind=Step.Kind.TOOL, tool_ref="x", tool_class="X")
        for n in "abcd"
    }
    for up, down in [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]:
        StepDependency.objects.create(upstream=steps[up], downstream=steps[down])
    yield workflow
    with contextlib.suppress(Exception):  # a test may have pointed the store at nothing
        get_graph_store().delete_workflow(workflow.id)


def test_store_export_has_every_step_and_edge(store, diamond):
    store.load_workflow(diamond.id)
    data = store.export(diamond.id)
    assert data["workflow"] == {"id": str(diamond.id), "name": "diamond", "state": "SUBMITTED"}
    assert data["nodes"] == [{"id": n, "kind": "TOOL", "state": "WAITING"} for n in "abcd"]
    assert data["edges"] == [
        {"source": "a", "target": "b"},
        {"source": "a", "target": "c"},
        {"source": "b", "target": "d"},
        {"source": "c", "target": "d"},
    ]


def test_store_load_twice_changes_nothing(store, diamond):
    store.load_workflow(diamond.id)
    first = store.export(diamond.id)
    store.load_workflow(diamond.id)
    assert store.export(diamond.id) == first


def test_store_ready_steps_follow_states(store, diamond):
    store.load_workflow(diamond.id)
    assert store.ready_steps(diamond.id) == ["a"]
    assert store.set_step_state(diamond.id, "a", "COMPLETED")
    assert store.ready_steps(diamond.id) == ["b", "c"]
    store.set_step_state(diamond.id, "b", "COMPLETED")
    assert store.ready_steps(diamond.id) == ["c"]  # d still waits for c
    store.set_step_state(diamond.id, "c", "FAILED")
    assert store.ready_steps(diamond.id) == []
    store.set_step_state(diamond.id, "c", "COMPLETED")
    assert store.ready_steps(diamond.id) == ["d"]
    assert {n["id"]: n["state"] for n in store.export(diamond.id)["nodes"]}["c"] == "COMPLETED"


def test_store_dependents(store, diamond):
    store.load_workflow(diamond.id)
    assert store.dependents(diamond.id, "a") == ["b", "c"]
    assert store.dependents(diamond.id, "c") == ["d"]
    assert store.dependents(diamond.id, "d") == []


def test_store_unknown_step_or_workflow(store, diamond):
    store.load_workflow(diamond.id)
    assert store.set_step_state(diamond.id, "nope", "COMPLETED") is False
    assert store.export(uuid.uuid4()) is None
    assert store.ready_steps(uuid.uuid4()) == []


def test_store_ping(store):
    assert store.ping().startswith(store.name)


# --- the Neo4j projection of real runs ---------------------------------------------------------


@pytest.fixture
def no_enqueue():
    with (
        mock.patch("workers.tasks.advance.delay") as advance,
        mock.patch("workers.tasks.finalize_run.delay"),
        mock.patch("workers.tasks.cancel_jobs.delay"),
        mock.patch("workers.tasks.project_graph.delay") as project,
    ):
        yield {"advance": advance, "project": project}


def _drive(workflow_id, batch):
    scheduler.advance(workflow_id)
    scheduler.reconcile(batch)
    workflow = Workflow.objects.get(pk=workflow_id)
    return workflow if workflow.state != "RUNNING" else None


def _run_grep_wc(user):
    workflow = workflow_submit(
        owner=user, files=example_files("grep-wc"), main="workflow.cwl", inputs="inputs.yml"
    )
    batch = get_batch_system()
    return wait_for(lambda: _drive(workflow.id, batch), timeout=120, interval=1, what="grep-wc run")


@pytest.mark.slurm
def test_a_run_is_projected_into_neo4j_in_the_bee_model(user, neo4j_settings, no_enqueue):
    neo4j_settings.APIARY_GRAPH_STORE = "neo4j"
    done = _run_grep_wc(user)
    assert done.state == "COMPLETED"
    assert no_enqueue["project"].called  # enqueued on commit
    assert GraphOutbox.objects.filter(workflow_id=done.id, processed_at__isnull=True).exists()
    summary = drain()
    assert summary["error"] == "" and summary["workflows"] >= 1
    assert not GraphOutbox.objects.filter(workflow_id=done.id, processed_at__isnull=True).exists()

    store = get_graph_store()
    try:
        controls = store.control_nodes(done.id)
        assert controls["bee_init"]["tasks"] == ["grep"]  # grep depends on bee_init
        assert controls["bee_exit"]["tasks"] == ["wc"]  # bee_exit depends on wc
        assert controls["bee_exit"]["state"] == "COMPLETED"
        grep, wc = store.task(done.id, "grep"), store.task(done.id, "wc")
        assert grep["state"] == wc["state"] == "COMPLETED"
        assert grep["command"].startswith("grep") and wc["command"].startswith("wc")
        assert '"pattern"' in grep["inputs"] and '"outfile"' in grep["outputs"]
        assert "lorem.txt" in grep["input_values"]
        meta = store.workflow_node(done.id)
        assert meta["state"] == "COMPLETED" and meta["cwl_version"] == "v1.2"
        assert "requirements" in meta and "hints" in meta
        assert store.dependents(done.id, "grep") == ["wc"]
        assert drain()["rows"] == 0  # nothing left; projecting again is a no-op
    finally:
        store.delete_workflow(done.id)


@pytest.mark.slurm
def test_scheduling_completes_with_neo4j_down_and_the_outbox_catches_up(user, neo4j_settings, no_enqueue):
    neo4j_settings.APIARY_GRAPH_STORE = "neo4j"
    good_url = neo4j_settings.APIARY_NEO4J_URL
    neo4j_settings.APIARY_NEO4J_URL = UNREACHABLE
    done = _run_grep_wc(user)
    assert done.state == "COMPLETED"  # the scheduler never waited on Neo4j
    summary = drain()
    assert summary["error"] and summary["rows"] == 0
    pending = GraphOutbox.objects.filter(workflow_id=done.id, processed_at__isnull=True).count()
    assert pending >= 5  # submitted, steps created, every step transition

    neo4j_settings.APIARY_NEO4J_URL = good_url
    summary = drain()
    assert summary["error"] == "" and summary["rows"] >= pending
    store = get_graph_store()
    try:
        assert {n["id"]: n["state"] for n in store.export(done.id)["nodes"]} == {
            "grep": "COMPLETED",
            "wc": "COMPLETED",
        }
    finally:
        store.delete_workflow(done.id)


# --- the API and /healthz read the configured store ------------------------------------------------


def test_dag_api_serves_json_and_graphml_from_the_store(store, diamond, api):
    store.load_workflow(diamond.id)
    body = api.get(f"/api/v1/workflows/{diamond.id}/dag").json()
    assert body["store"] == store.name
    assert [n["id"] for n in body["nodes"]] == ["a", "b", "c", "d"] and len(body["edges"]) == 4
    response = api.get(f"/api/v1/workflows/{diamond.id}/dag?format=graphml")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/graphml+xml")
    assert b'<edge id="e0" source="a" target="b"/>' in response.content


def test_dag_api_hides_other_users_workflows(settings, other_user, api):
    workflow = Workflow.objects.create(owner=other_user, name="theirs", main_document="x.cwl")
    assert api.get(f"/api/v1/workflows/{workflow.id}/dag").status_code == 404


def test_dag_api_says_409_while_the_projection_is_pending(neo4j_settings, diamond, api):
    neo4j_settings.APIARY_GRAPH_STORE = "neo4j"
    response = api.get(f"/api/v1/workflows/{diamond.id}/dag")
    assert response.status_code == 409 and "not in the neo4j store yet" in response.json()["message"]
    neo4j_settings.APIARY_NEO4J_URL = UNREACHABLE
    response = api.get(f"/api/v1/workflows/{diamond.id}/dag")
    assert response.status_code == 409 and "unreachable" in response.json()["message"]


def test_healthz_reports_the_neo4j_store_by_a_bolt_round_trip(neo4j_settings, client):
    neo4j_settings.APIARY_GRAPH_STORE = "neo4j"
    component = client.get("/healthz").json()["components"]["graph_store"]
    assert component["status"] == "ok" and component["detail"].startswith("neo4j Neo4j/5.26")
    neo4j_settings.APIARY_NEO4J_URL = UNREACHABLE
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["components"]["graph_store"]["status"] == "down"


@pytest.mark.slurm
def test_a_real_worker_projects_a_submitted_run_into_neo4j(api, neo4j_settings, private_worker):
    """End to end: API submission, a real Celery worker and Slurm; project_graph runs on commit."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    neo4j_settings.APIARY_GRAPH_STORE = "neo4j"
    private_worker.env.update(
        APIARY_GRAPH_STORE="neo4j",
        APIARY_NEO4J_URL=neo4j_settings.APIARY_NEO4J_URL,
        APIARY_NEO4J_USER=neo4j_settings.APIARY_NEO4J_USER,
        APIARY_NEO4J_PASSWORD=neo4j_settings.APIARY_NEO4J_PASSWORD,
    )
    private_worker.start()
    files = [SimpleUploadedFile(n, d) for n, d in example_files("grep-wc").items()]
    response = api.post(
        "/api/v1/workflows/",
        {"files": files, "main": "workflow.cwl", "inputs": "inputs.yml"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    workflow_id = response.json()["id"]
    store = get_graph_store()

    def projected_done():
        data = store.export(workflow_id)
        states = {n["id"]: n["state"] for n in data["nodes"]} if data else {}
        return (
            data
            if data and data["workflow"]["state"] == "COMPLETED" and set(states.values()) == {"COMPLETED"}
            else None
        )

    try:
        data = wait_for(projected_done, timeout=180, interval=1, what="the Neo4j projection to complete")
        assert [n["id"] for n in data["nodes"]] == ["grep", "wc"]
        wait_for(
            lambda: (
                not GraphOutbox.objects.filter(workflow_id=workflow_id, processed_at__isnull=True).exists()
            ),
            timeout=60,
            what="the outbox to drain",
        )
        dag = api.get(f"/api/v1/workflows/{workflow_id}/dag?format=graphml")
        assert dag.status_code == 200 and b'source="grep" target="wc"' in dag.content
    finally:
        store.delete_workflow(workflow_id)
