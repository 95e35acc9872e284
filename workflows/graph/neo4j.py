"""The Neo4j graph store: a projection of each workflow in the BEE model.

Per workflow: a ``:Workflow`` metadata node (name, state, CWL version, requirements and hints as
JSON text), ``:Control`` nodes ``bee_init`` and ``bee_exit``, one ``:Task`` node per step (kind,
state, inputs, outputs, command as text, the step's input values and outputs as JSON text) and
``DEPENDS_ON`` edges from a task to each task it waits for; a task with no upstream depends on
``bee_init``, and ``bee_exit`` depends on every task nothing depends on. Every write is a
``MERGE``, so projecting the same workflow twice changes nothing. Written only from the outbox
(:mod:`workflows.graph.outbox`), after commit; scheduling never reads it.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings

from workflows.graph.base import READY_FROM, READY_WHEN, GraphStore

log = logging.getLogger(__name__)

_drivers: dict[tuple, object] = {}


def driver():
    """One driver per (URL, user, password), created on first use."""
    from neo4j import GraphDatabase

    key = (settings.APIARY_NEO4J_URL, settings.APIARY_NEO4J_USER, settings.APIARY_NEO4J_PASSWORD)
    if key not in _drivers:
        _drivers[key] = GraphDatabase.driver(
            key[0], auth=(key[1], key[2]), connection_timeout=3, max_transaction_retry_time=1
        )
    return _drivers[key]


SCHEMA = [
    "CREATE INDEX apiary_task IF NOT EXISTS FOR (t:Task) ON (t.workflow_id, t.name)",
    "CREATE INDEX apiary_control IF NOT EXISTS FOR (c:Control) ON (c.workflow_id, c.name)",
    "CREATE INDEX apiary_workflow IF NOT EXISTS FOR (w:Workflow) ON (w.id)",
]

PROJECT = """
MERGE (w:Workflow {id: $wid})
SET w += $workflow
MERGE (init:Control {workflow_id: $wid, name: 'bee_init'})
SET init.state = $init_state
MERGE (exit:Control {workflow_id: $wid, name: 'bee_exit'})
SET exit.state = $exit_state
MERGE (init)-[:BELONGS_TO]->(w)
MERGE (exit)-[:BELONGS_TO]->(w)
WITH w, init, exit
UNWIND $tasks AS task
MERGE (t:Task {workflow_id: $wid, name: task.name})
SET t += task
MERGE (t)-[:BELONGS_TO]->(w)
WITH DISTINCT init, exit
UNWIND $edges AS edge
MATCH (down:Task {workflow_id: $wid, name: edge.target}), (up:Task {workflow_id: $wid, name: edge.source})
MERGE (down)-[:DEPENDS_ON]->(up)
"""

CONTROL_EDGES = """
MATCH (init:Control {workflow_id: $wid, name: 'bee_init'}),
      (exit:Control {workflow_id: $wid, name: 'bee_exit'})
