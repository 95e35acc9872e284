"""Nothing is lost when the worker dies: a real worker is SIGKILLed mid-workflow and restarted."""

import subprocess

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import example_files
from tests.integration.conftest import failure_report, wait_for
from workflows.models import StepRun, Workflow

pytestmark = [pytest.mark.integration, pytest.mark.slurm, pytest.mark.django_db(transaction=True)]


def _sacct_state(job_id: str) -> str:
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-o", "State", "-j", job_id], capture_output=True, text=True
    )
    return out.stdout.strip()


def test_worker_killed_mid_workflow_finishes_after_restart_with_no_step_run_twice(api, private_worker):
    private_worker.start()
    files = [SimpleUploadedFile(n, d) for n, d in example_files("grep-wc").items()]
    inputs = "seconds: 5\npattern: integer\ninfile: {class: File, path: lorem.txt}\n"
    response = api.post(
        "/api/v1/workflows/",
        {"files": files, "main": "slow-grep.cwl", "inputs_text": inputs},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    workflow_id = response.json()["id"]

    def grep_job():
        run = StepRun.objects.filter(step__workflow_id=workflow_id, step__name="grep").exclude(
            batch_job_id=""
        )
        return run.first()

    run = wait_for(grep_job, what="grep to be submitted")
    private_worker.kill()
    # The job ends while no worker runs; its completion notice is queued, nobody consumes it.
    wait_for(lambda: _sacct_state(run.batch_job_id) == "COMPLETED", timeout=120, what="grep job to end")
    assert Workflow.objects.get(pk=workflow_id).state == "RUNNING"

    private_worker.start()
    workflow = wait_for(
        lambda: (w := Workflow.objects.get(pk=workflow_id)).state != "RUNNING" and w,
        what="workflow to finish",
    )
    assert workflow.state == "COMPLETED", failure_report(workflow)
    runs = StepRun.objects.filter(step__workflow_id=workflow_id)
    assert sorted(runs.values_list("step__name", flat=True)) == ["grep", "wc"]  # each ran exactly once
    assert all(r.finalized and r.exit_code == 0 for r in runs)
