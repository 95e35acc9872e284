"""The workflow and step state machines: states, the one transition map, named groups.

Every state change goes through :func:`workflows.services.workflow_transition` or
:func:`workflows.services.step_transition`, which check a move against these maps and write it
with compare-and-swap.
"""

from django.db import models


class WorkflowState(models.TextChoices):
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    PARTIAL_FAIL = "PARTIAL_FAIL"
    CANCELLED = "CANCELLED"
    ARCHIVED = "ARCHIVED"


W = WorkflowState
WORKFLOW_TRANSITIONS: dict[str, set[str]] = {
    W.SUBMITTED: {W.RUNNING, W.CANCELLED, W.FAILED},
    W.RUNNING: {W.PAUSED, W.COMPLETED, W.FAILED, W.PARTIAL_FAIL, W.CANCELLED},
    W.PAUSED: {W.RUNNING, W.CANCELLED, W.COMPLETED, W.FAILED, W.PARTIAL_FAIL},
    W.COMPLETED: {W.ARCHIVED},
    W.FAILED: {W.ARCHIVED},
    W.PARTIAL_FAIL: {W.ARCHIVED},
    W.CANCELLED: {W.ARCHIVED},
    W.ARCHIVED: set(),
}
WORKFLOW_ACTIVE = frozenset({W.SUBMITTED, W.RUNNING, W.PAUSED})
WORKFLOW_FINISHED = frozenset({W.COMPLETED, W.FAILED, W.PARTIAL_FAIL, W.CANCELLED, W.ARCHIVED})
# The states a run ends in. Each end is archived (then ARCHIVED, keeping it as ``outcome``).
WORKFLOW_ENDED = (W.COMPLETED, W.FAILED, W.PARTIAL_FAIL, W.CANCELLED)


class StepState(models.TextChoices):
    WAITING = "WAITING"
    READY = "READY"
    SUBMITTED = "SUBMITTED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    DEP_FAIL = "DEP_FAIL"
    SKIPPED = "SKIPPED"  # a `when` condition evaluated to false


S = StepState
_STEP_ENDS = {S.COMPLETED, S.FAILED, S.TIMEOUT, S.CANCELLED}
STEP_TRANSITIONS: dict[str, set[str]] = {
    S.WAITING: {S.READY, S.DEP_FAIL, S.CANCELLED, S.SKIPPED},
    # READY -> RUNNING: a nested workflow or scatter starts its children.
    S.READY: {S.SUBMITTED, S.RUNNING, S.COMPLETED, S.FAILED, S.CANCELLED, S.SKIPPED},
    # SUBMITTED -> READY: a retry after BOOT_FAIL/NODE_FAIL/PREEMPTED (a new run attempt).
    S.SUBMITTED: {S.PENDING, S.RUNNING, S.READY} | _STEP_ENDS,
    S.PENDING: {S.RUNNING, S.READY} | _STEP_ENDS,
    S.RUNNING: {S.READY} | _STEP_ENDS,
    S.COMPLETED: set(),
    S.FAILED: set(),
    S.TIMEOUT: set(),
    S.CANCELLED: set(),
    S.DEP_FAIL: set(),
    S.SKIPPED: set(),
}
STEP_IN_BATCH = frozenset({S.SUBMITTED, S.PENDING, S.RUNNING})
STEP_TERMINAL = frozenset({S.COMPLETED, S.FAILED, S.TIMEOUT, S.CANCELLED, S.DEP_FAIL, S.SKIPPED})
STEP_SUCCEEDED = frozenset({S.COMPLETED, S.SKIPPED})
STEP_UNSUCCESSFUL = frozenset({S.FAILED, S.TIMEOUT, S.CANCELLED, S.DEP_FAIL})


def can_move(transitions: dict[str, set[str]], old: str, new: str) -> bool:
    return new in transitions.get(old, set())