CALL {
  WITH init
  MATCH (t:Task {workflow_id: $wid}) WHERE NOT (t)-[:DEPENDS_ON]->(:Task)
  MERGE (t)-[:DEPENDS_ON]->(init)
}
CALL {
  WITH exit
  MATCH (t:Task {workflow_id: $wid}) WHERE NOT (:Task)-[:DEPENDS_ON]->(t)
  MERGE (exit)-[:DEPENDS_ON]->(t)
}
// a task that gained a dependent since the last projection is no longer a leaf
WITH exit
MATCH (exit)-[r:DEPENDS_ON]->(t:Task) WHERE (:Task)-[:DEPENDS_ON]->(t)
DELETE r
"""


class Neo4jGraphStore(GraphStore):
    name = "neo4j"
    _schema_done = False

    def _run(self, query: str, **params) -> list:
        records, _, _ = driver().execute_query(query, params, database_="neo4j")
        return records

    def _schema(self) -> None:
        if not Neo4jGraphStore._schema_done:
            for statement in SCHEMA:
                self._run(statement)
            Neo4jGraphStore._schema_done = True

    def load_workflow(self, workflow_id) -> None:
        from workflows.graph.snapshot import workflow_snapshot

        snapshot = workflow_snapshot(workflow_id)
        if snapshot is None:
            self.delete_workflow(workflow_id)
            return
        self._schema()
        wid = str(workflow_id)
        state = snapshot["workflow"]["state"]
        self._run(
            PROJECT,
            wid=wid,
            workflow=snapshot["workflow"],
            init_state="COMPLETED" if state != "SUBMITTED" else "WAITING",
            exit_state="COMPLETED" if snapshot["workflow"].get("ended") else "WAITING",
            tasks=snapshot["tasks"],
            edges=snapshot["edges"],
        )
        self._run(CONTROL_EDGES, wid=wid)

    def set_step_state(self, workflow_id, step: str, state: str) -> bool:
        records = self._run(
            "MATCH (t:Task {workflow_id: $wid, name: $name}) SET t.state = $state RETURN count(t) AS n",
            wid=str(workflow_id),
            name=step,
            state=state,
        )
        return bool(records and records[0]["n"])

    def ready_steps(self, workflow_id) -> list[str]:
        records = self._run(
            "MATCH (t:Task {workflow_id: $wid, state: $waiting}) "
            "WHERE NOT EXISTS { MATCH (t)-[:DEPENDS_ON]->(u:Task) WHERE u.state <> $done } "
            "RETURN t.name AS name ORDER BY name",
            wid=str(workflow_id),
            waiting=str(READY_FROM),
            done=str(READY_WHEN),
        )
        return [r["name"] for r in records]

    def dependents(self, workflow_id, step: str) -> list[str]:
        records = self._run(
            "MATCH (d:Task)-[:DEPENDS_ON]->(t:Task {workflow_id: $wid, name: $name}) "
            "RETURN d.name AS name ORDER BY name",
            wid=str(workflow_id),
            name=step,
        )
        return [r["name"] for r in records]

    def export(self, workflow_id) -> dict | None:
        wid = str(workflow_id)
        found = self._run("MATCH (w:Workflow {id: $wid}) RETURN w.name AS name, w.state AS state", wid=wid)
        if not found:
            return None
        nodes = self._run(
            "MATCH (t:Task {workflow_id: $wid}) RETURN t.name AS id, t.kind AS kind, t.state AS state "
            "ORDER BY id",
            wid=wid,
        )
        edges = self._run(
            "MATCH (d:Task {workflow_id: $wid})-[:DEPENDS_ON]->(u:Task) "
            "RETURN u.name AS source, d.name AS target ORDER BY source, target",
            wid=wid,
        )
        return {
            "workflow": {"id": wid, "name": found[0]["name"], "state": found[0]["state"]},
            "nodes": [dict(r) for r in nodes],
            "edges": [dict(r) for r in edges],
        }

    def control_nodes(self, workflow_id) -> dict:
        """bee_init / bee_exit with the tasks each is linked to (for tests and inspection)."""
        records = self._run(
            "MATCH (c:Control {workflow_id: $wid}) "
            "OPTIONAL MATCH (c)-[:DEPENDS_ON]-(t:Task) "
            "RETURN c.name AS name, c.state AS state, collect(t.name) AS tasks",
            wid=str(workflow_id),
        )
        return {r["name"]: {"state": r["state"], "tasks": sorted(r["tasks"])} for r in records}

    def task(self, workflow_id, step: str) -> dict | None:
        records = self._run(
            "MATCH (t:Task {workflow_id: $wid, name: $name}) RETURN properties(t) AS p",
            wid=str(workflow_id),
            name=step,
        )
        return dict(records[0]["p"]) if records else None

    def workflow_node(self, workflow_id) -> dict | None:
        records = self._run("MATCH (w:Workflow {id: $wid}) RETURN properties(w) AS p", wid=str(workflow_id))
        return dict(records[0]["p"]) if records else None

    def delete_workflow(self, workflow_id) -> None:
        wid = str(workflow_id)
        self._run("MATCH (n) WHERE (n:Task OR n:Control) AND n.workflow_id = $wid DETACH DELETE n", wid=wid)
        self._run("MATCH (w:Workflow {id: $wid}) DETACH DELETE w", wid=wid)

    def ping(self) -> str:
        records = self._run("RETURN 1 AS one")
        assert records[0]["one"] == 1
        info = driver().get_server_info()
        return f"neo4j {info.agent} at {settings.APIARY_NEO4J_URL}"


def dumps(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)
