"""Job orders as cwltool's main prepares them, and packed documents (found by the CWL suite)."""

import pytest

from workflows import cwl

pytestmark = pytest.mark.unit

FORMAT_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
$namespaces:
  edam: http://edamontology.org/
inputs:
  input:
    type: File
    format: edam:format_2330
outputs: []
baseCommand: "true"
"""

RECORD_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
inputs:
  rec:
    type:
      type: record
      fields:
        f1:
          type: File
          secondaryFiles: .s2
outputs: []
baseCommand: "true"
"""

PACKED = """\
cwlVersion: v1.2
$graph:
  - id: main
    class: CommandLineTool
    inputs: []
    outputs: []
    baseCommand: "true"
  - id: other
    class: ExpressionTool
    requirements: [{class: InlineJavascriptRequirement}]
    inputs: []
    outputs: {x: int}
    expression: "$({'x': 1})"
"""


def _doc(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_input_paths_may_go_up_within_the_submission(tmp_path):
    # suite/tests/sub/job.yml naming ../data.txt: inside the submission, so accepted.
    (tmp_path / "sub").mkdir()
    (tmp_path / "data.txt").write_text("x")
    job = cwl.resolve_locations(
        {"f": {"class": "File", "path": "../data.txt"}}, tmp_path / "sub", root=tmp_path
    )
    assert job["f"]["location"] == (tmp_path / "data.txt").as_uri()
    with pytest.raises(cwl.CwlError, match="outside the submitted files"):
        cwl.resolve_locations({"f": {"class": "File", "path": "../data.txt"}}, tmp_path / "sub")


def test_locations_are_uris_and_paths_are_paths(tmp_path):
    (tmp_path / "a b.txt").write_text("x")
    (tmp_path / "a%20b.txt").write_text("y")
    by_location = cwl.resolve_locations({"f": {"class": "File", "location": "a%20b.txt"}}, tmp_path)
    by_path = cwl.resolve_locations({"f": {"class": "File", "path": "a%20b.txt"}}, tmp_path)
    assert by_location["f"]["location"] == (tmp_path / "a b.txt").as_uri()
    assert by_path["f"]["location"] == (tmp_path / "a%20b.txt").as_uri()


def test_formats_are_expanded_with_the_documents_namespaces(tmp_path):
    process = cwl.load_process(_doc(tmp_path, "fmt.cwl", FORMAT_TOOL))
    data = _doc(tmp_path, "whale.txt", "whale")
    job = {"input": {"class": "File", "location": data.as_uri(), "format": "edam:format_2330"}}
    prepared = cwl.validate_job_order(process, job)
    assert prepared["input"]["format"] == "http://edamontology.org/format_2330"
    wrong = {"input": {"class": "File", "location": data.as_uri(), "format": "edam:format_1929"}}
    with pytest.raises(cwl.CwlError, match="incompatible format"):
        cwl.validate_job_order(process, wrong)


def test_formats_may_use_the_inputs_files_own_namespaces(tmp_path):
    process = cwl.load_process(_doc(tmp_path, "fmt.cwl", FORMAT_TOOL))
    data = _doc(tmp_path, "whale.txt", "whale")
    job = {
        "$namespaces": {"e": "http://edamontology.org/"},
        "input": {"class": "File", "location": data.as_uri(), "format": "e:format_2330"},
    }
    prepared = cwl.validate_job_order(process, job)
    assert "$namespaces" not in prepared
    assert prepared["input"]["format"] == "http://edamontology.org/format_2330"


def test_secondary_files_of_record_fields_are_discovered(tmp_path):
    process = cwl.load_process(_doc(tmp_path, "rec.cwl", RECORD_TOOL))
    main = _doc(tmp_path, "A", "")
    _doc(tmp_path, "A.s2", "")
    prepared = cwl.validate_job_order(process, {"rec": {"f1": {"class": "File", "location": main.as_uri()}}})
    secondary = prepared["rec"]["f1"]["secondaryFiles"]
    assert [s["location"] for s in secondary] == [(tmp_path / "A.s2").as_uri()]


def test_missing_secondary_file_is_an_input_error(tmp_path):
    process = cwl.load_process(_doc(tmp_path, "rec.cwl", RECORD_TOOL))
    main = _doc(tmp_path, "A", "")
    with pytest.raises(cwl.CwlError, match="Invalid inputs.*secondary file"):
        cwl.validate_job_order(process, {"rec": {"f1": {"class": "File", "location": main.as_uri()}}})


def test_packed_document_process_is_chosen_by_fragment(tmp_path):
    doc = _doc(tmp_path, "packed.cwl", PACKED)
    assert cwl.load_process(doc).tool["class"] == "CommandLineTool"  # #main by default
    assert cwl.load_process(f"{doc}#other").tool["class"] == "ExpressionTool"
    assert cwl.split_fragment(f"{doc}#other") == (doc, "other")
    assert cwl.split_fragment(doc) == (doc, "")


LOADCONTENTS_WF = """\
cwlVersion: v1.2
class: Workflow
requirements: {InlineJavascriptRequirement: {}, StepInputExpressionRequirement: {}}
inputs:
  f: File
outputs: {}
steps:
  count:
    in:
      f: {source: f, loadContents: true}
      n: {valueFrom: "$(inputs.f.contents.split('\\\\n').length - 1)"}
    out: []
    run:
      class: ExpressionTool
      inputs: {f: File, n: int}
      outputs: {}
      expression: "$({})"
"""


def test_step_inputs_with_load_contents_are_read(tmp_path):
    # cwltool.utils has no content_limit_respected_read: every loadContents step failed.
    root = cwl.load_process(_doc(tmp_path, "wf.cwl", LOADCONTENTS_WF))
    data = _doc(tmp_path, "three lines.txt", "a\nb\nc\n")
    raw = cwl.resolve_step_inputs(root, ["count"], {"f": {"class": "File", "location": data.as_uri()}}, {})
    values = cwl.evaluate_step_inputs(root, ["count"], raw)
    assert values["f"]["contents"] == "a\nb\nc\n"
    assert values["n"] == 3


def test_defaults_are_not_copied_into_the_job_order(tmp_path):
    # A float default written 0.00001 reaches the command line as 0.00001 only if cwltool
    # reads it from the document; through JSON it would become 1e-05.
    tool = _doc(
        tmp_path,
        "floats.cwl",
        "cwlVersion: v1.0\nclass: CommandLineTool\nbaseCommand: echo\n"
        "inputs:\n  x: {type: float, default: 0.00001, inputBinding: {}}\noutputs: []\n",
    )
    assert cwl.validate_job_order(cwl.load_process(tool), {}) == {}


ENV_TOOL = """\
cwlVersion: {version}
class: CommandLineTool
requirements:
  EnvVarRequirement: {{envDef: {{A: from-document}}}}
inputs: []
baseCommand: env
outputs: []
"""


def test_requirements_in_the_inputs_object_are_added_to_the_process_and_win(tmp_path):
    path = _doc(tmp_path, "env.cwl", ENV_TOOL.format(version="v1.2"))
    env_var = {"class": "EnvVarRequirement", "envDef": [{"envName": "A", "envValue": "x"}]}
    job = {"cwl:requirements": [env_var]}
    requirements = cwl.input_requirements(job)
    process = cwl.load_process(path, requirements)
    requirement, _ = process.get_requirement("EnvVarRequirement")
    assert requirement["envDef"] == [{"envName": "A", "envValue": "x"}]
    # The cached document without them is untouched.
    plain, _ = cwl.load_process(path).get_requirement("EnvVarRequirement")
    assert plain["envDef"][0]["envValue"] == "from-document"
    # Validation takes the values without the key; the stored job order keeps it for the worker.
    values = cwl.validate_job_order(process, job)
    assert values == {}
    assert cwl.with_input_requirements(values, requirements) == {"cwl:requirements": requirements}
    assert cwl.input_values({"cwl:requirements": requirements, "n": 1}) == {"n": 1}


@pytest.mark.parametrize("bad", [{"class": "EnvVarRequirement"}, ["EnvVarRequirement"], [{"envDef": {}}]])
def test_malformed_input_requirements_say_what_is_expected(bad):
    with pytest.raises(cwl.CwlError, match="must be a list of requirements, each with a class"):
        cwl.input_requirements({"cwl:requirements": bad})


def test_input_requirements_are_refused_for_cwl_v1_0(tmp_path):
    process = cwl.load_process(_doc(tmp_path, "old.cwl", ENV_TOOL.format(version="v1.0")))
    with pytest.raises(cwl.CwlError, match="not in CWL v1.0"):
        cwl.validate_job_order(process, {"cwl:requirements": [{"class": "InlineJavascriptRequirement"}]})


WF_INPUT_LOADCONTENTS = """\
cwlVersion: v1.2
class: Workflow
inputs:
  my_file: {type: File, loadContents: true}
  greeting: {type: string, default: hello}
outputs: {}
steps: []
"""


def test_a_workflows_inputs_are_initialised_as_cwltool_runs_its_steps(tmp_path):
    # cwltool runs a workflow's steps from its initialised input object: defaults filled in,
    # workflow-level loadContents done, File fields normalised.
    root = cwl.load_process(_doc(tmp_path, "wf.cwl", WF_INPUT_LOADCONTENTS))
    data = _doc(tmp_path, "n.txt", "42\n")
    prepared = cwl.validate_job_order(root, {"my_file": {"class": "File", "location": data.as_uri()}})
    assert prepared["greeting"] == "hello"
    assert prepared["my_file"]["contents"] == "42\n"
    assert prepared["my_file"]["nameroot"] == "n" and prepared["my_file"]["nameext"] == ".txt"


def test_a_tools_job_order_is_normalised(tmp_path):
    process = cwl.load_process(_doc(tmp_path, "fmt.cwl", FORMAT_TOOL))
    data = _doc(tmp_path, "whale.txt", "whale")
    job = {"input": {"class": "File", "location": data.as_uri(), "format": "edam:format_2330"}}
    prepared = cwl.validate_job_order(process, job)
    assert prepared["input"]["basename"] == "whale.txt"
    assert prepared["input"]["nameext"] == ".txt"


def test_validating_inputs_leaves_no_folder_in_tmpdir(tmp_path, monkeypatch):
    # cwltool's _init_job made a stage folder with mkdtemp for every validation, never removed.
    from cwltool.context import RuntimeContext

    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    monkeypatch.setattr(RuntimeContext, "tmpdir_prefix", f"{scratch}/")  # cwltool's $TMPDIR default
    process = cwl.load_process(_doc(tmp_path, "fmt.cwl", FORMAT_TOOL))
    data = _doc(tmp_path, "whale.txt", "whale")
    job = {"input": {"class": "File", "location": data.as_uri(), "format": "edam:format_2330"}}
    cwl.validate_job_order(process, job)
    assert list(scratch.iterdir()) == []
