"""apiary-cwl-runner end to end: the real engine, the local batch system, no web server or worker.

Also ``workflow_submit(local_dir=…)``, the in-place submission the runner uses.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES

pytestmark = pytest.mark.integration

RUNNER = Path(sys.executable).with_name("apiary-cwl-runner")
GREP_WC = EXAMPLES / "grep-wc"


@pytest.fixture
def run_runner(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
        command = [str(RUNNER)] if RUNNER.exists() else [sys.executable, "-m", "workers.cwl_runner"]
        return subprocess.run(
            [*command, "--batch-system", "local", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def test_runner_runs_grep_wc_and_prints_the_output_object(run_runner, tmp_path):
    outdir = tmp_path / "out"
    result = run_runner(
        "--outdir", str(outdir), str(GREP_WC / "workflow.cwl"), str(GREP_WC / "inputs.yml"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)  # the output object and nothing else on stdout
    assert set(outputs) == {"counts"}
    counts = outputs["counts"]
    assert counts["class"] == "File"
    assert counts["location"] == (outdir / "counts.txt").as_uri()
    assert counts["path"] == str(outdir / "counts.txt")
    assert (outdir / "counts.txt").read_text().strip() == "87"
    assert counts["size"] == (outdir / "counts.txt").stat().st_size
    assert counts["checksum"].startswith("sha1$")


def test_runner_takes_the_job_file_from_another_folder(run_runner, tmp_path):
    # The job's relative paths are relative to the job file (here in another tree than the
    # document, and naming a file in its parent folder), not to the document.
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (tmp_path / "lorem.txt").write_bytes((GREP_WC / "lorem.txt").read_bytes())
    (jobs / "job.yml").write_text("pattern: integer\ninfile: {class: File, path: ../lorem.txt}\n")
    result = run_runner(
        "--outdir", str(tmp_path / "out"), str(GREP_WC / "workflow.cwl"), str(jobs / "job.yml"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "counts.txt").read_text().strip() == "87"


def test_runner_refuses_an_invalid_document(run_runner, tmp_path):
    bad = tmp_path / "bad.cwl"
    bad.write_text("cwlVersion: v1.2\nclass: CommandLineTool\ninputs:\n  x: {type: strnig}\noutputs: []\n")
    result = run_runner("--outdir", str(tmp_path / "out"), str(bad), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "strnig" in result.stderr


def test_runner_reports_a_failed_step(run_runner, tmp_path):
    tool = tmp_path / "fail.cwl"
    tool.write_text(
        "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: [sh, -c, 'echo broken >&2; exit 3']\n"
        "inputs: []\noutputs: []\n"
    )
    result = run_runner("--outdir", str(tmp_path / "out"), str(tool), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "exit code 3" in result.stderr
    assert "broken" in result.stderr  # the job's own stderr is shown


def test_runner_answers_33_for_an_unsupported_feature(run_runner, tmp_path, monkeypatch):
    # Apiary builds no images on the cluster: a dockerFile is refused as "not supported".
    monkeypatch.setenv("APIARY_CONTAINER_RUNTIME", "charliecloud")
    tool = tmp_path / "dockerfile.cwl"
    tool.write_text(
        "cwlVersion: v1.2\nclass: CommandLineTool\n"
        "requirements:\n  DockerRequirement:\n    dockerFile: 'FROM debian:stable-slim'\n"
        "    dockerImageId: apiary-test-no-such-image\n"
        "inputs: []\noutputs: []\nbaseCommand: 'true'\n"
    )
    result = run_runner("--outdir", str(tmp_path / "out"), str(tool), cwd=tmp_path)
    assert result.returncode == 33, result.stderr
    assert result.stdout == ""
    assert "dockerFile is not supported" in result.stderr


# --- workflow_submit(local_dir=…) ------------------------------------------------------------


@pytest.mark.django_db
def test_local_dir_submission_uses_the_folder_in_place(user, tmp_path):
    from workflows.services import workflow_cancel, workflow_delete, workflow_submit
    from workflows.storage import source_dir

    folder = tmp_path / "suite"
    (folder / "jobs").mkdir(parents=True)
    for name in ("workflow.cwl", "grep.cwl", "wc.cwl", "lorem.txt"):
        (folder / name).write_bytes((GREP_WC / name).read_bytes())
    (folder / "jobs" / "job.yml").write_text("pattern: integer\ninfile: {class: File, path: ../lorem.txt}\n")

    workflow = workflow_submit(
        owner=user, files={}, local_dir=folder, main="workflow.cwl", inputs="jobs/job.yml", start=False
    )
    src = source_dir(workflow.id)
    assert src.is_symlink() and src.resolve() == folder.resolve()
    assert workflow.main_document == "workflow.cwl"
    assert workflow.inputs["infile"]["location"] == (src / "lorem.txt").as_uri()
    assert {s.name for s in workflow.steps.all()} == {"grep", "wc"}

    workflow_cancel(workflow=workflow)
    workflow_delete(workflow=workflow)
    assert not src.exists()
    assert (folder / "lorem.txt").exists() and (folder / "workflow.cwl").exists()  # never deleted


@pytest.mark.django_db
def test_local_dir_inputs_may_name_any_local_file_but_uploads_may_not(user, tmp_path):
    from workflows.cwl import CwlError
    from workflows.services import workflow_submit

    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "grep.cwl").write_bytes((GREP_WC / "grep.cwl").read_bytes())
    (tmp_path / "elsewhere.txt").write_text("x")
    inputs = "pattern: x\ninfile: {class: File, path: ../elsewhere.txt}\n"
    workflow = workflow_submit(
        owner=user, files={}, local_dir=folder, main="grep.cwl", inputs_text=inputs, start=False
    )
    assert workflow.inputs["infile"]["location"] == (tmp_path / "elsewhere.txt").as_uri()
    assert sorted(p.name for p in folder.iterdir()) == ["grep.cwl"]  # nothing written into it

    with pytest.raises(CwlError, match="outside the submitted files"):
        workflow_submit(
            owner=user,
            files={"grep.cwl": (GREP_WC / "grep.cwl").read_bytes()},
            main="grep.cwl",
            inputs_text=inputs,
            start=False,
        )


@pytest.mark.django_db
def test_uploaded_packed_document_runs_the_named_process(user):
    from workflows.services import workflow_submit

    packed = b"""\
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
    workflow = workflow_submit(owner=user, files={"packed.cwl": packed}, main="packed.cwl#other", start=False)
    assert workflow.main_document == "packed.cwl#other"
    assert workflow.process_class == "ExpressionTool"
