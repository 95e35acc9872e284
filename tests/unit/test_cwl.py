from pathlib import Path

import pytest

from tests.conftest import EXAMPLES
from workflows import cwl

pytestmark = pytest.mark.unit
GREP_WC = EXAMPLES / "grep-wc"


def test_grep_wc_is_described_as_two_steps_with_an_edge():
    spec = cwl.describe(cwl.load_process(GREP_WC / "workflow.cwl"))
    assert spec.process_class == "Workflow"
    assert spec.cwl_version == "v1.2"
    steps = {s.name: s for s in spec.steps}
    assert set(steps) == {"grep", "wc"}
    assert steps["wc"].upstream == ["grep"]
    assert steps["grep"].upstream == []


def test_single_tool_is_one_step():
    spec = cwl.describe(cwl.load_process(GREP_WC / "grep.cwl"))
    assert [(s.name, s.tool_class) for s in spec.steps] == [("main", "CommandLineTool")]


def test_invalid_cwl_names_file_and_problem(tmp_path):
    bad = tmp_path / "bad.cwl"
    bad.write_text("cwlVersion: v1.2\nclass: CommandLineTool\ninputs:\n  x: {type: strnig}\noutputs: []\n")
    with pytest.raises(cwl.CwlError) as err:
        cwl.load_process(bad)
    assert "bad.cwl" in err.value.message
    assert "strnig" in err.value.message


def test_malformed_yaml_is_a_cwl_error(tmp_path):
    bad = tmp_path / "broken.cwl"
    bad.write_text("cwlVersion: v1.2\nclass: [unclosed\n")
    with pytest.raises(cwl.CwlError):
        cwl.load_process(bad)


def test_inputs_are_validated_against_the_schema():
    process = cwl.load_process(GREP_WC / "workflow.cwl")
    job = cwl.resolve_locations({"pattern": "x", "infile": {"class": "File", "path": "lorem.txt"}}, GREP_WC)
    cwl.validate_job_order(process, job)
    with pytest.raises(cwl.CwlError, match="Invalid inputs"):
        cwl.validate_job_order(process, {"pattern": 3})


def test_input_paths_must_stay_inside_the_submission(tmp_path):
    with pytest.raises(cwl.CwlError, match="outside the submitted files"):
        cwl.resolve_locations({"f": {"class": "File", "path": "../../etc/passwd"}}, tmp_path)
    with pytest.raises(cwl.CwlError, match="was not uploaded"):
        cwl.resolve_locations({"f": {"class": "File", "path": "missing.txt"}}, tmp_path)


def test_inputs_file_must_be_a_mapping():
    with pytest.raises(cwl.CwlError, match="mapping"):
        cwl.parse_job_order("- a\n- b\n")
    with pytest.raises(cwl.CwlError, match="not valid YAML"):
        cwl.parse_job_order("a: [1,\n")
    assert cwl.parse_job_order("") == {}


def test_step_inputs_come_from_upstream_outputs():
    root = cwl.load_process(GREP_WC / "workflow.cwl")
    job = {"pattern": "integer", "infile": {"class": "File", "location": (GREP_WC / "lorem.txt").as_uri()}}
    raw = cwl.resolve_step_inputs(root, ["grep"], job, {})
    assert cwl.evaluate_step_inputs(root, ["grep"], raw)["pattern"] == "integer"
    produced = {"class": "File", "location": "file:///tmp/grepout.txt"}
    raw = cwl.resolve_step_inputs(root, ["wc"], job, {"grep": {"outfile": produced}})
    assert cwl.evaluate_step_inputs(root, ["wc"], raw) == {"infile": produced}
    finished = {"grep": {"outfile": produced}, "wc": {"outfile": produced}}
    assert cwl.scope_outputs(root, job, finished) == {"counts": produced}


SCATTER_TOOL = (
    "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: echo\n"
    "inputs: {x: {type: string, inputBinding: {}}, y: {type: string, inputBinding: {}}}\n"
    "outputs: {o: {type: stdout}}\n"
)


def _scatter_workflow(tmp_path: Path, method: str) -> cwl.Process:
    (tmp_path / "echo.cwl").write_text(SCATTER_TOOL)
    (tmp_path / "wf.cwl").write_text(
        "cwlVersion: v1.2\nclass: Workflow\nrequirements: {ScatterFeatureRequirement: {}}\n"
        "inputs: {xs: 'string[]', ys: 'string[]'}\noutputs: {os: {type: Any, outputSource: e/o}}\n"
        f"steps:\n  e:\n    run: echo.cwl\n    scatter: [x, y]\n    scatterMethod: {method}\n"
        "    in: {x: xs, y: ys}\n    out: [o]\n"
    )
    return cwl.load_process(tmp_path / "wf.cwl")


