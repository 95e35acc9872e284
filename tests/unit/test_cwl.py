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
    process = cwl.load_process(GREP_WC / "workflow.cwl")
    job = {"pattern": "integer", "infile": {"class": "File", "location": (GREP_WC / "lorem.txt").as_uri()}}
    grep_in = cwl.step_job_order(process, "grep", job, {})
    assert grep_in["pattern"] == "integer"
    produced = {"class": "File", "location": "file:///tmp/grepout.txt"}
    wc_in = cwl.step_job_order(process, "wc", job, {"grep": {"outfile": produced}})
    assert wc_in == {"infile": produced}
    assert cwl.workflow_outputs(
        process, job, {"grep": {"outfile": produced}, "wc": {"outfile": produced}}
    ) == {"counts": produced}


def test_scatter_is_refused_with_a_clear_message(tmp_path: Path):
    (tmp_path / "echo.cwl").write_text(
        "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: echo\n"
        "inputs: {x: {type: string, inputBinding: {}}}\noutputs: []\n"
    )
    (tmp_path / "wf.cwl").write_text(
        "cwlVersion: v1.2\nclass: Workflow\nrequirements: {ScatterFeatureRequirement: {}}\n"
        "inputs: {xs: 'string[]'}\noutputs: []\n"
        "steps:\n  e:\n    run: echo.cwl\n    scatter: x\n    in: {x: xs}\n    out: []\n"
    )
    with pytest.raises(cwl.CwlError, match="scatter"):
        cwl.describe(cwl.load_process(tmp_path / "wf.cwl"))
