import pytest

from workflows.states import (
    STEP_TERMINAL,
    STEP_TRANSITIONS,
    WORKFLOW_FINISHED,
    WORKFLOW_TRANSITIONS,
    StepState,
    WorkflowState,
    can_move,
)

pytestmark = pytest.mark.unit


def test_transition_maps_cover_every_state():
    assert set(WORKFLOW_TRANSITIONS) == set(WorkflowState.values)
    assert set(STEP_TRANSITIONS) == set(StepState.values)


def test_terminal_steps_never_move():
    for state in STEP_TERMINAL:
        assert STEP_TRANSITIONS[state] == set(), state


def test_finished_workflows_can_only_be_archived():
    for state in WORKFLOW_FINISHED - {WorkflowState.ARCHIVED}:
        assert WORKFLOW_TRANSITIONS[state] == {WorkflowState.ARCHIVED}


@pytest.mark.parametrize(
    "old,new,allowed",
    [
        (WorkflowState.RUNNING, WorkflowState.PAUSED, True),
        (WorkflowState.PAUSED, WorkflowState.RUNNING, True),
        (WorkflowState.COMPLETED, WorkflowState.RUNNING, False),
        (WorkflowState.CANCELLED, WorkflowState.PAUSED, False),
    ],
)
def test_workflow_moves(old, new, allowed):
    assert can_move(WORKFLOW_TRANSITIONS, old, new) is allowed


def test_step_retry_goes_back_to_ready_from_batch_states():
    for state in (StepState.SUBMITTED, StepState.PENDING, StepState.RUNNING):
        assert can_move(STEP_TRANSITIONS, state, StepState.READY)
    assert not can_move(STEP_TRANSITIONS, StepState.WAITING, StepState.RUNNING)
