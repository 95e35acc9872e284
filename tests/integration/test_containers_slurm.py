"""DockerRequirement steps in Charliecloud on real Slurm (image from scripts/build-test-image)."""

from urllib.parse import unquote

import pytest

from tests.conftest import REPO
from tests.integration.conftest import api_submit, failure_report, wait_finished
from workflows.models import Step, StepRun

pytestmark = [pytest.mark.integration, pytest.mark.slurm, pytest.mark.django_db(transaction=True)]
FIXTURES = REPO / "tests" / "fixtures" / "container"


def _run(api, main, inputs_text=""):
    files = {p.name: p.read_bytes() for p in FIXTURES.iterdir() if p.is_file()}
    body = api_submit(api, files, main=main, inputs_text=inputs_text)
    return wait_finished(body["id"], what=f"{main} to finish")


def _read(location: str) -> str:
    return open(unquote(location[len("file://") :])).read()


def test_docker_steps_run_inside_the_image_and_complete(api, celery_worker):
    workflow = _run(api, "workflow.cwl", "greeting: {class: File, path: greeting.txt}\n")
    assert workflow.state == "COMPLETED", failure_report(workflow)

    # Ran inside the image (its marker file), with the workflow's src/ input bound in.
    assert _read(workflow.outputs["image"]["location"]) == "apiary-busybox\nhello from src\n"
    # The second step (DockerRequirement as a hint) read the first step's outdir in its container.
    assert _read(workflow.outputs["lines"]["location"]).strip() == "2"

    detail = api.get(f"/api/v1/workflows/{workflow.id}/").json()
    for step in detail["steps"]:
        assert step["batch_job_id"].isdigit(), step  # real Slurm jobs
    script = api.get(f"/api/v1/workflows/{workflow.id}/steps/inside/logs/script").json()["text"]
    assert "ch-convert -i tar -o dir" in script
    assert 'ch-run --private-tmp "$IMG"' in script
    assert '-- "${ENTRYPOINT[@]}" cat /etc/apiary-image' in script
    assert 'rm -rf "$IMG_DIR"' in script


def test_missing_image_fails_the_step_before_submission(api, celery_worker):
    workflow = _run(api, "missing.cwl")
    assert workflow.state == "FAILED", failure_report(workflow)
    step = Step.objects.get(workflow=workflow, name="ghost")
    assert step.state == "FAILED"
    assert "no-such-image:1.0" in step.error
    assert "image store" in step.error
    # No batch job was submitted for it.
    assert not StepRun.objects.filter(step=step).exclude(batch_job_id="").exists()
