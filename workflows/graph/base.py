"""The graph-store contract (DESIGN.md): a workflow's DAG as a graph, in SQL or in Neo4j.

PostgreSQL (``Step``/``StepDependency``) is the source of truth; a store either *is* those tables
(:mod:`workflows.graph.sql`) or a projection of them (:mod:`workflows.graph.neo4j`, written after
commit from the outbox). Steps are named as in ``Step.name``; the export is plain data::

    {"workflow": {"id", "name", "state"},
     "nodes": [{"id": step name, "kind", "state"}, …],       # sorted by id
     "edges": [{"source": upstream, "target": downstream}, …]}  # sorted
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from workflows.states import StepState


class GraphStore(ABC):
    name: str

    @abstractmethod
    def load_workflow(self, workflow_id) -> None:
        """Bring the store's copy of the workflow's DAG (steps, edges, states) up to date."""

    @abstractmethod
    def set_step_state(self, workflow_id, step: str, state: str) -> bool:
        """Record ``state`` for the step; False if the store does not know the step."""

    @abstractmethod
    def ready_steps(self, workflow_id) -> list[str]:
        """WAITING steps whose upstream steps are all COMPLETED, sorted."""

    @abstractmethod
    def dependents(self, workflow_id, step: str) -> list[str]:
        """Steps that depend directly on ``step``, sorted."""

    @abstractmethod
    def export(self, workflow_id) -> dict | None:
        """Nodes and edges as plain data (see the module docstring); None if unknown."""

    @abstractmethod
    def ping(self) -> str:
        """A round-trip to the store; returns a description, raises if it is unreachable."""

    def delete_workflow(self, workflow_id) -> None:  # noqa: B027 - optional for stores
        """Forget the workflow (a projection only; the SQL store deletes nothing)."""


READY_FROM = StepState.WAITING
READY_WHEN = StepState.COMPLETED
