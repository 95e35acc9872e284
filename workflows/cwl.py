"""CWL through the CWL libraries: loading, validation, the DAG of a workflow, step inputs.

Semantics come from cwltool (DESIGN.md principle 4); this module only adapts its objects to
Apiary's database model. Workflow-level state (which step is ready, its resolved inputs) lives in
the database; cwltool's helpers compute the values.

Supported now: a ``Workflow`` whose steps run ``CommandLineTool`` or ``ExpressionTool``
processes, with ``in`` sources, defaults, ``linkMerge``, ``pickValue``, ``valueFrom`` and
``when``; or a single ``CommandLineTool``/``ExpressionTool``. Steps that ``scatter`` or run a
nested ``Workflow`` are refused at submission with a clear message until the scheduler handles
them (see README, "CWL support").
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cwltool.context import LoadingContext, RuntimeContext
from cwltool.errors import WorkflowException
from cwltool.load_tool import load_tool
from cwltool.process import Process, shortname
from cwltool.utils import aslist
from cwltool.workflow import Workflow as CwlWorkflow
from cwltool.workflow import default_make_tool
from cwltool.workflow_job import WorkflowStateItem, object_from_state
from ruamel.yaml import YAML
from schema_salad.exceptions import ValidationException

from portal.errors import ApplicationError

log = logging.getLogger(__name__)

RUNNABLE_CLASSES = {"CommandLineTool", "ExpressionTool"}
SUPPORTED_TOP = RUNNABLE_CLASSES | {"Workflow"}
SINGLE_TOOL_STEP = "main"
ORIGINAL_VERSION = "http://commonwl.org/cwltool#original_cwlVersion"


class CwlError(ApplicationError):
    """Invalid CWL or inputs; the message is the validator's, with file and line."""


def loading_context() -> LoadingContext:
    return LoadingContext(
        {"construct_tool_object": default_make_tool, "do_update": True, "relax_path_checks": True}
    )


@functools.lru_cache(maxsize=64)
def _load_cached(uri: str, mtime_ns: int) -> Process:
    return load_tool(uri, loading_context())


