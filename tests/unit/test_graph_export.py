"""GraphML / dot export of a workflow graph, and `apiary dag` against a mocked API."""

import json
import shutil
import xml.etree.ElementTree as ET

import httpx
import pytest
from typer.testing import CliRunner

from portal import cli
from tests.unit.test_cli import WF, Api
from workflows.graph.formats import to_dot, to_graphml

pytestmark = pytest.mark.unit

NS = {"g": "http://graphml.graphdrawing.org/xmlns"}
DATA = {
    "workflow": {"id": WF, "name": 'a "quoted" <name> & more', "state": "RUNNING"},
    "nodes": [
        {"id": "grep", "kind": "TOOL", "state": "COMPLETED"},
        {"id": "inner/wc[0]", "kind": "TOOL", "state": "WAITING"},
    ],
    "edges": [{"source": "grep", "target": "inner/wc[0]"}],
    "store": "sql",
}


def test_graphml_export_is_valid_and_complete():
    root = ET.fromstring(to_graphml(DATA).encode())
    graph = root.find("g:graph", NS)
    assert graph.get("id") == WF and graph.get("edgedefault") == "directed"
    nodes = {
        n.get("id"): {d.get("key"): d.text for d in n.findall("g:data", NS)}
        for n in graph.findall("g:node", NS)
    }
    assert nodes == {
        "grep": {"kind": "TOOL", "state": "COMPLETED"},
        "inner/wc[0]": {"kind": "TOOL", "state": "WAITING"},
    }
    edges = [(e.get("source"), e.get("target")) for e in graph.findall("g:edge", NS)]
    assert edges == [("grep", "inner/wc[0]")]
    names = {d.get("key"): d.text for d in graph.findall("g:data", NS)}
    assert names == {"name": 'a "quoted" <name> & more', "wstate": "RUNNING"}


def test_graphml_export_declares_its_keys():
    root = ET.fromstring(to_graphml(DATA).encode())
    keys = {(k.get("id"), k.get("for"), k.get("attr.name")) for k in root.findall("g:key", NS)}
    assert ("state", "node", "state") in keys and ("kind", "node", "kind") in keys


def test_graphml_export_of_an_empty_graph():
    data = {"workflow": {"id": WF, "name": "", "state": "SUBMITTED"}, "nodes": [], "edges": []}
    graph = ET.fromstring(to_graphml(data).encode()).find("g:graph", NS)
    assert graph.findall("g:node", NS) == [] and graph.findall("g:edge", NS) == []


def test_dot_export_names_every_node_and_edge():
    text = to_dot(DATA)
    assert text.startswith(f'digraph "{WF}"')
    assert '"grep" -> "inner/wc[0]";' in text
    assert 'label="grep\\nCOMPLETED"' in text and "fillcolor=palegreen" in text


# --- apiary dag ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("APIARY_CONFIG", str(tmp_path / "cfg" / "config.json"))
    monkeypatch.delenv("APIARY_SERVER", raising=False)
    monkeypatch.delenv("APIARY_TOKEN", raising=False)


def _serve(monkeypatch, response):
    api = Api({f"GET /api/v1/workflows/{WF}/dag": response})
    monkeypatch.setattr(cli, "_transport", httpx.MockTransport(api))
    return api


def test_dag_prints_graphml_by_default(monkeypatch):
    api = _serve(monkeypatch, httpx.Response(200, json=DATA))
    result = CliRunner().invoke(cli.app, ["dag", WF])
    assert result.exit_code == 0, result.output
    assert result.stdout == to_graphml(DATA)
    assert api.requests[0].url.params["format"] == "json"


def test_dag_writes_json_to_a_file(monkeypatch, tmp_path):
    _serve(monkeypatch, httpx.Response(200, json=DATA))
    target = tmp_path / "g.json"
    result = CliRunner().invoke(cli.app, ["dag", WF, "--format", "json", "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text()) == DATA


def test_dag_png_without_dot_exits_1(monkeypatch, tmp_path):
    _serve(monkeypatch, httpx.Response(200, json=DATA))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = CliRunner().invoke(cli.app, ["dag", WF, "--format", "png", "-o", str(tmp_path / "g.png")])
    assert result.exit_code == 1
    assert "dot" in result.stderr and not (tmp_path / "g.png").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is installed by scripts/services")
def test_dag_png_with_graphviz(monkeypatch, tmp_path):
    _serve(monkeypatch, httpx.Response(200, json=DATA))
    target = tmp_path / "g.png"
    result = CliRunner().invoke(cli.app, ["dag", WF, "--format", "png", "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dag_not_projected_yet_exits_4(monkeypatch):
    _serve(monkeypatch, httpx.Response(409, json={"message": "not in the neo4j store yet", "extra": {}}))
    result = CliRunner().invoke(cli.app, ["dag", WF])
    assert result.exit_code == 4 and "not in the neo4j store yet" in result.stderr
