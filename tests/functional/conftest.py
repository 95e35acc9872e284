"""Browser tests: Playwright for Python driving Debian's Chromium against pytest-django's live server.

The real services (PostgreSQL, Redis, Slurm) and the real Celery worker come from the integration
fixtures. Chromium is ``/usr/bin/chromium`` (``scripts/bootstrap`` installs it); Playwright
downloads no browser. Screenshots of every page go to ``artefacts/screenshots/`` (git-ignored).
"""

import os
from pathlib import Path

import pytest

from tests.integration.conftest import celery_worker, real_services  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "artefacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LAPTOP = {"width": 1280, "height": 860}
TABLET = {"width": 768, "height": 1024}

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make between
# browser steps are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; run scripts/bootstrap (it installs Debian's chromium).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport=LAPTOP, accept_downloads=True)
    context.set_default_timeout(20_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="session")
def screenshots():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def shoot(page, name: str, full_page: bool = True) -> Path:
        wait_for_htmx(page)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return shoot


def wait_for_htmx(page, timeout: float = 20_000) -> None:
    """Wait until the page has loaded and no htmx request is in flight (no sleeps).

    Pages without htmx (Django admin) only wait for the load.
    """
    page.wait_for_load_state("load")
    page.wait_for_function(
        "() => document.readyState === 'complete'"
        " && (window.htmx === undefined || document.querySelector('.htmx-request') === null)",
        timeout=timeout,
    )


def sign_in(page, username: str, password: str, screenshots=None) -> None:
    page.goto("/login/")
    if screenshots:
        screenshots(page, "01-sign-in")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")
    wait_for_htmx(page)
