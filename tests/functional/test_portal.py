"""The portal in a real browser (Chromium via Playwright) against a live server, a real Celery
worker and real Slurm: sign in, submit through the inputs form, follow the DAG and the logs,
download an output, pause/resume/cancel with the buttons, and nothing of another user's.

Every page visited is saved as a screenshot in ``artefacts/screenshots/``.
"""

import re
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import EXAMPLES, example_files
from tests.functional.conftest import TABLET, sign_in, wait_for_htmx
from tests.integration.conftest import wait_for
from workflows.models import StepRun, Workflow
from workflows.services import workflow_submit

pytestmark = [
    pytest.mark.functional,
    pytest.mark.integration,
    pytest.mark.slurm,
    pytest.mark.django_db(transaction=True),
]

GREP_WC = EXAMPLES / "grep-wc"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TICKER = Path(__file__).parent / "ticker.cwl"
IN_BATCH = re.compile(r"^(SUBMITTED|PENDING|RUNNING)$")
LONG = 180_000  # ms: a Slurm job's life, generously (behaviour, not speed)
# A finished workflow is archived by the worker shortly after it ends (APIARY_ARCHIVE_ENABLED).
COMPLETED = re.compile(r"^(COMPLETED|ARCHIVED)$")
CANCELLED = re.compile(r"^(CANCELLED|ARCHIVED)$")


def node(page, step: str):
    """The DAG node of a step (its ``data-state`` is the step's state)."""
    return page.locator(f'svg.dag g.node[data-step="{step}"]')


def slow_grep(owner, seconds: int, name: str) -> Workflow:
    inputs = f"pattern: integer\ninfile: {{class: File, path: lorem.txt}}\nseconds: {seconds}\n"
    return workflow_submit(
        owner=owner, files=example_files("grep-wc"), main="slow-grep.cwl", inputs_text=inputs, name=name
    )


