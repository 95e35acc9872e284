"""Workflow-level CWL on real Slurm: scatter, nested workflows, conditional steps."""

from urllib.parse import unquote

import pytest

from tests.conftest import EXAMPLES, REPO
from tests.integration.conftest import api_submit, failure_report, wait_finished
from workflows.models import Step

pytestmark = [pytest.mark.integration, pytest.mark.slurm, pytest.mark.django_db(transaction=True)]
FIXTURES = REPO / "tests" / "fixtures"


def _upload(api, folders, main, inputs_text):
    files = {p.name: p.read_bytes() for folder in folders for p in folder.iterdir()}
    body = api_submit(api, files, main=main, inputs_text=inputs_text)
    return wait_finished(body["id"], timeout=300, what=f"{main} to finish")


def _read(location: str) -> str:
    return open(unquote(location[len("file://") :])).read()


def test_scatter_over_50_elements_completes(api, celery_worker):
    workflow = _upload(api, [FIXTURES / "scatter"], "workflow.cwl", f"numbers: {list(range(50))}\n")
    assert workflow.state == "COMPLETED", failure_report(workflow)
    elements = Step.objects.filter(workflow=workflow, parent__name="square")
    assert elements.count() == 50
    assert set(elements.values_list("state", flat=True)) == {"COMPLETED"}
    assert all(r.batch_job_id.isdigit() for e in elements for r in e.runs.all())
    squares = [int(_read(f["location"])) for f in workflow.outputs["squares"]]
    assert squares == [n * n for n in range(50)]  # gathered in element order
    assert _read(workflow.outputs["total"]["location"]).split() == [str(n * n) for n in range(50)]


def test_nested_workflow_scattered_with_a_skipped_conditional_step(api, celery_worker):
    inputs = "patterns: [integer, sed]\ninfile: {class: File, path: lorem.txt}\n"
    workflow = _upload(api, [FIXTURES / "nested", EXAMPLES / "grep-wc"], "outer.cwl", inputs)
    assert workflow.state == "COMPLETED", failure_report(workflow)
    names = set(Step.objects.filter(workflow=workflow).values_list("name", flat=True))
    assert {"per_pattern", "per_pattern[0]", "per_pattern[0]/grep", "per_pattern[1]/wc", "loud"} <= names
    assert Step.objects.get(workflow=workflow, name="loud").state == "SKIPPED"
    counts = [int(_read(f["location"])) for f in workflow.outputs["counts"]]
    assert counts[0] == 87
    assert counts[1] > 0
    assert workflow.outputs["shout"] is None
