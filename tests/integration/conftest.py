"""Integration fixtures: the real services from ``scripts/services`` and a real Celery worker.

``scripts/test`` starts the services and exports their addresses (``scripts/services env``);
these tests refuse to run against the embedded defaults rather than silently test less.
"""

import functools
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


class Worker:
    """A real ``celery worker`` process (with embedded beat) for the test database and broker."""

    def __init__(self, env: dict, logs: Path, name: str):
        self.env, self.logs, self.name = env, logs, name
        self.proc = None
        self.log_file = None

    @property
    def log(self) -> str:
        return (self.logs / f"{self.name}.log").read_text()

    def start(self) -> "Worker":
        celery = [sys.executable, "-m", "celery", "-A", "portal"]
        self.log_file = open(self.logs / f"{self.name}.log", "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                *celery,
                "worker",
                "-B",
                "-s",
                str(self.logs / f"{self.name}-beat"),
                "-l",
                "info",
                "--concurrency",
                "2",
                "-n",
                f"{self.name}-{os.getpid()}@%h",
            ],
            env=self.env,
            cwd=REPO,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while self.log.count("ready.") < 1 + self._starts:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"celery worker did not start:\n{self.log[-3000:]}")
            time.sleep(0.3)
        self._starts += 1
        return self

    _starts = 0

    def kill(self) -> None:
        """SIGKILL the worker and its children, as a crash or an OOM kill would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.log_file:
            self.log_file.close()


@functools.cache
def build_test_image(store: str) -> None:
    """The busybox test image (and its conformance aliases) in the image store; quick, idempotent."""
    build = subprocess.run(
        [str(REPO / "scripts" / "build-test-image"), store], capture_output=True, text=True, check=False
    )
    if build.returncode != 0:
        pytest.fail(f"scripts/build-test-image failed:\n{build.stdout}{build.stderr}")


def worker_env(live_server_url: str, queue: str) -> dict:
    """The environment of a worker process: this test session's database, folders and queue."""
    from django.conf import settings
    from django.db import connection

    build_test_image(str(settings.APIARY_IMAGE_STORE))
    env = dict(os.environ)
    env.update(
        DATABASE_URL=_database_url(connection.settings_dict),
        APIARY_CALLBACK_URL=live_server_url,
        APIARY_RECONCILE_SECONDS="2",
        PYTHONPATH=str(REPO),
        APIARY_VAR_DIR=str(settings.VAR_DIR),
        APIARY_RUNS_DIR=str(settings.APIARY_RUNS_DIR),
        APIARY_ARCHIVE_DIR=str(settings.APIARY_ARCHIVE_DIR),
        APIARY_ARCHIVE_ENABLED="1" if settings.APIARY_ARCHIVE_ENABLED else "0",
        APIARY_IMAGE_STORE=str(settings.APIARY_IMAGE_STORE),
        APIARY_CELERY_QUEUE=queue,
    )
    subprocess.run(
        [sys.executable, "-m", "celery", "-A", "portal", "purge", "-f", "-Q", queue],
        env=env,
        cwd=REPO,
        capture_output=True,
        check=False,
    )
    return env


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, live_server, tmp_path_factory, celery_queue):
    """The session's worker. Completion notices from job scripts go to the live test server."""
    worker = Worker(worker_env(live_server.url, celery_queue), tmp_path_factory.mktemp("celery"), "worker")
    yield worker.start().proc
    worker.stop()


@pytest.fixture
def private_worker(django_db_setup, live_server, tmp_path, settings):
    """A worker on a queue of this test's own, for tests that kill and restart it."""
    from portal.celery import app

    queue = f"tests-{os.getpid()}-{tmp_path.name}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = settings.CELERY_TASK_DEFAULT_QUEUE = queue
    worker = Worker(worker_env(live_server.url, queue), tmp_path, "private")
    yield worker
    worker.stop()
    app.conf.task_default_queue = previous


def wait_for(predicate, timeout=120, interval=0.5, what="condition"):
    """Poll ``predicate`` until truthy; fail with ``what`` if it never is (behaviour, not speed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what}")


FINISHED = {"COMPLETED", "FAILED", "PARTIAL_FAIL", "CANCELLED"}


def api_submit(api, files: dict[str, bytes], **fields) -> dict:
    """Submit ``files`` (name -> bytes) and form ``fields`` through the REST API; the new
    workflow's JSON (asserts 201)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    payload = {"files": [SimpleUploadedFile(n, d) for n, d in files.items()], **fields}
    response = api.post("/api/v1/workflows/", payload, format="multipart")
    assert response.status_code == 201, response.content
    return response.json()


def wait_finished(workflow_id, timeout=180, what="the workflow to finish"):
    """The workflow once it is in a terminal state (COMPLETED, FAILED, PARTIAL_FAIL, CANCELLED)."""
    from workflows.models import Workflow

    def finished():
        workflow = Workflow.objects.get(pk=workflow_id)
        return workflow if workflow.state in FINISHED else None

    return wait_for(finished, timeout=timeout, what=what)


def failure_report(workflow) -> str:
    """What went wrong in a workflow, for assertion messages."""
    lines = [f"workflow {workflow.state}: {workflow.error}"]
    for step in workflow.steps.exclude(state__in=["COMPLETED", "SKIPPED"]):
        lines.append(f"  {step.name} {step.state}: {step.error[:500]}")
    return "\n".join(lines)
