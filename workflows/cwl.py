"""CWL through the CWL libraries: loading, validation, the DAG of a workflow, step inputs.

Semantics come from cwltool (DESIGN.md principle 4); this module only adapts its objects to
Apiary's database model. Workflow-level state (which step is ready, its resolved inputs) lives in
the database; cwltool's helpers compute the values.

A node of the DAG is addressed by its *tool path*: the short names of the workflow steps leading
to it from the submitted document (``["outer", "inner"]``); ``[]`` is the submitted process
itself (a single tool). A step's inputs are resolved in its *scope*: the workflow that contains
it, with that workflow's inputs and its sibling steps' outputs.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import logging
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cwl_utils import expression
from cwltool.context import LoadingContext, RuntimeContext
from cwltool.errors import WorkflowException
from cwltool.load_tool import load_tool
from cwltool.process import Process, shortname
from cwltool.utils import aslist
from cwltool.workflow import Workflow as CwlWorkflow
from cwltool.workflow import default_make_tool
from cwltool.workflow_job import WorkflowStateItem, object_from_state
from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from schema_salad.exceptions import ValidationException

from portal.errors import ApplicationError

log = logging.getLogger(__name__)

SINGLE_TOOL_STEP = "main"
ORIGINAL_VERSION = "http://commonwl.org/cwltool#original_cwlVersion"


class CwlError(ApplicationError):
    """Invalid CWL or inputs; the message is the validator's, with file and line."""


def loading_context() -> LoadingContext:
    return LoadingContext(
        {"construct_tool_object": default_make_tool, "do_update": True, "relax_path_checks": True}
    )


# An inputs object may carry ``cwl:requirements`` (CWL v1.1+): requirements added to the top
# process, as if written last in its ``requirements`` (they win over the document's own).
INPUT_REQUIREMENTS_KEYS = ("cwl:requirements", "https://w3id.org/cwl/cwl#requirements")


@functools.lru_cache(maxsize=64)
def _load_cached(uri: str, mtime_ns: int, requirements_json: str = "") -> Process:
    context = loading_context()
    if requirements_json:
        context.overrides_list = [{"overrideTarget": uri, "requirements": json.loads(requirements_json)}]
    return load_tool(uri, context)


