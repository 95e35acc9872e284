"""The batch-system seam (after BEE's worker interface: submit / query / cancel)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


class BatchError(Exception):
    """The batch system refused or failed a command; the message says which and why."""


# Normalised job states. ``lost`` states are retried as new run attempts.
PENDING, RUNNING = "PENDING", "RUNNING"
COMPLETED, FAILED, CANCELLED, TIMEOUT = "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"
NODE_FAIL, BOOT_FAIL, PREEMPTED, OUT_OF_MEMORY = "NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "OUT_OF_MEMORY"
ACTIVE_STATES = frozenset({PENDING, RUNNING})
RETRYABLE_STATES = frozenset({NODE_FAIL, BOOT_FAIL, PREEMPTED})


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: str
    exit_code: int | None = None
    node: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    detail: str = ""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def summary(self) -> str:
        """The state with the batch system's own words, e.g. ``NODE_FAIL (process lost)``."""
        if not self.detail or self.detail.startswith(self.state):
            return self.detail or self.state
        return f"{self.state} ({self.detail})"


class BatchSystem(ABC):
    name: str = ""

    def __init__(self) -> None:
        # Counted so that benchmarks can report the commands issued per reconcile cycle.
        self.commands_issued = 0

    @abstractmethod
    def version(self) -> str:
        """The batch system's version; raises BatchError when it does not answer."""

    @abstractmethod
    def submit(self, script: Path, *, job_name: str, workdir: Path) -> str:
        """Submit a job script; returns the job id."""

    @abstractmethod
    def query(self, job_ids: list[str]) -> dict[str, JobStatus]:
        """States of many jobs at once (a bounded number of commands, never one per job).

        Jobs the batch system no longer knows are absent from the result.
        """

    @abstractmethod
    def find(self, job_name: str) -> str | None:
        """The id of a job by name, to recover from a submission whose reply was lost."""

    @abstractmethod
    def cancel(self, job_ids: list[str]) -> None:
        """Cancel these jobs (and no other)."""
