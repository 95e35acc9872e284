"""apiary-cwl-runner: its command line, where it takes documents from, and output relocation."""

import hashlib
import json
from pathlib import Path

import pytest

from workers import cwl_runner

pytestmark = pytest.mark.unit


def test_cwltest_command_line_is_accepted():
    # What cwltest runs: flags first, then the document and the job file as file:// URIs.
    args = cwl_runner.parse_args(
        ["--outdir=/tmp/out", "--quiet", "file:///suite/tests/wf.cwl#main", "file:///suite/tests/job.yml"]
    )
    assert args.outdir == "/tmp/out"
    assert args.quiet is True
    assert args.process == "file:///suite/tests/wf.cwl#main"
    assert args.job == "file:///suite/tests/job.yml"


def test_job_is_optional_and_outdir_defaults_to_the_current_folder():
    args = cwl_runner.parse_args(["tool.cwl"])
    assert args.job is None
    assert args.outdir == "."


def test_batch_system_comes_from_the_flag_then_the_environment(monkeypatch):
    monkeypatch.setenv("APIARY_BATCH_SYSTEM", "slurm")
    assert cwl_runner.parse_args(["tool.cwl"]).batch_system == "slurm"
    assert cwl_runner.parse_args(["tool.cwl"]).poll == 0.5
    assert cwl_runner.parse_args(["--batch-system", "local", "tool.cwl"]).batch_system == "local"
    monkeypatch.delenv("APIARY_BATCH_SYSTEM")
    assert cwl_runner.parse_args(["tool.cwl"]).batch_system == "local"
    assert cwl_runner.parse_args(["tool.cwl"]).poll == 0.2


def test_cwltool_flags_are_accepted_and_ignored_without_moving_the_positionals():
    args = cwl_runner.parse_args(
        [
            "--debug",
            "--tmpdir-prefix",
            "/scratch/t",
            "--tmp-outdir-prefix",
            "/scratch/o",
            "--cachedir",
            "/scratch/cache",
            "--parallel",
            "--no-container",
            "--some-future-flag=1",
            "tool.cwl",
            "job.yml",
        ]
    )
    assert (args.process, args.job) == ("tool.cwl", "job.yml")
    assert args.debug and args.no_container
    assert args.tmpdir_prefix == "/scratch/t"
    assert args.ignored_unknown == ["--some-future-flag=1"]


def test_missing_process_is_a_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        cwl_runner.parse_args(["--quiet"])
    assert exit_info.value.code == 2


def test_fragment_and_file_uri_are_split(tmp_path):
    doc = tmp_path / "packed.cwl"
    doc.write_text("{}")
    assert cwl_runner.split_fragment(f"{doc.as_uri()}#main") == (doc, "main")
    assert cwl_runner.split_fragment(f"{doc}#collision") == (doc, "collision")
    assert cwl_runner.split_fragment(str(doc)) == (doc, "")
    spaced = tmp_path / "a b:c.cwl"
    spaced.write_text("{}")
    assert cwl_runner.split_fragment(spaced.as_uri()) == (spaced, "")


def test_unsupported_messages_are_recognised():
    assert cwl_runner.is_unsupported("Step 'x' uses 'loop', which Apiary does not support yet.")
    assert cwl_runner.is_unsupported("Invalid CWL: wf.cwl:3:1: Unsupported requirement SubworkflowFeature.")
    assert not cwl_runner.is_unsupported("Invalid inputs: expected int")
    assert not cwl_runner.is_unsupported("")


def _sha1(data: bytes) -> str:
    return "sha1$" + hashlib.sha1(data).hexdigest()


def test_outputs_are_copied_into_outdir_and_rewritten(tmp_path):
    run = tmp_path / "runs" / "wf" / "steps" / "main" / "1" / "outdir"
    (run / "sub").mkdir(parents=True)
    (run / "out.txt").write_text("hello\n")
    (run / "sub" / "inner.txt").write_text("inner\n")
    source = tmp_path / "suite" / "whale.txt"  # an input passed through: never moved
    source.parent.mkdir()
    source.write_text("whale\n")
    outputs = {
        "file": {"class": "File", "location": (run / "out.txt").as_uri(), "basename": "out.txt"},
        "dir": {"class": "Directory", "location": (run / "sub").as_uri(), "basename": "sub"},
        "passed": {"class": "File", "location": source.as_uri(), "basename": "whale.txt"},
        "count": 3,
    }
    outdir = tmp_path / "outdir"
    result = cwl_runner.relocate_outputs(outputs, outdir, [tmp_path / "runs"])

    assert result["count"] == 3
    assert result["file"]["location"] == (outdir / "out.txt").as_uri()
    assert result["file"]["path"] == str(outdir / "out.txt")
    assert result["file"]["checksum"] == _sha1(b"hello\n")
    assert result["file"]["size"] == 6
    assert (outdir / "out.txt").read_text() == "hello\n"
    assert result["dir"]["location"] == (outdir / "sub").as_uri()
    assert (outdir / "sub" / "inner.txt").read_text() == "inner\n"
    assert [e["basename"] for e in result["dir"]["listing"]] == ["inner.txt"]
    assert (outdir / "whale.txt").read_text() == "whale\n"
    assert source.exists() and (run / "out.txt").exists()  # copied, not moved
    json.dumps(result)  # plain JSON


def test_literal_file_outputs_are_written_into_outdir(tmp_path):
    outputs = {"lit": {"class": "File", "location": "_:abc", "basename": "lit.txt", "contents": "x"}}
    result = cwl_runner.relocate_outputs(outputs, tmp_path / "out", [tmp_path])
    assert (tmp_path / "out" / "lit.txt").read_text() == "x"
    assert "contents" not in result["lit"]
    assert result["lit"]["checksum"] == _sha1(b"x")


def test_local_queue_runs_enqueued_tasks_in_order(monkeypatch):
    from workers import tasks

    queue = cwl_runner.LocalQueue()
    calls = []
    for name in cwl_runner.LocalQueue.TASKS:
        monkeypatch.setattr(tasks, name, lambda *a, _n=name, **k: calls.append((_n, a, k)))
    queue.install()
    tasks.advance.delay("wf-1")
    tasks.finalize_run.delay(7, 0)
    tasks.cancel_jobs.delay("wf-1")
    assert calls == []  # nothing runs until the loop drains the queue
    assert queue.drain() == 3
    assert calls == [("advance", ("wf-1",), {}), ("finalize_run", (7, 0), {}), ("cancel_jobs", ("wf-1",), {})]


def test_template_database_key_follows_the_migrations():
    key = cwl_runner.migrations_key()
    assert key == cwl_runner.migrations_key()
    assert len(key) == 20


def test_cache_dir_honours_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cwl_runner.cache_dir() == Path(tmp_path) / "apiary" / "cwl-runner"