def input_requirements(job_order: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``cwl:requirements`` of an inputs object (empty if none), checked for shape."""
    found = [job_order[k] for k in INPUT_REQUIREMENTS_KEYS if k in job_order]
    if not found:
        return []
    requirements = found[0]
    if not isinstance(requirements, list) or not all(
        isinstance(r, dict) and isinstance(r.get("class"), str) for r in requirements
    ):
        raise CwlError("cwl:requirements in the inputs must be a list of requirements, each with a class.")
    return requirements


def split_fragment(path: Path | str) -> tuple[Path, str]:
    """``packed.cwl#main`` -> (``packed.cwl``, ``main``): a process inside a packed document.

    A file whose name really contains ``#`` is taken as it is.
    """
    path = Path(path)
    if "#" in path.name and not path.exists():
        name, _, fragment = path.name.partition("#")
        return path.with_name(name), fragment
    return path, ""


def load_process(path: Path | str, requirements: list[dict[str, Any]] | None = None) -> Process:
    """Load and validate a CWL document (cached per path, modification time and requirements).

    ``path`` may end in ``#id`` to run one process of a packed (``$graph``) document; without
    it cwltool takes ``#main``. ``requirements`` are an inputs object's ``cwl:requirements``
    (see ``input_requirements``), added to the top process as cwltool does.
    """
    path, fragment = split_fragment(path)
    path = path.resolve()
    if not path.is_file():
        raise CwlError(f"CWL document {path.name} not found.")
    try:
        return _load_cached(
            path.as_uri() + (f"#{fragment}" if fragment else ""),
            path.stat().st_mtime_ns,
            json.dumps(requirements, sort_keys=True) if requirements else "",
        )
    except (ValidationException, WorkflowException) as exc:
        raise CwlError(f"Invalid CWL: {_clean(exc)}") from None
    except Exception as exc:  # schema-salad raises a variety of errors on malformed YAML
        raise CwlError(f"Could not load {path.name}: {_clean(exc)}") from None


def warm_up() -> None:
    """Load cwltool's CWL schemas now rather than on the first submission (about 0.3 s each).

    Called when a web or worker process starts, so that the first workflow does not pay it.
    """
    from cwltool.process import get_schema

    for version in ("v1.0", "v1.1", "v1.2"):
        get_schema(version)


def _clean(exc: Exception) -> str:
    text = str(exc).strip()
    return text.replace("file://", "")


class _NoTimestampConstructor(SafeConstructor):
    """YAML's timestamps stay strings (CWL has no date type; as cwltool's own loader does)."""


_NoTimestampConstructor.add_constructor("tag:yaml.org,2002:timestamp", SafeConstructor.construct_yaml_str)


def parse_job_order(text: str, name: str = "inputs") -> dict[str, Any]:
    """Parse an inputs file (YAML or JSON); an empty file means no inputs.

    ``date: 2024-05-01`` is the string ``"2024-05-01"``, not a date: values must round-trip
    through JSON (the stored job order) unchanged.
    """
    yaml = YAML(typ="safe", pure=True)
    yaml.Constructor = _NoTimestampConstructor
    try:
        data = yaml.load(io.StringIO(text))
    except Exception as exc:
        raise CwlError(f"{name} is not valid YAML or JSON: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CwlError(f"{name} must be a mapping of input names to values, not {type(data).__name__}.")
    return data


def resolve_locations(value: Any, base: Path, root: Path | None = None) -> Any:
    """Make every File/Directory ``path``/``location`` an absolute file:// URI.

    Relative paths are resolved against ``base``, the folder the inputs file was uploaded with.
    A path that leaves ``root`` (the submitted files; ``base`` if not given) is refused: a user
    may not reference other users' files. ``../data.txt`` from an inputs file in a subfolder
    of the submission stays inside it and is fine.
    """
    root = base if root is None else root
    if isinstance(value, list):
        return [resolve_locations(v, base, root) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: resolve_locations(v, base, root) for k, v in value.items()}
    if out.get("class") in ("File", "Directory"):
        path = out.pop("path", None)
        ref = path or out.get("location")
        if ref is not None:
            if "://" in ref and not ref.startswith("file://"):
                raise CwlError(f"Input location {ref!r}: only local files can be used.")
            if ref.startswith("file://"):
                ref = ref[len("file://") :]
            if not path:
                ref = urllib.parse.unquote(ref)  # a location is a URI: "a%20b.txt" names "a b.txt"
            target = (base / ref).resolve()
            if not target.is_relative_to(Path(root).resolve()):
                raise CwlError(
                    f"Input {ref!r} points outside the submitted files; upload it with the workflow."
                )
            if not target.exists():
                raise CwlError(f"Input {ref!r} was not uploaded with the workflow.")
            out["location"] = target.as_uri()
    return out


KIND_TOOL, KIND_EXPRESSION, KIND_WORKFLOW, KIND_SCATTER = "TOOL", "EXPRESSION", "WORKFLOW", "SCATTER"
_KIND_OF_CLASS = {"CommandLineTool": KIND_TOOL, "ExpressionTool": KIND_EXPRESSION, "Workflow": KIND_WORKFLOW}


def kind_of(process: Process) -> str:
    cls = process.tool["class"]
    if cls not in _KIND_OF_CLASS:
        raise CwlError(
            f"Process class {cls} cannot be run; use a Workflow, CommandLineTool or ExpressionTool."
        )
    return _KIND_OF_CLASS[cls]


@dataclass
class StepSpec:
    name: str
    tool_ref: str
    tool_class: str
    kind: str
    upstream: list[str] = field(default_factory=list)


@dataclass
class ProcessSpec:
    process_class: str
    cwl_version: str
    steps: list[StepSpec]


def describe(process: Process) -> ProcessSpec:
    """The top-level DAG of a loaded process: its steps and their upstream steps."""
    cls = process.tool["class"]
    version = str(process.metadata.get(ORIGINAL_VERSION) or process.metadata.get("cwlVersion", ""))
    kind = kind_of(process)
    if kind != KIND_WORKFLOW:
        return ProcessSpec(cls, version, [StepSpec(SINGLE_TOOL_STEP, process.tool["id"], cls, kind)])
    _check_nested(process)
    return ProcessSpec(cls, version, child_specs(process))


def _check_nested(process: Process) -> None:
    """Refuse at submission what the scheduler cannot run, anywhere in the tree."""
    if not isinstance(process, CwlWorkflow):
        kind_of(process)
        return
    for step in process.steps:
        name = shortname(step.id)
        if step.tool.get("loop") is not None:
            raise CwlError(f"Step {name!r} uses 'loop', which Apiary does not support yet.")
        if (
            "scatter" in step.tool
            and len(aslist(step.tool["scatter"])) > 1
            and not step.tool.get("scatterMethod")
        ):
            raise CwlError(f"Step {name!r} scatters over several inputs; say which scatterMethod.")
        _check_nested(step.embedded_tool)


def child_specs(scope: CwlWorkflow) -> list[StepSpec]:
    """The steps of a workflow with their upstream steps, in topological order."""
    names = {s.id: shortname(s.id) for s in scope.steps}
    steps: list[StepSpec] = []
    for step in scope.steps:
        upstream = set()
        for inp in step.tool["inputs"]:
            for src in aslist(inp.get("source") or []):
                owner = src.rsplit("/", 1)[0]
                if owner in names:
                    upstream.add(names[owner])
        inner = step.embedded_tool
        kind = KIND_SCATTER if "scatter" in step.tool else kind_of(inner)
        steps.append(StepSpec(names[step.id], inner.tool["id"], inner.tool["class"], kind, sorted(upstream)))
    return _topological(steps)


def _topological(steps: list[StepSpec]) -> list[StepSpec]:
    """Steps ordered so that each comes after its upstream steps (stable by name)."""
    from graphlib import CycleError, TopologicalSorter

    by_name = {s.name: s for s in steps}
    sorter = TopologicalSorter({s.name: s.upstream for s in sorted(steps, key=lambda s: s.name)})
    try:
        return [by_name[name] for name in sorter.static_order()]
    except CycleError as exc:
        raise CwlError(f"The workflow's steps depend on each other in a cycle: {exc.args[1]}") from None


def validate_job_order(process: Process, job_order: dict[str, Any]) -> dict[str, Any]:
    """Check inputs against the process's input schema; the job order to run, as cwltool's.

    As cwltool's ``main`` does for the job order it is given: ``format`` values are expanded
    with the namespaces of the inputs file and of the document (``edam:format_2330`` ->
    ``http://edamontology.org/format_2330``), and the ``secondaryFiles`` that the process's
    inputs declare are discovered next to the given files (cwltool's top-level job).

    For a Workflow the result is, as in cwltool, the workflow's initialised input object (its
    steps run from it: defaults filled in, ``loadContents`` and listings of workflow inputs
    done). For a single tool it is the given job order, normalised (``basename``,
    ``nameroot``…) and with the discovered ``secondaryFiles``: cwltool initialises a tool's job
    once, when building it, and reads defaults from the document in their written form
    (``0.00001`` would become ``1e-05`` on a command line after a trip through JSON).
    """
    from cwltool.utils import visit_class
    from schema_salad.ref_resolver import Loader

    namespaces = {**(job_order.get("$namespaces") or {}), **(process.metadata.get("$namespaces") or {})}
    job_order = {k: v for k, v in job_order.items() if not k.startswith("$") and k not in ("id", "cwl:tool")}
    if namespaces:
        loader = Loader(dict(namespaces))

        def expand_format(obj):
            if isinstance(obj.get("format"), str):
                obj["format"] = loader.expand_url(obj["format"], "")

        visit_class(job_order, ("File",), expand_format)
    requirements = input_requirements(job_order)
    if requirements and process.metadata.get(ORIGINAL_VERSION, process.metadata.get("cwlVersion")) == "v1.0":
        raise CwlError("cwl:requirements in the inputs is not in CWL v1.0: use cwlVersion v1.1 or newer.")
    job_order = input_values(job_order)
    # Every directory named, or cwltool makes an (empty, never removed) stage folder in $TMPDIR.
    runtime = RuntimeContext(
        {"outdir": "/nonexistent", "tmpdir": "/nonexistent", "stagedir": "/nonexistent", "toplevel": True}
    )
    try:
        builder = process._init_job(dict(job_order), runtime)
    except (ValidationException, WorkflowException) as exc:
        raise CwlError(f"Invalid inputs: {_clean(exc)}") from None
    initialised = json.loads(json.dumps(builder.job))
    if isinstance(process, CwlWorkflow):
        return initialised
    from cwltool.utils import normalizeFilesDirs

    normalizeFilesDirs(job_order)
    return _with_secondary_files(job_order, initialised)


def input_values(job_order: dict[str, Any]) -> dict[str, Any]:
    """A stored job order without its ``cwl:requirements``: the values the inputs take."""
    return {k: v for k, v in job_order.items() if k not in INPUT_REQUIREMENTS_KEYS}


def with_input_requirements(job_order: dict[str, Any], requirements: list[dict[str, Any]]) -> dict[str, Any]:
    """The job order to store: the validated one, with the inputs' ``cwl:requirements`` kept
    (under that key) so that the scheduler, archives and re-executions apply them too."""
    return {**job_order, "cwl:requirements": requirements} if requirements else job_order


def _with_secondary_files(given: Any, initialised: Any) -> Any:
    """``given`` with the ``secondaryFiles`` cwltool discovered in its copy ``initialised``."""
    if isinstance(given, list) and isinstance(initialised, list) and len(given) == len(initialised):
        return [_with_secondary_files(g, i) for g, i in zip(given, initialised, strict=True)]
    if not isinstance(given, dict) or not isinstance(initialised, dict):
        return given
    out = {k: _with_secondary_files(v, initialised.get(k)) for k, v in given.items()}
    if given.get("class") == "File" and initialised.get("secondaryFiles") and not given.get("secondaryFiles"):
        out["secondaryFiles"] = initialised["secondaryFiles"]
    return out


# --- navigating the tree --------------------------------------------------------------------


def workflow_step(root: Process, tool_path: list[str]):
    """The cwltool ``WorkflowStep`` at ``tool_path`` (non-empty)."""
    scope = node_process(root, tool_path[:-1])
    if isinstance(scope, CwlWorkflow):
        for step in scope.steps:
            if shortname(step.id) == tool_path[-1]:
                return step
    raise CwlError(f"The workflow has no step {'/'.join(tool_path)!r}.")


def node_process(root: Process, tool_path: list[str]) -> Process:
    """The process run at ``tool_path`` (``[]``: the submitted process)."""
    return root if not tool_path else workflow_step(root, tool_path).embedded_tool


# --- step inputs ----------------------------------------------------------------------------


def _state(scope: CwlWorkflow, scope_inputs: dict, sibling_outputs: dict[str, dict]) -> dict:
    """cwltool's workflow state: the scope's inputs and finished siblings' outputs by id."""
    state: dict[str, WorkflowStateItem | None] = {}
    for inp in scope.tool["inputs"]:
        key = shortname(inp["id"])
        if scope_inputs.get(key) is not None:
            value = scope_inputs[key]
        else:
            value = inp.get("default")
        state[inp["id"]] = WorkflowStateItem(inp, value, "success")
    for step in scope.steps:
        outs = sibling_outputs.get(shortname(step.id))
        if outs is None:
            continue
        for out in step.tool["outputs"]:
            state[out["id"]] = WorkflowStateItem(out, outs.get(shortname(out["id"])), "success")
    return state


def _eval(expr, inputs, requirements, context=None):
    return expression.do_eval(expr, inputs, requirements, None, None, {}, context=context)


def _supports_multiple(scope: Process) -> bool:
    return bool(scope.get_requirement("MultipleInputFeatureRequirement")[0])


def resolve_step_inputs(
    root: Process, tool_path: list[str], scope_inputs: dict, sibling_outputs: dict
) -> dict:
    """A step's input object before ``valueFrom`` and scatter, keyed by input id.

    For the submitted process itself (``tool_path == []``) it is the job order as given.
    """
    if not tool_path:
        return dict(scope_inputs)
    scope = node_process(root, tool_path[:-1])
    step = workflow_step(root, tool_path)
    try:
        inputobj = object_from_state(
            _state(scope, scope_inputs, sibling_outputs),
            step.tool["inputs"],
            False,
            _supports_multiple(scope),
            "source",
        )
    except WorkflowException as exc:
        raise CwlError(f"Step {'/'.join(tool_path)!r}: {_clean(exc)}") from None
    if inputobj is None:
        raise CwlError(f"Step {'/'.join(tool_path)!r} is missing an input.")
    return inputobj


def _load_contents(value) -> None:
    from cwltool.builder import content_limit_respected_read
    from schema_salad.ref_resolver import uri_file_path

    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict) and item.get("class") == "File" and item.get("contents") is None:
            location = item["location"]
            path = uri_file_path(location) if location.startswith("file://") else location
            with open(path, "rb") as fh:
                item["contents"] = content_limit_respected_read(fh)


