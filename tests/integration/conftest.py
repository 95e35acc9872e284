"""Integration fixtures: the real services from ``scripts/services`` and a real Celery worker.

``scripts/test`` starts the services and exports their addresses (``scripts/services env``);
these tests refuse to run against the embedded defaults rather than silently test less.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def real_services():
    missing = [
        name
        for name, prefix in (("DATABASE_URL", "postgres"), ("CELERY_BROKER_URL", "redis"))
        if not os.environ.get(name, "").startswith(prefix)
    ]
    if missing:
        pytest.fail(
            f"integration tests need the real services; {', '.join(missing)} not set. "
            'Run scripts/test (or: scripts/services up && eval "$(scripts/services env)").'
        )


def _database_url(settings_dict) -> str:
    return (
        f"postgres://{settings_dict['USER']}:{settings_dict['PASSWORD']}@{settings_dict['HOST']}:"
        f"{settings_dict['PORT']}/{settings_dict['NAME']}"
    )


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, live_server, tmp_path_factory, celery_queue):
    """A real ``celery worker`` (with embedded beat) on the test database and the real broker.

    The job wrapper's completion notices go to the live test server.
    """
    from django.conf import settings
    from django.db import connection

    logs = tmp_path_factory.mktemp("celery")
    env = dict(os.environ)
    env.update(
        DATABASE_URL=_database_url(connection.settings_dict),
        APIARY_CALLBACK_URL=live_server.url,
        APIARY_RECONCILE_SECONDS="2",
        PYTHONPATH=str(REPO),
        APIARY_VAR_DIR=str(settings.VAR_DIR),
        APIARY_RUNS_DIR=str(settings.APIARY_RUNS_DIR),
        APIARY_CELERY_QUEUE=celery_queue,
    )
    celery = [sys.executable, "-m", "celery", "-A", "portal"]
    subprocess.run(
        [*celery, "purge", "-f", "-Q", celery_queue], env=env, cwd=REPO, capture_output=True, check=False
    )
    log_file = open(logs / "worker.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
            *celery,
            "worker",
            "-B",
            "-s",
            str(logs / "beat-schedule"),
            "-l",
            "info",
            "--concurrency",
            "2",
            "-n",
            f"tests-{os.getpid()}@%h",
        ],
        env=env,
        cwd=REPO,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while "ready." not in (logs / "worker.log").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"celery worker did not start:\n{(logs / 'worker.log').read_text()[-3000:]}")
        time.sleep(0.3)
    yield proc
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log_file.close()


def wait_for(predicate, timeout=120, interval=0.5, what="condition"):
    """Poll ``predicate`` until truthy; fail with ``what`` if it never is (behaviour, not speed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what}")


def failure_report(workflow) -> str:
    """What went wrong in a workflow, for assertion messages."""
    lines = [f"workflow {workflow.state}: {workflow.error}"]
    for step in workflow.steps.exclude(state__in=["COMPLETED", "SKIPPED"]):
        lines.append(f"  {step.name} {step.state}: {step.error[:500]}")
    return "\n".join(lines)
