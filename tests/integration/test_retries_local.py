"""Lost jobs are retried as new attempts, a bounded number of times.

A job whose process disappears without an exit status (the node died) is a real fault on the
local batch system: SIGKILL its whole process group. Slurm reports the same as NODE_FAIL.
"""

import os
import signal
from unittest import mock

import pytest

from tests.conftest import example_files
from tests.integration.conftest import wait_for
from workers import scheduler
from workers.batch import get_batch_system
from workers.batch.local import _alive
from workflows.models import Step, StepRun, Workflow
from workflows.services import workflow_submit

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def local_batch(settings):
    settings.APIARY_BATCH_SYSTEM = "local"
    settings.APIARY_RETRY_LIMIT = 2
    with (
        mock.patch("workers.tasks.advance.delay"),
        mock.patch("workers.tasks.finalize_run.delay"),
        mock.patch("workers.tasks.cancel_jobs.delay"),
    ):
        yield get_batch_system("local")


def _submit(user, seconds):
    inputs = f"seconds: {seconds}\npattern: integer\ninfile: {{class: File, path: lorem.txt}}\n"
    return workflow_submit(
        owner=user, files=example_files("grep-wc"), main="slow-grep.cwl", inputs_text=inputs
    )


def _kill_latest(workflow, attempt):
    run = StepRun.objects.get(step__workflow=workflow, step__name="grep", attempt=attempt)
    assert run.batch_job_id
    os.killpg(int(run.batch_job_id), signal.SIGKILL)
    # The group dies asynchronously; the reconcile must see it gone, not dying.
    wait_for(lambda: not _alive(int(run.batch_job_id)), timeout=30, interval=0.05, what="the job to die")
    return run


def test_a_lost_job_is_retried_and_the_workflow_completes(user, local_batch):
    workflow = _submit(user, seconds=2)
    scheduler.advance(workflow.id)
    _kill_latest(workflow, 1)
    scheduler.reconcile(local_batch)  # sees the vanished process: NODE_FAIL -> READY
    grep = Step.objects.get(workflow=workflow, name="grep")
    assert grep.state == "READY"
    assert grep.events.filter(new_state="READY", reason__contains="NODE_FAIL").exists()

    def done():
        scheduler.advance(workflow.id)
        scheduler.reconcile(local_batch)
        w = Workflow.objects.get(pk=workflow.pk)
        return w if w.state != "RUNNING" else None

    assert wait_for(done, timeout=120, interval=0.5, what="completion").state == "COMPLETED"
    attempts = StepRun.objects.filter(step=grep).order_by("attempt")
    assert [(r.attempt, r.batch_state_detail) for r in attempts][0] == (1, "NODE_FAIL (process lost)")
    assert attempts.count() == 2
    assert attempts.last().exit_code == 0


def test_retries_are_bounded(user, local_batch):
    workflow = _submit(user, seconds=60)
    for attempt in (1, 2, 3):
        scheduler.advance(workflow.id)
        _kill_latest(workflow, attempt)
        scheduler.reconcile(local_batch)
    grep = Step.objects.get(workflow=workflow, name="grep")
    assert grep.state == "FAILED"
    assert "NODE_FAIL" in grep.error
    assert grep.runs.count() == 3
    scheduler.advance(workflow.id)
    assert Workflow.objects.get(pk=workflow.pk).state == "FAILED"
    assert Step.objects.get(workflow=workflow, name="wc").state == "DEP_FAIL"


def test_a_step_that_moved_while_its_outputs_were_collected_still_completes(user, local_batch):
    """Regression: the reconcile recorded RUNNING between finalize's read and its write; the run
    was closed but the step's compare-and-swap failed, leaving the step RUNNING for ever."""
    from workers import cwl_job
    from workers.batch.base import RUNNING, JobStatus

    workflow = workflow_submit(
        owner=user, files=example_files("grep-wc"), main="grep.cwl", inputs="inputs.yml"
    )
    scheduler.advance(workflow.id)
    run = StepRun.objects.get(step__workflow=workflow)
    wait_for(lambda: (run.run_dir / "exit_code").exists(), what="the job to end")
    real_collect = cwl_job.collect_outputs

    def collect_while_reconcile_moves_the_step(*args, **kwargs):
        scheduler._record_progress(run, JobStatus(run.batch_job_id, RUNNING, node="localhost"))
        return real_collect(*args, **kwargs)

    with mock.patch.object(cwl_job, "collect_outputs", collect_while_reconcile_moves_the_step):
        assert scheduler.finalize_run(run.pk)
    step = Step.objects.get(pk=run.step_id)
    assert step.state == "COMPLETED"
    assert list(step.events.values_list("new_state", flat=True)) == [
        "READY",
        "SUBMITTED",
        "RUNNING",
        "COMPLETED",
    ]