def settled(workflow) -> str:
    """The state a finished workflow keeps: ARCHIVED once archived, if archiving is on."""
    from django.conf import settings

    if getattr(settings, "APIARY_ARCHIVE_ENABLED", False):
        wait_for(
            lambda: Workflow.objects.get(pk=workflow.pk).state == "ARCHIVED",
            timeout=LONG / 1000,
            what="the workflow to be archived",
        )
    return Workflow.objects.get(pk=workflow.pk).state


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_submit_grep_wc_through_the_form_and_follow_it_to_87(page, user, celery_worker, screenshots):
    sign_in(page, "alice", "alice-password", screenshots)
    expect(page).to_have_title("Workflows · Apiary")
    expect(page.get_by_text("No workflows yet.")).to_be_visible()
    screenshots(page, "02-dashboard-empty")

    # Stage 1: the CWL documents only; the data comes with the form.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Submit").click()
    expect(page).to_have_title("Submit a workflow · Apiary")
    page.get_by_label("CWL documents and the data they use").set_input_files(
        [GREP_WC / "workflow.cwl", GREP_WC / "grep.cwl", GREP_WC / "wc.cwl"]
    )
    page.get_by_label("Name").fill("grep-wc from the form")
    screenshots(page, "03-submit-upload")
    page.get_by_role("button", name="Continue to the inputs form").click()

    # Stage 2: one field per workflow input. Leave the pattern out first: a plain-words error
    # next to it, and the file uploaded meanwhile is kept.
    page.wait_for_url(re.compile(r"/workflows/new/[\w-]+$"))
    expect(page.get_by_label("pattern")).to_be_visible()
    expect(page.locator("#input-pattern code.type")).to_have_text("string")
    expect(page.locator("#input-infile code.type")).to_have_text("File")
    page.locator("#id_in_infile").set_input_files(GREP_WC / "lorem.txt")
    screenshots(page, "04-submit-inputs-form")
    page.get_by_role("button", name="Submit the workflow").click()
    expect(page.locator("#input-pattern .field-error")).to_have_text(re.compile("required"))
    expect(page.get_by_label("pattern")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#id_in_infile__existing")).to_have_value("_inputs/infile/lorem.txt")
    assert "Traceback" not in page.content()
    screenshots(page, "05-submit-inputs-errors")

    page.get_by_label("pattern").fill("integer")
    page.get_by_role("button", name="Submit the workflow").click()

    # The workflow page: the DAG turns complete, live, without reloading the page.
    page.wait_for_url(re.compile(r"/workflows/[0-9a-f-]{36}$"))
    workflow = Workflow.objects.get(name="grep-wc from the form")
    page.evaluate("window.notReloaded = true")
    expect(node(page, "grep")).to_be_visible()
    screenshots(page, "06-workflow-running")
    expect(node(page, "wc")).to_have_attribute("data-state", "COMPLETED", timeout=LONG)
    expect(node(page, "grep")).to_have_attribute("data-state", "COMPLETED")
    expect(page.locator("#workflow-state")).to_have_text(COMPLETED)
    assert page.evaluate("window.notReloaded === true")
    expect(page).to_have_title(re.compile(r"^grep-wc from the form \((COMPLETED|ARCHIVED)\) · Apiary$"))
    expect(page.locator("svg.dag path.edge")).to_have_count(1)
    for run in StepRun.objects.filter(step__workflow=workflow):
        expect(page.locator("table.steps")).to_contain_text(run.batch_job_id)  # the Slurm job ids
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    expect(page.get_by_role("button", name="Cancel…")).to_have_count(0)
    screenshots(page, "07-workflow-completed")

    # A step's log: from the graph (grep), then the script of wc from the table.
    page.locator('svg.dag a:has(g[data-step="grep"])').click()
    expect(page.locator("#log-viewer")).to_have_attribute("data-step", "grep")
    page.get_by_role("navigation", name="Log streams of grep").get_by_role("link", name="script").click()
    expect(page.locator("#log-viewer")).to_have_attribute("data-stream", "script")
    expect(page.locator("#log-text")).to_contain_text("#SBATCH")
    expect(page.locator("#log-text")).to_contain_text("grep")
    page.get_by_role("link", name="script of wc").click()
    expect(page.locator("#log-viewer")).to_have_attribute("data-step", "wc")
    expect(page.locator("#log-text")).to_contain_text("wc -l")
    expect(page.locator("#log-title")).to_be_focused()
    assert "step=wc&stream=script" in page.url
    screenshots(page, "08-step-log")

    # The output, downloaded through the page: 87 matching lines.
    with page.expect_download() as download:
        page.get_by_role("link", name="counts.txt").click()
    assert Path(download.value.path()).read_text().strip() == "87"

    # The dashboard: state, progress, filters.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Workflows").click()
    row = page.locator(f"#wf-{workflow.id}")
    expect(row.locator(".badge")).to_have_text(COMPLETED)
    expect(row).to_contain_text("2 / 2")
    screenshots(page, "09-dashboard")
    page.get_by_label("State").select_option(settled(workflow))
    page.get_by_label("Name contains").fill("form")
    page.get_by_role("button", name="Filter").click()
    expect(row).to_be_visible()
    page.get_by_label("State").select_option("FAILED")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No workflow matches these filters.")).to_be_visible()

    # Tablet width: everything still fits without sideways scrolling.
    page.set_viewport_size(TABLET)
    page.goto("/")
    assert no_horizontal_scroll(page)
    screenshots(page, "10-dashboard-tablet")
    page.goto(f"/workflows/{workflow.id}?step=wc&stream=script")
    expect(page.locator("#log-text")).to_contain_text("wc -l")
    assert no_horizontal_scroll(page)
    screenshots(page, "11-workflow-tablet")


def test_the_log_viewer_follows_a_running_job(page, user, celery_worker, screenshots):
    workflow = workflow_submit(owner=user, files={"ticker.cwl": TICKER.read_bytes()}, name="ticker")
    sign_in(page, "alice", "alice-password")
    page.goto(f"/workflows/{workflow.id}?step=main&stream=stdout")
    log = page.locator("#log-text")
    expect(log).to_contain_text("tick 2", timeout=LONG)
    expect(page.locator("#log-status")).to_contain_text("following")
    expect(node(page, "main")).to_have_attribute("data-state", "RUNNING")
    screenshots(page, "12-log-following")
    expect(log).to_contain_text("done", timeout=LONG)
    # The whole output once, in order, and the viewer stopped polling once the step ended.
    expect(page.locator("#log-poller[hx-get]")).to_have_count(0, timeout=LONG)
    text = log.inner_text()
    assert [line for line in text.splitlines() if line.startswith("tick")] == [
        f"tick {i}" for i in range(1, 9)
    ]
    expect(page.locator("#log-status")).to_contain_text("exit code 0")
    page.get_by_role("navigation", name="Log streams of main").get_by_role("link", name="stderr").click()
    expect(page.locator("#log-text")).to_contain_text("starting")


def test_pause_then_resume_slow_grep_with_the_buttons(page, user, celery_worker, screenshots):
    workflow = slow_grep(user, seconds=8, name="slow-grep paused")
    sign_in(page, "alice", "alice-password")
    page.goto(f"/workflows/{workflow.id}")
    expect(node(page, "grep")).to_have_attribute("data-state", IN_BATCH, timeout=LONG)

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#workflow-state")).to_have_text("PAUSED")
    expect(page.get_by_role("status").first).to_contain_text("Workflow paused.")
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    # Running jobs finish while paused; nothing new is submitted.
    expect(node(page, "grep")).to_have_attribute("data-state", "COMPLETED", timeout=LONG)
    expect(node(page, "wc")).to_have_attribute("data-state", re.compile("^(WAITING|READY)$"))
    assert not StepRun.objects.filter(step__workflow=workflow, step__name="wc").exists()
    screenshots(page, "13-workflow-paused")

    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#workflow-state")).to_have_text(re.compile("RUNNING|COMPLETED"))
    expect(page.locator("#workflow-state")).to_have_text(COMPLETED, timeout=LONG)
    expect(node(page, "wc")).to_have_attribute("data-state", "COMPLETED")


def test_cancel_slow_grep_asks_first_then_kills_the_job(page, user, celery_worker, screenshots):
    workflow = slow_grep(user, seconds=120, name="slow-grep cancelled")
    sign_in(page, "alice", "alice-password")
    page.goto(f"/workflows/{workflow.id}")
    expect(node(page, "grep")).to_have_attribute("data-state", "RUNNING", timeout=LONG)
    screenshots(page, "14-workflow-before-cancel")

    # Dismissing the confirmation changes nothing.
    messages = []
    page.once("dialog", lambda dialog: (messages.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Cancel…").click()
    wait_for_htmx(page)
    assert messages and "Cancel workflow slow-grep cancelled?" in messages[0]
    workflow.refresh_from_db()
    assert workflow.state == "RUNNING"

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel…").click()
    expect(page.locator("#workflow-state")).to_have_text(CANCELLED)
    expect(node(page, "grep")).to_have_attribute("data-state", "CANCELLED")
    expect(node(page, "wc")).to_have_attribute("data-state", "CANCELLED")
    expect(page.locator(".actions button")).to_have_count(0)
    screenshots(page, "15-workflow-cancelled")

    job_id = StepRun.objects.get(step__workflow=workflow, step__name="grep").batch_job_id
    assert job_id.isdigit()

    def gone():
        out = subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True)
        return out.returncode != 0 or not out.stdout.strip()

    wait_for(gone, timeout=LONG / 1000, what=f"Slurm job {job_id} to be cancelled")


def test_a_scatter_of_nested_workflows_is_drawn_inside_its_steps(page, user, celery_worker, screenshots):
    files = example_files("grep-wc") | {"outer.cwl": (FIXTURES / "nested" / "outer.cwl").read_bytes()}
    inputs = "patterns: [integer, dolor]\ninfile: {class: File, path: lorem.txt}\n"
    workflow = workflow_submit(owner=user, files=files, main="outer.cwl", inputs_text=inputs, name="nested")
    sign_in(page, "alice", "alice-password")
    page.goto(f"/workflows/{workflow.id}")
    expect(page.locator("#workflow-state")).to_have_text(COMPLETED, timeout=LONG)
    expect(node(page, "loud")).to_have_attribute("data-state", "SKIPPED")

    def box(step):
        return node(page, step).locator("rect").first.bounding_box()

    def inside(inner, outer):
        return (
            outer["x"] < inner["x"]
            and inner["x"] + inner["width"] < outer["x"] + outer["width"]
            and outer["y"] < inner["y"]
            and inner["y"] + inner["height"] < outer["y"] + outer["height"]
        )

    for i in (0, 1):
        element = f"per_pattern[{i}]"
        expect(node(page, f"{element}/wc")).to_have_attribute("data-state", "COMPLETED")
        assert inside(box(element), box("per_pattern"))
        assert inside(box(f"{element}/grep"), box(element))
        assert box(f"{element}/grep")["x"] < box(f"{element}/wc")["x"]  # grep -> wc, left to right
    assert page.locator("svg.dag path.edge").count() == 2  # one grep -> wc edge per element
    screenshots(page, "21-workflow-nested-scatter")


def test_another_users_workflow_is_not_found(page, user, other_user, screenshots):
    theirs = workflow_submit(
        owner=other_user,
        files=example_files("grep-wc"),
        main="workflow.cwl",
        inputs="inputs.yml",
        name="bobs-private-run",
        start=False,
    )
    sign_in(page, "alice", "alice-password")
    response = page.goto(f"/workflows/{theirs.id}")
    assert response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.get_by_text(theirs.name)).to_have_count(0)
    screenshots(page, "16-not-found")
    assert page.goto(f"/workflows/{theirs.id}/files/src/lorem.txt").status == 404
    assert page.goto(f"/workflows/{theirs.id}/viewer/script/grep").status == 404


def test_keyboard_skip_link_and_graph_nodes(page, user, screenshots):
    workflow = workflow_submit(
        owner=user, files=example_files("grep-wc"), main="workflow.cwl", inputs="inputs.yml", start=False
    )
    sign_in(page, "alice", "alice-password")
    page.goto(f"/workflows/{workflow.id}")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    # The graph's nodes are links: focus grep's and open its log with Enter.
    page.locator('svg.dag a:has(g[data-step="grep"])').focus()
    page.keyboard.press("Enter")
    expect(page.locator("#log-viewer")).to_have_attribute("data-step", "grep")
    expect(page.locator("#log-title")).to_be_focused()
    expect(page.locator("#log-status")).to_contain_text("no job yet")
    # A SUBMITTED workflow offers Start and Cancel, not Pause or Resume.
    expect(page.get_by_role("button", name="Start")).to_be_visible()
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    expect(page.get_by_role("button", name="Resume")).to_have_count(0)
    screenshots(page, "17-workflow-submitted")


def test_tokens_page_and_admin(page, user, screenshots, django_user_model):
    sign_in(page, "alice", "alice-password")
    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Name of a new token").fill("laptop")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token")).to_have_text(re.compile(r"^apy_"))
    screenshots(page, "18-tokens")

    django_user_model.objects.create_superuser("root", "root@example.org", "root-password")
    workflow = workflow_submit(
        owner=user, files=example_files("grep-wc"), main="workflow.cwl", inputs="inputs.yml", start=False
    )
    page.context.clear_cookies()
    sign_in(page, "root", "root-password")
    page.get_by_role("link", name="Admin").click()
    expect(page.get_by_role("link", name="Workflows").first).to_be_visible()
    screenshots(page, "19-admin")
    page.goto("/admin/workflows/workflow/")
    page.locator(f'input[name="_selected_action"][value="{workflow.id}"]').check()
    page.locator('select[name="action"]').select_option("cancel_selected")
    page.get_by_role("button", name="Go").click()
    expect(page.locator(".messagelist")).to_contain_text("1 workflow(s) cancelled.")
    screenshots(page, "20-admin-workflows")
    workflow.refresh_from_db()
    assert workflow.state in ("CANCELLED", "ARCHIVED")  # archived once the worker packs it
    page.goto(f"/admin/workflows/workflow/{workflow.id}/change/")
    expect(page.locator('[name="state"]')).to_have_count(0)  # read-only
    expect(page.locator(".field-state .readonly")).to_have_text(re.compile("cancelled|archived", re.I))