@pytest.mark.parametrize(
    "method,shape,count",
    [("dotproduct", [2], 2), ("flat_crossproduct", [4], 4), ("nested_crossproduct", [2, 2], 4)],
)
def test_scatter_methods_give_elements_and_shapes(tmp_path, method, shape, count):
    root = _scatter_workflow(tmp_path, method)
    spec = cwl.describe(root)
    assert [(s.name, s.kind) for s in spec.steps] == [("e", cwl.KIND_SCATTER)]
    raw = cwl.resolve_step_inputs(root, ["e"], {"xs": ["a", "b"], "ys": ["1", "2"]}, {})
    elements, got_shape = cwl.scatter_elements(root, ["e"], raw)
    assert got_shape == shape
    assert len(elements) == count
    jobs = [cwl.evaluate_step_inputs(root, ["e"], e) for e in elements]
    if method == "dotproduct":
        assert jobs == [{"x": "a", "y": "1"}, {"x": "b", "y": "2"}]
    outs = cwl.gather_scatter(root, ["e"], [{"o": i} for i in range(count)], got_shape)
    assert outs == {"o": [[0, 1], [2, 3]]} if method == "nested_crossproduct" else {"o": list(range(count))}


def test_dotproduct_of_unequal_arrays_is_an_error(tmp_path):
    root = _scatter_workflow(tmp_path, "dotproduct")
    raw = cwl.resolve_step_inputs(root, ["e"], {"xs": ["a", "b"], "ys": ["1"]}, {})
    with pytest.raises(cwl.CwlError, match="different lengths"):
        cwl.scatter_elements(root, ["e"], raw)


def _one_step_workflow(tmp_path: Path, step_lines: str) -> cwl.Process:
    """A workflow with input ``v`` and one step ``e`` running SCATTER_TOOL; ``step_lines`` are
    the step's ``in:`` (and ``when:``) lines."""
    (tmp_path / "echo.cwl").write_text(SCATTER_TOOL)
    (tmp_path / "wf.cwl").write_text(
        "cwlVersion: v1.2\nclass: Workflow\n"
        "requirements: {StepInputExpressionRequirement: {}, InlineJavascriptRequirement: {}}\n"
        "inputs: {v: string}\noutputs: []\n"
        f"steps:\n  e:\n    run: echo.cwl\n{step_lines}    out: [o]\n"
    )
    return cwl.load_process(tmp_path / "wf.cwl")


def test_step_value_from_is_evaluated(tmp_path):
    root = _one_step_workflow(
        tmp_path,
        "    in: {x: {source: v, valueFrom: '$(self + \"!\")'}, y: v}\n    when: $(inputs.y != 'skip')\n",
    )
    raw = cwl.resolve_step_inputs(root, ["e"], {"v": "hi"}, {})
    assert cwl.evaluate_step_inputs(root, ["e"], raw) == {"x": "hi!", "y": "hi"}
    raw = cwl.resolve_step_inputs(root, ["e"], {"v": "skip"}, {})
    assert cwl.evaluate_step_inputs(root, ["e"], raw) is None


def test_step_inputs_the_tool_does_not_declare_serve_value_from_but_are_not_passed_on(tmp_path):
    step_in = "    in: {extra: v, x: {valueFrom: '$(inputs.extra + \"!\")'}, y: v}\n"
    root = _one_step_workflow(tmp_path, step_in)
    raw = cwl.resolve_step_inputs(root, ["e"], {"v": "hi"}, {})
    assert cwl.evaluate_step_inputs(root, ["e"], raw) == {"x": "hi!", "y": "hi"}


def test_nested_workflow_steps_are_addressed_by_tool_path(tmp_path):
    (tmp_path / "echo.cwl").write_text(SCATTER_TOOL)
    (tmp_path / "inner.cwl").write_text(
        "cwlVersion: v1.2\nclass: Workflow\ninputs: {a: string}\n"
        "outputs: {r: {type: File, outputSource: s/o}}\n"
        "steps:\n  s:\n    run: echo.cwl\n    in: {x: a, y: {default: z}}\n    out: [o]\n"
    )
    (tmp_path / "outer.cwl").write_text(
        "cwlVersion: v1.2\nclass: Workflow\nrequirements: {SubworkflowFeatureRequirement: {}}\n"
        "inputs: {v: string}\noutputs: {r: {type: File, outputSource: n/r}}\n"
        "steps:\n  n:\n    run: inner.cwl\n    in: {a: v}\n    out: [r]\n"
    )
    root = cwl.load_process(tmp_path / "outer.cwl")
    assert [(s.name, s.kind) for s in cwl.describe(root).steps] == [("n", cwl.KIND_WORKFLOW)]
    inner = cwl.node_process(root, ["n"])
    assert [(s.name, s.kind) for s in cwl.child_specs(inner)] == [("s", cwl.KIND_TOOL)]
    outer_job = cwl.evaluate_step_inputs(root, ["n"], cwl.resolve_step_inputs(root, ["n"], {"v": "hi"}, {}))
    assert outer_job == {"a": "hi"}
    raw = cwl.resolve_step_inputs(root, ["n", "s"], outer_job, {})
    assert cwl.evaluate_step_inputs(root, ["n", "s"], raw) == {"x": "hi", "y": "z"}


def test_yaml_dates_in_inputs_stay_strings_that_survive_json():
    import json

    job = cwl.parse_job_order("day: 2024-05-01\nwhen: 2001-12-14 21:59:43.10 -5\nn: 3\n")
    assert job == {"day": "2024-05-01", "when": "2001-12-14 21:59:43.10 -5", "n": 3}
    assert json.loads(json.dumps(job)) == job
