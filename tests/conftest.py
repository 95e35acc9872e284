"""Shared test set-up.

The run folders and the local-batch records live in a fresh temporary directory for the whole
session; the Celery worker started by the integration fixtures is given the same paths.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def django_db_modify_db_settings():
    """A test database of this session's own, so that two test runs can share one PostgreSQL."""
    from django.conf import settings

    settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = f"test_apiary_{os.getpid()}"


@pytest.fixture(scope="session", autouse=True)
def celery_queue():
    """A Celery queue of this session's own (the worker fixture consumes it)."""
    from django.conf import settings

    from portal.celery import app

    queue = f"tests-{os.getpid()}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    app.conf.task_default_queue = queue
    return queue


@pytest.fixture(scope="session", autouse=True)
def scratch_dirs(tmp_path_factory):
    from django.conf import settings

    scratch = tmp_path_factory.mktemp("apiary")
    settings.VAR_DIR = scratch
    settings.APIARY_RUNS_DIR = scratch / "runs"
    settings.APIARY_CALLBACK_URL = ""
    settings.APIARY_ARCHIVE_DIR = scratch / "archives"
    # Off by default so that tests see workflows stay in the state they ended in; the archive
    # tests turn it on (tests/integration/test_archive_slurm.py starts a worker with it on).
    settings.APIARY_ARCHIVE_ENABLED = False
    return scratch


@pytest.fixture
def user(db):
    from portal.services import user_ensure

    return user_ensure(username="alice", password="alice-password")


@pytest.fixture
def other_user(db):
    from portal.services import user_ensure

    return user_ensure(username="bob", password="bob-password")


@pytest.fixture
def api(user):
    """A DRF client authenticated with alice's personal API token."""
    from rest_framework.test import APIClient

    from portal.services import api_token_create

    _, secret = api_token_create(user=user, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def example_files(name: str) -> dict[str, bytes]:
    folder = EXAMPLES / name
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
