"""The reconcile alone (no completion notice, no running worker) finds job ends in Slurm.

This is the situation after Apiary was down while jobs ran: nobody received the wrapper's
notice, and only ``squeue``/``sacct`` know what happened. The Celery enqueue is replaced by a
recorder here so that the test drives the scheduler by hand; Slurm and PostgreSQL are real.
"""

from unittest import mock

import pytest

from tests.conftest import example_files
from tests.integration.conftest import wait_for
from workers import scheduler
from workers.batch import get_batch_system
from workflows.models import StepRun, Workflow
from workflows.services import workflow_submit

pytestmark = [pytest.mark.integration, pytest.mark.slurm, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def no_enqueue():
    with (
        mock.patch("workers.tasks.advance.delay") as advance,
        mock.patch("workers.tasks.finalize_run.delay") as finalize,
        mock.patch("workers.tasks.cancel_jobs.delay") as cancel,
    ):
        yield {"advance": advance, "finalize": finalize, "cancel": cancel}


def _drive(workflow_id, batch):
    scheduler.advance(workflow_id)
    scheduler.reconcile(batch)
    workflow = Workflow.objects.get(pk=workflow_id)
    return workflow if workflow.state != "RUNNING" else None


def test_jobs_that_ended_unobserved_are_picked_up_by_reconcile(user, no_enqueue):
    workflow = workflow_submit(
        owner=user, files=example_files("grep-wc"), main="workflow.cwl", inputs="inputs.yml"
    )
    batch = get_batch_system()
    done = wait_for(lambda: _drive(workflow.id, batch), timeout=120, interval=1, what="reconcile-driven run")
    assert done.state == "COMPLETED"
    runs = StepRun.objects.filter(step__workflow=workflow)
    assert runs.count() == 2  # each step ran exactly once
    assert all(r.finalized and r.exit_code == 0 and r.node for r in runs)
    assert "87" in (done.steps.get(name="wc").runs.get().run_dir / "outdir" / "counts.txt").read_text()


def test_reconcile_of_many_jobs_issues_at_most_two_slurm_commands(user, no_enqueue):
    workflows = [
        workflow_submit(owner=user, files=example_files("grep-wc"), main="workflow.cwl", inputs="inputs.yml")
        for _ in range(5)
    ]
    for workflow in workflows:
        scheduler.advance(workflow.id)
    assert StepRun.objects.exclude(batch_job_id="").count() == 5
    batch = get_batch_system()
    batch.commands_issued = 0
    scheduler.reconcile(batch)
    assert batch.commands_issued <= 2
    for workflow in workflows:
        wait_for(lambda w=workflow: _drive(w.id, batch), timeout=120, interval=1, what="workflows to end")


def test_a_lost_sbatch_reply_is_recovered_by_job_name(user, no_enqueue):
    workflow = workflow_submit(
        owner=user, files=example_files("grep-wc"), main="grep.cwl", inputs="inputs.yml"
    )
    scheduler.advance(workflow.id)
    run = StepRun.objects.get(step__workflow=workflow)
    job_id = run.batch_job_id
    # Forget the job id, as if the worker died between sbatch and recording its reply.
    StepRun.objects.filter(pk=run.pk).update(
        batch_job_id="", batch_state="PREPARING", created_at=run.created_at - scheduler.PREPARING_GRACE
    )
    scheduler.reconcile(get_batch_system())
    assert StepRun.objects.get(pk=run.pk).batch_job_id == job_id
    done = wait_for(lambda: _drive(workflow.id, get_batch_system()), timeout=60, interval=1, what="end")
    assert done.state == "COMPLETED"
    assert StepRun.objects.filter(step__workflow=workflow).count() == 1


def test_reconcile_re_enqueues_archiving_lost_for_an_ended_workflow(user, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.APIARY_ARCHIVE_ENABLED = True
    workflow = workflow_submit(
        owner=user, files=example_files("grep-wc"), main="workflow.cwl", inputs="inputs.yml", start=False
    )
    Workflow.objects.filter(pk=workflow.pk).update(
        state="COMPLETED", ended_at=timezone.now() - scheduler.ARCHIVE_GRACE - timedelta(seconds=1)
    )
    recent = workflow_submit(
        owner=user, files=example_files("grep-wc"), main="workflow.cwl", inputs="inputs.yml", start=False
    )
    Workflow.objects.filter(pk=recent.pk).update(state="COMPLETED", ended_at=timezone.now())
    with mock.patch("workers.tasks.archive_workflow.delay") as archive:
        scheduler.reconcile(get_batch_system())
    assert [c.args for c in archive.call_args_list] == [(str(workflow.pk),)]
