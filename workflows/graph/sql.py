"""The embedded graph store: the ``Step``/``StepDependency`` tables themselves."""

from __future__ import annotations

from workflows.graph.base import READY_FROM, READY_WHEN, GraphStore
from workflows.models import Step, StepDependency, Workflow


class SqlGraphStore(GraphStore):
    name = "sql"

    def load_workflow(self, workflow_id) -> None:
        """Nothing to do: the tables are the graph."""

    def set_step_state(self, workflow_id, step: str, state: str) -> bool:
        # The graph view only; the scheduler changes states through services.step_transition.
        return bool(Step.objects.filter(workflow_id=workflow_id, name=step).update(state=state))

    def ready_steps(self, workflow_id) -> list[str]:
        blocked = StepDependency.objects.filter(downstream__workflow_id=workflow_id).exclude(
            upstream__state=READY_WHEN
        )
        return list(
            Step.objects.filter(workflow_id=workflow_id, state=READY_FROM)
            .exclude(pk__in=blocked.values("downstream_id"))
            .order_by("name")
            .values_list("name", flat=True)
        )

    def dependents(self, workflow_id, step: str) -> list[str]:
        return sorted(
            StepDependency.objects.filter(upstream__workflow_id=workflow_id, upstream__name=step).values_list(
                "downstream__name", flat=True
            )
        )

    def export(self, workflow_id) -> dict | None:
        workflow = Workflow.objects.filter(pk=workflow_id).values("id", "name", "state").first()
        if workflow is None:
            return None
        steps = Step.objects.filter(workflow_id=workflow_id).order_by("name")
        edges = StepDependency.objects.filter(downstream__workflow_id=workflow_id).values_list(
            "upstream__name", "downstream__name"
        )
        return {
            "workflow": {"id": str(workflow["id"]), "name": workflow["name"], "state": workflow["state"]},
            "nodes": [{"id": s.name, "kind": s.kind, "state": s.state} for s in steps],
            "edges": sorted(
                ({"source": u, "target": d} for u, d in edges),
                key=lambda e: (e["source"], e["target"]),
            ),
        }

    def ping(self) -> str:
        Step.objects.exists()
        return "sql (the Step and StepDependency tables)"
