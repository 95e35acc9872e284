"""A step whose job cannot be built fails at once, whatever cwltool raised.

Found by the CWL conformance suite: cwltool raises schema-salad's ``ValidationException`` (not a
``WorkflowException``) for a staged input file that does not exist. The step was left SUBMITTED
with a run never given to the batch system; the reconcile "recovered" it every two minutes and
built it again, for ever, so the workflow never ended.
"""

from unittest import mock

import pytest
from schema_salad.exceptions import ValidationException

from tests.conftest import example_files
from workers import cwl_job, scheduler
from workflows.models import Step, StepRun, Workflow
from workflows.services import workflow_submit

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def no_enqueue(settings):
    settings.APIARY_BATCH_SYSTEM = "local"
    with (
        mock.patch("workers.tasks.advance.delay"),
        mock.patch("workers.tasks.finalize_run.delay"),
        mock.patch("workers.tasks.cancel_jobs.delay"),
    ):
        yield


@pytest.mark.parametrize(
    "error",
    [
        ValidationException("[Errno 2] No such file or directory: '/runs/x/src/lorem.txt'"),
        cwl_job.JobBuildError("an expression failed"),
        RuntimeError("something unexpected"),
    ],
    ids=["validation", "job-build", "other"],
)
def test_a_job_that_cannot_be_built_fails_its_step_and_the_workflow_ends(user, no_enqueue, error):
    workflow = workflow_submit(
        owner=user, files=example_files("grep-wc"), main="workflow.cwl", inputs="inputs.yml"
    )
    with mock.patch.object(cwl_job, "prepare_command_job", side_effect=error):
        scheduler.advance(workflow.id)

    grep = Step.objects.get(workflow=workflow, name="grep")
    assert grep.state == "FAILED"
    assert str(error) in grep.error
    run = StepRun.objects.get(step=grep)
    assert run.finalized and run.batch_state == "ENDED" and run.batch_state_detail == "not submitted"
    assert Step.objects.get(workflow=workflow, name="wc").state == "DEP_FAIL"
    assert Workflow.objects.get(pk=workflow.pk).state == "FAILED"
