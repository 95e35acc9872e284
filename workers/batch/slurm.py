"""Slurm through its commands: ``sbatch``, ``squeue``, ``sacct``, ``scancel``.

A reconcile of N jobs issues at most two commands: one ``squeue`` for all of them and one
``sacct`` for those that ``squeue`` no longer reports as active (finished jobs, whose exit
code only ``sacct`` knows).
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

from django.utils import timezone

from workers.batch import base
from workers.batch.base import BatchError, BatchSystem, JobStatus

TIMEOUT_SECONDS = 30

# Slurm's long state names mapped to ours; anything unlisted counts as FAILED.
_STATE_MAP = {
    "PENDING": base.PENDING,
    "CONFIGURING": base.PENDING,
    "REQUEUED": base.PENDING,
    "REQUEUE_HOLD": base.PENDING,
    "REQUEUE_FED": base.PENDING,
    "RESV_DEL_HOLD": base.PENDING,
    "SUSPENDED": base.RUNNING,
    "RUNNING": base.RUNNING,
    "COMPLETING": base.RUNNING,
    "STAGE_OUT": base.RUNNING,
    "SIGNALING": base.RUNNING,
    "RESIZING": base.RUNNING,
    "COMPLETED": base.COMPLETED,
    "FAILED": base.FAILED,
    "CANCELLED": base.CANCELLED,
    "TIMEOUT": base.TIMEOUT,
    "DEADLINE": base.TIMEOUT,
    "NODE_FAIL": base.NODE_FAIL,
    "BOOT_FAIL": base.BOOT_FAIL,
    "PREEMPTED": base.PREEMPTED,
    "OUT_OF_MEMORY": base.OUT_OF_MEMORY,
}


def _state(raw: str) -> str:
    # sacct prints e.g. "CANCELLED by 0"
    return _STATE_MAP.get(raw.split()[0] if raw else "", base.FAILED)


def _time(raw: str) -> datetime | None:
    if not raw or raw in {"Unknown", "None", "N/A"}:
        return None
    try:
        return timezone.make_aware(datetime.fromisoformat(raw))
    except ValueError:
        return None


def _exit_code(raw: str) -> int | None:
    # "0:0" is exit code 0, signal 0; a job killed by signal 9 shows "0:9".
    if not raw or ":" not in raw:
        return None
    code, signal = raw.split(":", 1)
    try:
        return int(code) if int(signal) == 0 else 128 + int(signal)
    except ValueError:
        return None


class SlurmBatchSystem(BatchSystem):
    name = "slurm"

    def _run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
        self.commands_issued += 1
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)
        except FileNotFoundError:
            raise BatchError(f"{argv[0]} not found: is Slurm installed on this host?") from None
        except subprocess.TimeoutExpired:
            raise BatchError(f"{argv[0]} did not answer within {TIMEOUT_SECONDS} s") from None
        if check and proc.returncode != 0:
            raise BatchError(f"{' '.join(argv[:2])} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def version(self) -> str:
        out = self._run(["sinfo", "--version"]).stdout.strip()
        self._run(["squeue", "-h", "-o", "%i", "-j", "0"], check=False)
        ping = self._run(["scontrol", "ping"], check=False).stdout
        if "UP" not in ping:
            raise BatchError(f"slurmctld is not answering: {ping.strip() or 'no reply'}")
        return out

    def submit(self, script: Path, *, job_name: str, workdir: Path) -> str:
        proc = self._run(
            ["sbatch", "--parsable", f"--job-name={job_name}", f"--chdir={workdir}", str(script)]
        )
        job_id = proc.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise BatchError(f"sbatch returned an unexpected reply: {proc.stdout.strip()!r}")
        return job_id

    def query(self, job_ids: list[str]) -> dict[str, JobStatus]:
        if not job_ids:
            return {}
        result: dict[str, JobStatus] = {}
        proc = self._run(
            ["squeue", "-h", "--states=all", "-o", "%i|%T|%N|%S", "-j", ",".join(job_ids)],
            check=False,
        )
        # squeue exits non-zero when every id is unknown ("Invalid job id specified").
        if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
            raise BatchError(f"squeue failed: {proc.stderr.strip()}")
        for line in proc.stdout.splitlines():
            job_id, state, node, start = (line.split("|") + ["", "", "", ""])[:4]
            mapped = _state(state)
            if mapped in base.ACTIVE_STATES:
                result[job_id] = JobStatus(
                    job_id,
                    mapped,
                    node=node if mapped == base.RUNNING else "",
                    started_at=_time(start) if mapped == base.RUNNING else None,
                )
        rest = [j for j in job_ids if j not in result]
        if rest:
            proc = self._run(
                [
                    "sacct",
                    "-n",
                    "-P",
                    "-X",
                    "-o",
                    "JobIDRaw,State,ExitCode,NodeList,Start,End",
                    "-j",
                    ",".join(rest),
                ]
            )
            for line in proc.stdout.splitlines():
                fields = line.split("|")
                if len(fields) < 6 or fields[0] not in rest:
                    continue
                job_id, state, exit_code, node, start, end = fields[:6]
                node = "" if node in {"None assigned", "(null)"} else node
                result[job_id] = JobStatus(
                    job_id,
                    _state(state),
                    _exit_code(exit_code) if _state(state) not in base.ACTIVE_STATES else None,
                    node,
                    _time(start),
                    _time(end),
                    detail=state,
                )
        return result

    def find(self, job_name: str) -> str | None:
        proc = self._run(["squeue", "-h", "--states=all", "-o", "%i", f"--name={job_name}"], check=False)
        ids = proc.stdout.split()
        if not ids:
            proc = self._run(
                ["sacct", "-n", "-P", "-X", "-o", "JobIDRaw", f"--name={job_name}", "-S", "now-7days"],
                check=False,
            )
            ids = proc.stdout.split()
        return ids[-1] if ids else None

    def cancel(self, job_ids: list[str]) -> None:
        if job_ids:
            self._run(["scancel", *job_ids], check=False)
