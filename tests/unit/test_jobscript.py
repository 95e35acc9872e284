import subprocess

import pytest

from workers.jobscript import JobSpec, render

pytestmark = pytest.mark.unit


def _spec(tmp_path, **kw):
    defaults = dict(
        job_name="apiary-7",
        title="Apiary workflow demo, step grep, attempt 1",
        run_dir=str(tmp_path),
        workdir=str(tmp_path / "outdir"),
        command=["grep", "integer", "/data/lorem ipsum.txt"],
        environment={"HOME": str(tmp_path / "outdir"), "PATH": "/usr/bin:/bin"},
        stdout=str(tmp_path / "outdir" / "out.txt"),
    )
    defaults.update(kw)
    return JobSpec(**defaults)


def test_render_has_sbatch_header_from_resources(tmp_path):
    text = render(
        _spec(tmp_path, cores=2.5, ram_mib=1000, time_limit_seconds=90, sbatch_options=["--qos=high"])
    )
    assert text.startswith("#!/bin/bash\n#SBATCH --job-name=apiary-7\n")
    assert "#SBATCH --cpus-per-task=3" in text
    assert "#SBATCH --mem=1000M" in text
    assert "#SBATCH --time=3" in text  # 90 s = 2 min, + 1 for staging and set-up
    assert "#SBATCH --qos=high" in text
    assert "timeout --kill-after=10 90 env -i" in text  # the tool's own limit, to the second


def test_a_command_past_its_time_limit_is_stopped_and_fails_saying_why(tmp_path):
    import subprocess

    (tmp_path / "outdir").mkdir()
    spec = _spec(tmp_path, command=["sleep", "30"], stdout=None, time_limit_seconds=1)
    script = tmp_path / "job.sh"
    script.write_text(render(spec))
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 124
    assert (tmp_path / "exit_code").read_text().strip() == "124"
    assert "ran past its time limit of 1 s (ToolTimeLimit)" in result.stderr


def test_render_quotes_arguments_with_spaces(tmp_path):
    text = render(_spec(tmp_path))
    assert "'/data/lorem ipsum.txt'" in text


def test_rendered_script_runs_and_records_exit_code(tmp_path):
    (tmp_path / "outdir").mkdir()
    spec = _spec(tmp_path, command=["sh", "-c", "echo hello; exit 3"])
    script = tmp_path / "job.sh"
    script.write_text(render(spec))
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert proc.returncode == 3
    assert (tmp_path / "exit_code").read_text().strip() == "3"
    assert (tmp_path / "outdir" / "out.txt").read_text() == "hello\n"


def test_callback_carries_the_run_token(tmp_path):
    text = render(
        _spec(tmp_path, callback_url="http://portal/api/v1/runs/7/finished", callback_token="s3cret")
    )
    assert "X-Apiary-Run-Token: s3cret" in text
    assert "http://portal/api/v1/runs/7/finished" in text
    assert "|| true" in text  # a failed notice never fails the job


def test_step_folders_have_no_glob_metacharacters():
    from workflows.storage import safe_step_folder

    # cwltool globs outputs under the run folder: "[0]" would be read as a character class.
    folder = safe_step_folder("outer[2]/square[10]")
    assert not set("[]*?") & set(folder)
    assert folder == "outer@2__square@10"
