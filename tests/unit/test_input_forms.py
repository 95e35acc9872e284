"""The submit page's inputs form, generated from a workflow's input schema (workflows.forms)."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils.datastructures import MultiValueDict

from tests.conftest import EXAMPLES
from workflows import cwl
from workflows.forms import InputsForm, input_specs

pytestmark = pytest.mark.unit

ALL_TYPES = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: echo
inputs:
  title: {type: string, label: "Title", doc: "Shown on the plot"}
  count: {type: int, default: 3}
  ratio: float
  verbose: boolean
  maybe: boolean?
  note: string?
  mode: {type: {type: enum, symbols: [fast, exact]}}
  data: File
  extra: File?
  folder: Directory?
  names: string[]
  sizes: int[]
  reads: File[]
  options: {type: {type: record, fields: {depth: int}}}
outputs: []
"""


@pytest.fixture
def specs(tmp_path):
    doc = tmp_path / "tool.cwl"
    doc.write_text(ALL_TYPES)
    return input_specs(cwl.load_process(doc), doc)


def _form(specs, data, files=None, data_files=("data.txt", "reads/a.fq", "reads/b.fq")):
    return InputsForm(data, MultiValueDict(files or {}), specs=specs, data_files=list(data_files))


def _data(**overrides):
    values = {
        "in_title": "A plot",
        "in_count": "",
        "in_ratio": "0.5",
        "in_verbose": "on",
        "in_maybe": "",
        "in_note": "",
        "in_mode": "exact",
        "in_data__existing": "data.txt",
        "in_names": "alpha\nbeta\n\n",
        "in_sizes": "1\n2",
        "in_options": "depth: 4",
    }
    values.update(overrides)
    data = MultiValueDict({k: [v] for k, v in values.items()})
    data.setlist("in_reads__existing", ["reads/a.fq", "reads/b.fq"])
    return data


def test_specs_follow_the_document_order_with_kinds(specs):
    kinds = [(s.name, s.type_text) for s in specs]
    assert kinds == [
        ("title", "string"),
        ("count", "int"),
        ("ratio", "float"),
        ("verbose", "boolean"),
        ("maybe", "boolean?"),
        ("note", "string?"),
        ("mode", "enum"),
        ("data", "File"),
        ("extra", "File?"),
        ("folder", "Directory?"),
        ("names", "string[]"),
        ("sizes", "int[]"),
        ("reads", "File[]"),
        ("options", "YAML"),
    ]
    by_name = {s.name: s for s in specs}
    assert by_name["mode"].symbols == ["fast", "exact"]
    assert by_name["title"].label == "Title" and by_name["title"].doc == "Shown on the plot"
    assert by_name["count"].has_default and not by_name["count"].required
    assert by_name["note"].optional and not by_name["note"].required
    assert by_name["title"].required


def test_one_field_per_input_and_a_choice_of_uploaded_files_for_file_inputs(specs):
    form = _form(specs, None)
    assert "in_title" in form.fields and form.fields["in_title"].label == "Title"
    assert form.fields["in_count"].initial == 3
    choices = [value for value, _ in form.fields["in_data__existing"].choices]
    assert choices == ["", "data.txt", "reads/a.fq", "reads/b.fq"]
    assert [v for v, _ in form.fields["in_mode"].choices] == ["fast", "exact"]
    assert form.fields["in_ratio"].widget.input_type == "number"


def test_a_filled_form_gives_a_typed_job_order(specs):
    form = _form(specs, _data())
    assert form.is_valid(), form.errors
    order = form.job_order(base="")
    assert order == {
        "title": "A plot",
        "ratio": 0.5,
        "verbose": True,
        "mode": "exact",
        "data": {"class": "File", "path": "data.txt"},
        "names": ["alpha", "beta"],
        "sizes": [1, 2],
        "reads": [{"class": "File", "path": "reads/a.fq"}, {"class": "File", "path": "reads/b.fq"}],
        "options": {"depth": 4},
    }  # count (default), maybe, note, extra, folder (optional, empty) are left to CWL


def test_file_paths_are_relative_to_the_main_documents_folder(specs):
    form = _form(specs, _data())
    assert form.is_valid(), form.errors
    order = form.job_order(base="wf", saved={"extra": ["_inputs/extra/x.txt"]})
    assert order["data"] == {"class": "File", "path": "../data.txt"}
    assert order["extra"] == {"class": "File", "path": "../_inputs/extra/x.txt"}


def test_errors_are_attached_to_their_fields_in_plain_words(specs):
    form = _form(
        specs,
        _data(in_title="", in_ratio="half", in_sizes="1\ntwo", in_options="depth: [", in_data__existing=""),
    )
    assert not form.is_valid()
    assert "This field is required." in form.errors["in_title"]
    assert form.errors["in_ratio"] == ["Enter a number."]
    assert form.errors["in_sizes"] == ["line 2: 'two' is not a whole number."]
    assert form.errors["in_options"][0].startswith("This is not valid YAML")
    assert form.errors["in_data"] == ["Upload a file or choose one from the upload."]


def test_an_uploaded_file_satisfies_a_file_input(specs):
    upload = SimpleUploadedFile("mine.txt", b"hello")
    form = _form(specs, _data(in_data__existing=""), files={"in_data": [upload]})
    assert form.is_valid(), form.errors
    assert form.uploads()["data"][0].name == "mine.txt"
    order = form.job_order(saved={"data": ["_inputs/data/mine.txt"]})
    assert order["data"] == {"class": "File", "path": "_inputs/data/mine.txt"}


def test_an_inputs_file_prefills_the_form(specs):
    form = _form(specs, None)
    form.prefill(
        {
            "title": "From file",
            "names": ["x", "y"],
            "data": {"class": "File", "path": "../data.txt"},
            "maybe": False,
            "options": {"depth": 2},
        },
        base="wf",
    )
    assert form.initial["in_title"] == "From file"
    assert form.initial["in_names"] == "x\ny"
    assert form.initial["in_data__existing"] == "data.txt"
    assert form.initial["in_maybe"] == "false"
    assert form.initial["in_options"].strip() == "depth: 2"


def test_grep_wc_form_accepts_what_cwltool_accepts(tmp_path):
    main = EXAMPLES / "grep-wc" / "slow-grep.cwl"
    process = cwl.load_process(main)
    specs = input_specs(process, main)
    assert [s.name for s in specs] == ["pattern", "infile", "seconds"]
    form = InputsForm(
        MultiValueDict(
            {"in_pattern": ["integer"], "in_infile__existing": ["lorem.txt"], "in_seconds": ["2"]}
        ),
        specs=specs,
        data_files=["lorem.txt"],
    )
    assert form.is_valid(), form.errors
    order = form.job_order()
    resolved = cwl.resolve_locations(order, EXAMPLES / "grep-wc")
    cwl.validate_job_order(process, resolved)  # no error
    assert order == {"pattern": "integer", "infile": {"class": "File", "path": "lorem.txt"}, "seconds": 2}