def evaluate_step_inputs(root: Process, tool_path: list[str], inputobj: dict) -> dict | None:
    """``valueFrom`` and ``when`` on a (scattered) input object; ``None`` when ``when`` is false.

    Returns the tool's job order keyed by short input names: step inputs the tool does not
    declare are visible to ``valueFrom`` and ``when``, not to the tool.
    """
    if not tool_path:
        return dict(inputobj)
    scope = node_process(root, tool_path[:-1])
    step = workflow_step(root, tool_path)
    where = "/".join(tool_path)
    try:
        for inp in step.tool["inputs"]:
            if inp.get("loadContents") and inputobj.get(inp["id"]) is not None:
                _load_contents(inputobj[inp["id"]])
        shortio = {shortname(k): v for k, v in inputobj.items()}
        values = {}
        for inp in step.tool["inputs"]:
            value = inputobj.get(inp["id"])
            if "valueFrom" in inp:
                if not scope.get_requirement("StepInputExpressionRequirement")[0]:
                    raise CwlError(f"Step {where!r} uses valueFrom without StepInputExpressionRequirement.")
                value = _eval(inp["valueFrom"], shortio, scope.requirements, context=value)
            values[shortname(inp["id"])] = value
        if "when" in step.tool:
            decision = _eval(step.tool["when"], values, scope.requirements)
            if decision is False:
                return None
            if decision is not True:
                raise CwlError(f"Step {where!r}: 'when' must evaluate to true or false, not {decision!r}.")
        # A step input its tool does not declare serves valueFrom and when only (as in cwltool).
        dropped = {shortname(inp["id"]) for inp in step.tool["inputs"] if inp.get("not_connected")}
        return {k: v for k, v in values.items() if k not in dropped}
    except WorkflowException as exc:
        raise CwlError(f"Step {where!r}: {_clean(exc)}") from None


