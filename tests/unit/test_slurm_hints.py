import pytest

from tests.conftest import EXAMPLES
from workers.cwl_job import JobBuildError
from workers.slurm_hints import sbatch_options
from workflows import cwl

pytestmark = pytest.mark.unit

TOOL = """cwlVersion: v1.2
class: CommandLineTool
$namespaces:
  beeflow: https://github.com/lanl/bee/
  apiary: "urn:apiary:cwl#"
hints:
%s
baseCommand: echo
inputs: []
outputs: []
"""


def _load(tmp_path, hints: str):
    path = tmp_path / "tool.cwl"
    path.write_text(TOOL % hints)
    return cwl.load_process(path)


def test_bee_hints_become_sbatch_options(tmp_path):
    tool = _load(
        tmp_path,
        "  beeflow:SlurmRequirement: {timeLimit: '00:10:00', partition: debug}\n"
        "  beeflow:MPIRequirement: {nodes: 2, ntasks: 8}\n",
    )
    assert sorted(sbatch_options(tool)) == ["--nodes=2", "--ntasks=8", "--partition=debug", "--time=00:10:00"]


def test_apiary_hint_with_extra_options(tmp_path):
    tool = _load(tmp_path, "  apiary:SlurmRequirement: {qos: normal, account: proj1, extra: [--exclusive]}\n")
    assert sbatch_options(tool) == ["--qos=normal", "--account=proj1", "--exclusive"]


@pytest.mark.parametrize(
    "hint,message",
    [
        ("  apiary:SlurmRequirement: {partition: 'debug; rm -rf /'}\n", "is not valid"),
        ("  apiary:SlurmRequirement: {colour: blue}\n", "no field 'colour'"),
        ("  apiary:SlurmRequirement: {extra: ['exclusive']}\n", "must look like"),
    ],
)
def test_malformed_hints_are_refused(tmp_path, hint, message):
    with pytest.raises(JobBuildError, match=message):
        sbatch_options(_load(tmp_path, hint))


def test_tools_without_hints_add_nothing():
    assert sbatch_options(cwl.load_process(EXAMPLES / "grep-wc" / "grep.cwl")) == []