def load_process(path: Path) -> Process:
    """Load and validate a CWL document (cached per path and modification time)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise CwlError(f"CWL document {path.name} not found.")
    try:
        return _load_cached(path.as_uri(), path.stat().st_mtime_ns)
    except (ValidationException, WorkflowException) as exc:
        raise CwlError(f"Invalid CWL: {_clean(exc)}") from None
    except Exception as exc:  # schema-salad raises a variety of errors on malformed YAML
        raise CwlError(f"Could not load {path.name}: {_clean(exc)}") from None


def _clean(exc: Exception) -> str:
    text = str(exc).strip()
    return text.replace("file://", "")


def parse_job_order(text: str, name: str = "inputs") -> dict[str, Any]:
    """Parse an inputs file (YAML or JSON); an empty file means no inputs."""
    try:
        data = YAML(typ="safe", pure=True).load(io.StringIO(text))
    except Exception as exc:
        raise CwlError(f"{name} is not valid YAML or JSON: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CwlError(f"{name} must be a mapping of input names to values, not {type(data).__name__}.")
    return data


def resolve_locations(value: Any, base: Path) -> Any:
    """Make every File/Directory ``path``/``location`` an absolute file:// URI under ``base``.

    Relative paths are resolved against the folder the inputs file was uploaded with; a path
    that leaves that folder is refused (a user may not reference other users' files).
    """
    if isinstance(value, list):
        return [resolve_locations(v, base) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: resolve_locations(v, base) for k, v in value.items()}
    if out.get("class") in ("File", "Directory"):
        ref = out.pop("path", None) or out.get("location")
        if ref is not None:
            if "://" in ref and not ref.startswith("file://"):
                raise CwlError(f"Input location {ref!r}: only local files can be used.")
            if ref.startswith("file://"):
                ref = ref[len("file://") :]
            target = (base / ref).resolve()
            if not target.is_relative_to(base.resolve()):
                raise CwlError(
                    f"Input {ref!r} points outside the submitted files; upload it with the workflow."
                )
            if not target.exists():
                raise CwlError(f"Input {ref!r} was not uploaded with the workflow.")
            out["location"] = target.as_uri()
    return out


@dataclass
class StepSpec:
    name: str
    tool_ref: str
    tool_class: str
    upstream: list[str] = field(default_factory=list)


@dataclass
class ProcessSpec:
    process_class: str
    cwl_version: str
    steps: list[StepSpec]


def describe(process: Process) -> ProcessSpec:
    """The DAG of a loaded process: its steps and their upstream steps."""
    cls = process.tool["class"]
    version = str(process.metadata.get(ORIGINAL_VERSION) or process.metadata.get("cwlVersion", ""))
    if cls in RUNNABLE_CLASSES:
        return ProcessSpec(cls, version, [StepSpec(SINGLE_TOOL_STEP, process.tool["id"], cls)])
    if cls != "Workflow":
        raise CwlError(f"Process class {cls} cannot be run; submit a Workflow or a CommandLineTool.")
    assert isinstance(process, CwlWorkflow)
    steps: list[StepSpec] = []
    names = {s.id: shortname(s.id) for s in process.steps}
    for step in process.steps:
        name = names[step.id]
        inner = step.embedded_tool.tool["class"]
        if inner not in RUNNABLE_CLASSES:
            raise CwlError(
                f"Step {name!r} runs a nested {inner}; nested workflows are not supported yet. "
                "Inline its steps into the parent workflow."
            )
        if "scatter" in step.tool:
            raise CwlError(f"Step {name!r} uses scatter, which is not supported yet.")
        upstream = set()
        for inp in step.tool["inputs"]:
            for src in aslist(inp.get("source") or []):
                owner = src.rsplit("/", 1)[0]
                if owner in names:
                    upstream.add(names[owner])
        steps.append(StepSpec(name, step.embedded_tool.tool["id"], inner, sorted(upstream)))
    return ProcessSpec(cls, version, _topological(steps))


def _topological(steps: list[StepSpec]) -> list[StepSpec]:
    """Steps ordered so that each comes after its upstream steps (stable by name)."""
    from graphlib import CycleError, TopologicalSorter

    by_name = {s.name: s for s in steps}
    sorter = TopologicalSorter({s.name: s.upstream for s in sorted(steps, key=lambda s: s.name)})
    try:
        return [by_name[name] for name in sorter.static_order()]
    except CycleError as exc:
        raise CwlError(f"The workflow's steps depend on each other in a cycle: {exc.args[1]}") from None


def validate_job_order(process: Process, job_order: dict[str, Any]) -> None:
    """Check inputs against the process's input schema (cwltool's own validation)."""
    runtime = RuntimeContext({"outdir": "/nonexistent", "tmpdir": "/nonexistent"})
    try:
        process._init_job(dict(job_order), runtime)
    except (ValidationException, WorkflowException) as exc:
        raise CwlError(f"Invalid inputs: {_clean(exc)}") from None


def _workflow_step(process: CwlWorkflow, name: str):
    for step in process.steps:
        if shortname(step.id) == name:
            return step
    raise CwlError(f"Workflow has no step {name!r}.")


def step_tool(process: Process, name: str) -> Process:
    if name == SINGLE_TOOL_STEP and process.tool["class"] in RUNNABLE_CLASSES:
        return process
    return _workflow_step(process, name).embedded_tool


def _state(process: CwlWorkflow, job_order: dict, step_outputs: dict[str, dict]) -> dict:
    """cwltool's workflow state: workflow inputs and finished steps' outputs by parameter id."""
    state: dict[str, WorkflowStateItem | None] = {}
    for inp in process.tool["inputs"]:
        key = shortname(inp["id"])
        if key in job_order:
            state[inp["id"]] = WorkflowStateItem(inp, job_order[key], "success")
        elif "default" in inp:
            state[inp["id"]] = WorkflowStateItem(inp, inp["default"], "success")
        else:
            state[inp["id"]] = WorkflowStateItem(inp, None, "success")
    for step in process.steps:
        outs = step_outputs.get(shortname(step.id))
        if outs is None:
            continue
        for out in step.tool["outputs"]:
            state[out["id"]] = WorkflowStateItem(out, outs.get(shortname(out["id"])), "success")
    return state


def _eval(expr, inputs, requirements, context=None):
    from cwltool import expression

    return expression.do_eval(expr, inputs, requirements, None, None, {}, context=context)


def step_job_order(process: Process, name: str, job_order: dict, step_outputs: dict[str, dict]):
    """The input object of step ``name``, or ``None`` when its ``when`` is false.

    ``step_outputs`` maps finished step names to their output objects.
    """
    if name == SINGLE_TOOL_STEP and process.tool["class"] in RUNNABLE_CLASSES:
        return dict(job_order)
    assert isinstance(process, CwlWorkflow)
    step = _workflow_step(process, name)
    multiple = bool(process.get_requirement("MultipleInputFeatureRequirement")[0])
    try:
        inputobj = object_from_state(
            _state(process, job_order, step_outputs), step.tool["inputs"], False, multiple, "source"
        )
        if inputobj is None:
            raise CwlError(f"Step {name!r} is missing an input.")
        shortio = {shortname(k): v for k, v in inputobj.items()}
        values = {}
        for inp in step.tool["inputs"]:
            value = inputobj.get(inp["id"])
            if "valueFrom" in inp:
                value = _eval(inp["valueFrom"], shortio, process.requirements, context=value)
            values[shortname(inp["id"])] = value
        if "when" in step.tool:
            decision = _eval(step.tool["when"], values, process.requirements)
            if decision is False:
                return None
            if decision is not True:
                raise CwlError(f"Step {name!r}: 'when' must evaluate to true or false.")
        return values
    except WorkflowException as exc:
        raise CwlError(f"Step {name!r}: {_clean(exc)}") from None


def workflow_outputs(process: Process, job_order: dict, step_outputs: dict[str, dict]) -> dict:
    if process.tool["class"] in RUNNABLE_CLASSES:
        return step_outputs.get(SINGLE_TOOL_STEP) or {}
    assert isinstance(process, CwlWorkflow)
    multiple = bool(process.get_requirement("MultipleInputFeatureRequirement")[0])
    try:
        result = object_from_state(
            _state(process, job_order, step_outputs),
            process.tool["outputs"],
            True,
            multiple,
            "outputSource",
            incomplete=True,
        )
    except WorkflowException as exc:
        raise CwlError(f"Workflow outputs: {_clean(exc)}") from None
    return result or {}