# --- scatter --------------------------------------------------------------------------------


def scatter_elements(root: Process, tool_path: list[str], inputobj: dict) -> tuple[list[dict], list[int]]:
    """The input objects of a scatter's elements and the shape of its output arrays."""
    step = workflow_step(root, tool_path)
    where = "/".join(tool_path)
    keys = aslist(step.tool["scatter"])
    method = step.tool.get("scatterMethod") or "dotproduct"
    arrays = []
    for key in keys:
        value = inputobj.get(key)
        if not isinstance(value, list):
            raise CwlError(f"Step {where!r}: scatter input {shortname(key)!r} is not an array.")
        arrays.append(value)
    if method == "dotproduct":
        if len({len(a) for a in arrays}) > 1:
            raise CwlError(f"Step {where!r}: dotproduct scatter over arrays of different lengths.")
        count = len(arrays[0]) if arrays else 0
        combos = [tuple(a[i] for a in arrays) for i in range(count)]
        shape = [count]
    elif method in ("flat_crossproduct", "nested_crossproduct"):
        combos = list(itertools.product(*arrays))
        shape = [len(combos)] if method == "flat_crossproduct" else [len(a) for a in arrays]
    else:
        raise CwlError(f"Step {where!r}: unknown scatterMethod {method!r}.")
    elements = []
    for combo in combos:
        element = dict(inputobj)
        element.update(zip(keys, combo, strict=True))
        elements.append(element)
    return elements, shape


