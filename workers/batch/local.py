"""The local batch system: job scripts run as detached processes on this host.

It is the embedded default (a laptop, the demo). A job survives a restart of the worker that
started it: it runs in its own session, re-parented to init, and its exit status is written by
this batch system's own wrapper to ``.batch_exit`` in the job's working folder. A record per job
under ``<var>/local-batch/`` maps the job id (the wrapper's pid) to that folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from workers.batch import base
from workers.batch.base import BatchError, BatchSystem, JobStatus

EXIT_FILE = ".batch_exit"
CANCEL_FILE = ".batch_cancelled"


class LocalBatchSystem(BatchSystem):
    name = "local"

    def __init__(self, records_dir: Path):
        super().__init__()
        self.records = Path(records_dir)

    def version(self) -> str:
        self.records.mkdir(parents=True, exist_ok=True)
        return "local (subprocesses)"

    def _record(self, job_id: str) -> dict | None:
        try:
            return json.loads((self.records / f"{job_id}.json").read_text())
        except (OSError, ValueError):
            return None

    def submit(self, script: Path, *, job_name: str, workdir: Path) -> str:
        self.records.mkdir(parents=True, exist_ok=True)
        workdir = Path(workdir)
        script = Path(script)
        out, err = script.with_name("job.out"), script.with_name("job.err")
        exit_file = _q(workdir / EXIT_FILE)
        inner = (
            f"bash {_q(script)} > {_q(out)} 2> {_q(err)}; "
            f"echo $? > {exit_file}.tmp && mv {exit_file}.tmp {exit_file}"
        )
        self.commands_issued += 1
        # `exec setsid` in the background subshell: the job id ($!) is then the pid of the job's
        # own session and process group leader, which cancel() signals as a group.
        proc = subprocess.run(
            [
                "bash",
                "-c",
                f"cd {_q(workdir)} && exec setsid bash -c {_q(inner)} </dev/null >/dev/null 2>&1 & echo $!",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        job_id = proc.stdout.strip()
        if proc.returncode != 0 or not job_id.isdigit():
            raise BatchError(f"could not start {script}: {proc.stderr.strip()}")
        record = {"name": job_name, "workdir": str(workdir), "started": datetime.now(UTC).isoformat()}
        (self.records / f"{job_id}.json").write_text(json.dumps(record))
        _wait_for_own_group(int(job_id))
        return job_id

    def query(self, job_ids: list[str]) -> dict[str, JobStatus]:
        result = {}
        for job_id in job_ids:
            record = self._record(job_id)
            if record is None:
                continue
            workdir = Path(record["workdir"])
            started = datetime.fromisoformat(record["started"])
            if (workdir / CANCEL_FILE).exists():
                result[job_id] = JobStatus(
                    job_id, base.CANCELLED, None, "localhost", started, _mtime(workdir / CANCEL_FILE)
                )
                continue
            exit_file = workdir / EXIT_FILE
            if exit_file.exists():
                try:
                    code = int(exit_file.read_text().strip())
                except ValueError:
                    code = None
                state = base.COMPLETED if code == 0 else base.FAILED
                result[job_id] = JobStatus(job_id, state, code, "localhost", started, _mtime(exit_file))
            elif _alive(int(job_id)):
                result[job_id] = JobStatus(job_id, base.RUNNING, None, "localhost", started)
            else:
                # The process vanished without writing its exit status: the host rebooted or
                # someone killed it. Slurm would call this NODE_FAIL, and so do we (retried).
                result[job_id] = JobStatus(
                    job_id, base.NODE_FAIL, None, "localhost", started, detail="process lost"
                )
        return result

    def find(self, job_name: str) -> str | None:
        if not self.records.is_dir():
            return None
        for path in sorted(self.records.glob("*.json")):
            try:
                if json.loads(path.read_text()).get("name") == job_name:
                    return path.stem
            except (OSError, ValueError):
                continue
        return None

    def cancel(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            record = self._record(job_id)
            if record is None:
                continue
            workdir = Path(record["workdir"])
            if (workdir / EXIT_FILE).exists():
                continue
            (workdir / CANCEL_FILE).touch()
            self.commands_issued += 1
            try:
                os.killpg(int(job_id), signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass


def _q(value) -> str:
    import shlex

    return shlex.quote(str(value))


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _wait_for_own_group(pid: int, timeout: float = 2.0) -> None:
    """Return once the job has called setsid(), so that cancel() can signal its group.

    ``$!`` is known before the background process has run ``setsid``; a cancel in that
    instant found no process group (seen as a flaky test on a loaded machine).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.getpgid(pid) == pid:
                return
        except ProcessLookupError:
            return  # already finished
        time.sleep(0.005)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return True
