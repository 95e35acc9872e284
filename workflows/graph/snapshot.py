"""A workflow's graph as read from PostgreSQL (the source of truth), for projections.

Task details come from the submitted CWL (cached by ``workflows.cwl``): each tool's inputs and
outputs (id → type), its command (``baseCommand`` and ``arguments`` as text), and the workflow's
requirements and hints. Neo4j properties are scalars or lists, so structures are JSON text.
"""

from __future__ import annotations

import json
import logging

from workflows.models import Step, StepDependency, Workflow
from workflows.states import WORKFLOW_ENDED

log = logging.getLogger(__name__)


def _dumps(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _short(ident: str) -> str:
    return ident.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


def _ports(items) -> str:
    return _dumps({_short(p.get("id", "")): p.get("type") for p in items or []})


def _argument(arg) -> str:
    if isinstance(arg, dict):
        return str(arg.get("valueFrom", _dumps(arg)))
    return str(arg)


def command_text(tool: dict) -> str:
    base = tool.get("baseCommand") or []
    base = [base] if isinstance(base, str) else list(base)
    return " ".join([*map(str, base), *map(_argument, tool.get("arguments") or [])])


def _root_process(workflow: Workflow):
    try:
        from workers.scheduler import load_workflow_process

        return load_workflow_process(workflow)
    except Exception as exc:  # a projection without CWL details is still a projection
        log.warning("graph snapshot of %s: CWL not loadable: %s", workflow.pk, exc)
        return None


def _tool_of(root, step: Step) -> dict:
    if root is None:
        return {}
    from workflows import cwl

    try:
        return dict(cwl.node_process(root, list(step.tool_path)).tool)
    except Exception:
        return {}


def workflow_snapshot(workflow_id) -> dict | None:
    workflow = Workflow.objects.filter(pk=workflow_id).first()
    if workflow is None:
        return None
    root = _root_process(workflow)
    top = dict(root.tool) if root is not None else {}
    steps = list(Step.objects.filter(workflow=workflow).order_by("name"))
    tasks = []
    for step in steps:
        tool = _tool_of(root, step)
        tasks.append(
            {
                "name": step.name,
                "kind": step.kind,
                "state": step.state,
                "tool_class": step.tool_class,
                "parent": step.parent.name if step.parent_id else "",
                "inputs": _ports(tool.get("inputs")),
                "outputs": _ports(tool.get("outputs")),
                "command": command_text(tool) if step.kind == Step.Kind.TOOL else "",
                "requirements": _dumps(tool.get("requirements") or []),
                "hints": _dumps(tool.get("hints") or []),
                "input_values": _dumps(step.job_order) if step.job_order is not None else "",
                "output_values": _dumps(step.outputs) if step.outputs is not None else "",
                "attempts": step.attempts,
            }
        )
    edges = StepDependency.objects.filter(downstream__workflow=workflow)
    return {
        "workflow": {
            "name": workflow.name,
            "state": workflow.state,
            "ended": workflow.state in WORKFLOW_ENDED or bool(workflow.outcome),
            "cwl_version": workflow.cwl_version,
            "process_class": workflow.process_class,
            "main_document": workflow.main_document,
            "requirements": _dumps(top.get("requirements") or []),
            "hints": _dumps(top.get("hints") or []),
            "inputs": _ports(top.get("inputs")),
            "outputs": _ports(top.get("outputs")),
        },
        "tasks": tasks,
        "edges": [
            {"source": u, "target": d}
            for u, d in edges.values_list("upstream__name", "downstream__name").order_by("pk")
        ],
    }
