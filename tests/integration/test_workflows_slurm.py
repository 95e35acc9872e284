"""CWL workflows end to end: the REST API, a real Celery worker, real Slurm and PostgreSQL."""

import subprocess

import pytest

from tests.conftest import example_files
from tests.integration.conftest import api_submit, failure_report, wait_finished, wait_for
from workflows.models import Step, StepRun, Workflow

pytestmark = [pytest.mark.integration, pytest.mark.slurm, pytest.mark.django_db(transaction=True)]



def _submit(api, example="grep-wc", main="workflow.cwl", inputs="inputs.yml", **extra):
    return api_submit(api, example_files(example), main=main, inputs=inputs, **extra)


def test_grep_wc_completes_with_87_lines(api, celery_worker):
    body = _submit(api)
    assert body["state"] == "RUNNING"
    workflow = wait_finished(body["id"], what="grep-wc to finish")
    assert workflow.state == "COMPLETED", failure_report(workflow)

    detail = api.get(f"/api/v1/workflows/{workflow.id}/").json()
    steps = {s["name"]: s for s in detail["steps"]}
    for name in ("grep", "wc"):
        assert steps[name]["state"] == "COMPLETED"
        assert steps[name]["batch_job_id"].isdigit()  # a real Slurm job id
        assert steps[name]["exit_code"] == 0
    counts = detail["outputs"]["counts"]
    download = api.get(f"/api/v1/workflows/{workflow.id}/files/{counts['path']}")
    assert b"".join(download.streaming_content).strip() == b"87"

    sacct = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-o", "State", "-j", steps["wc"]["batch_job_id"]],
        capture_output=True,
        text=True,
    )
    assert sacct.stdout.strip() == "COMPLETED"
    script = api.get(f"/api/v1/workflows/{workflow.id}/steps/wc/logs/script").json()["text"]
    assert script.startswith("#!/bin/bash\n#SBATCH")
    assert "wc -l" in script


def test_pause_keeps_wc_waiting_until_resumed(api, celery_worker):
    body = _submit(api, main="slow-grep.cwl", inputs="inputs-slow.yml", inputs_text="")
    workflow_id = body["id"]
    wait_for(
        lambda: (
            Step.objects.get(workflow_id=workflow_id, name="grep").state
            in ("SUBMITTED", "PENDING", "RUNNING")
        ),
        what="grep to be submitted",
    )
    assert api.post(f"/api/v1/workflows/{workflow_id}/pause/").status_code == 200
    wait_for(
        lambda: Step.objects.get(workflow_id=workflow_id, name="grep").state == "COMPLETED",
        what="grep to end",
    )
    # Paused: the completion is recorded but wc is not submitted.
    wc = Step.objects.get(workflow_id=workflow_id, name="wc")
    assert Workflow.objects.get(pk=workflow_id).state == "PAUSED"
    assert wc.state in ("WAITING", "READY")
    assert not StepRun.objects.filter(step=wc).exists()

    assert api.post(f"/api/v1/workflows/{workflow_id}/resume/").status_code == 200
    workflow = wait_finished(workflow_id, what="resumed workflow to finish")
    assert workflow.state == "COMPLETED"


def test_cancel_scancels_only_this_workflows_job(api, celery_worker):
    victim = _submit(
        api,
        main="slow-grep.cwl",
        inputs="inputs-slow.yml",
        inputs_text="seconds: 60\npattern: integer\ninfile: {class: File, path: lorem.txt}\n",
    )
    bystander = _submit(
        api,
        main="slow-grep.cwl",
        inputs="inputs-slow.yml",
        inputs_text="seconds: 6\npattern: integer\ninfile: {class: File, path: lorem.txt}\n",
    )

    def job_id(workflow_id):
        run = (
            StepRun.objects.filter(step__workflow_id=workflow_id, step__name="grep")
            .exclude(batch_job_id="")
            .first()
        )
        return run.batch_job_id if run else None

    victim_job = wait_for(lambda: job_id(victim["id"]), what="victim job id")
    bystander_job = wait_for(lambda: job_id(bystander["id"]), what="bystander job id")
    response = api.post(f"/api/v1/workflows/{victim['id']}/cancel/")
    assert response.status_code == 200
    assert response.json()["state"] == "CANCELLED"

    def sacct_state(job):
        out = subprocess.run(
            ["sacct", "-n", "-P", "-X", "-o", "State", "-j", job], capture_output=True, text=True
        )
        return out.stdout.strip()

    wait_for(lambda: sacct_state(victim_job).startswith("CANCELLED"), what="victim job CANCELLED in sacct")
    assert {s.state for s in Step.objects.filter(workflow_id=victim["id"])} == {"CANCELLED"}
    bystander_done = wait_finished(bystander["id"], what="bystander to finish")
    assert bystander_done.state == "COMPLETED"
    assert sacct_state(bystander_job) == "COMPLETED"
    again = api.post(f"/api/v1/workflows/{victim['id']}/cancel/")
    assert again.status_code == 409
    assert "CANCELLED" in again.json()["message"]


def test_failed_step_gives_dep_fail_downstream_and_partial_fail(api, celery_worker):
    from tests.conftest import REPO

    folder = REPO / "tests" / "fixtures" / "partial-fail"
    from django.core.files.uploadedfile import SimpleUploadedFile

    files = [SimpleUploadedFile(p.name, p.read_bytes()) for p in folder.iterdir()]
    response = api.post("/api/v1/workflows/", {"files": files, "main": "workflow.cwl"}, format="multipart")
    assert response.status_code == 201, response.content
    workflow = wait_finished(response.json()["id"], what="partial-fail workflow to finish")
    states = {s.name: s.state for s in workflow.steps.all()}
    assert states == {"fail": "FAILED", "after_fail": "DEP_FAIL", "ok": "COMPLETED", "after_ok": "COMPLETED"}
    assert workflow.state == "PARTIAL_FAIL"
    failed = workflow.steps.get(name="fail")
    assert failed.runs.get().exit_code == 1
    assert "exit code 1" in failed.error


def test_a_job_scancelled_outside_apiary_is_noticed(api, celery_worker):
    inputs = "seconds: 60\npattern: integer\ninfile: {class: File, path: lorem.txt}\n"
    body = _submit(api, main="slow-grep.cwl", inputs="inputs-slow.yml", inputs_text=inputs)

    def grep_job():
        run = StepRun.objects.filter(step__workflow_id=body["id"], step__name="grep").exclude(batch_job_id="")
        return run.first()

    run = wait_for(grep_job, what="grep to be submitted")
    subprocess.run(["scancel", run.batch_job_id], check=True)  # an operator, not Apiary
    workflow = wait_finished(body["id"], what="the reconcile to notice the cancel")
    steps = {s.name: s for s in workflow.steps.all()}
    assert steps["grep"].state == "CANCELLED"
    assert "CANCELLED" in steps["grep"].error
    assert steps["wc"].state == "DEP_FAIL"
    assert workflow.state == "FAILED"