def gather_scatter(
    root: Process, tool_path: list[str], element_outputs: list[dict | None], shape: list[int]
) -> dict:
    """A scatter step's outputs: per output port, the elements' values (nested if so scattered)."""
    step = workflow_step(root, tool_path)
    result = {}
    for out in step.tool["outputs"]:
        key = shortname(out["id"])
        flat = [(o or {}).get(key) for o in element_outputs]
        result[key] = _reshape(flat, shape)
    return result


def _reshape(flat: list, shape: list[int]):
    if len(shape) <= 1:
        return flat
    size = len(flat) // shape[0] if shape[0] else 0
    return [_reshape(flat[i * size : (i + 1) * size], shape[1:]) for i in range(shape[0])]


# --- outputs --------------------------------------------------------------------------------


def scope_outputs(scope: Process, scope_inputs: dict, child_outputs: dict[str, dict]) -> dict:
    """The output object of a workflow (the submitted one or a nested one)."""
    if not isinstance(scope, CwlWorkflow):
        return child_outputs.get(SINGLE_TOOL_STEP) or {}
    try:
        result = object_from_state(
            _state(scope, scope_inputs, child_outputs),
            scope.tool["outputs"],
            True,
            _supports_multiple(scope),
            "outputSource",
            incomplete=True,
        )
    except WorkflowException as exc:
        raise CwlError(f"Workflow outputs: {_clean(exc)}") from None
    return result or {}
