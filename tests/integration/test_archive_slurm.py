"""Archive, copy and re-execute on real Slurm (the BEE FY21 milestone, seeds/001).

The test session's shared worker runs with archiving off (so other tests see the states runs end
in); these tests start a worker of their own with ``APIARY_ARCHIVE_ENABLED=1``. The CLI runs as a
subprocess against the live server, exactly as a user would run it. The two-instance test starts a
second Apiary — its own PostgreSQL database, runserver on its own port, worker, queue, runs and
archive folders — copies a run from the first and re-executes it on the second, then removes it all.
"""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from portal.services import api_token_create
from tests.conftest import example_files
from tests.integration.conftest import REPO, Worker, _database_url, api_submit, failure_report, wait_for
from workflows.models import Archive, StepRun, Workflow

pytestmark = [pytest.mark.integration, pytest.mark.slurm, pytest.mark.django_db(transaction=True)]

APIARY = str(Path(sys.executable).with_name("apiary"))


@pytest.fixture
def archive_worker(private_worker, settings):
    """A real worker (with beat) that archives workflows when they end."""
    settings.APIARY_ARCHIVE_ENABLED = True
    private_worker.env["APIARY_ARCHIVE_ENABLED"] = "1"
    return private_worker.start()


@pytest.fixture
def cli(tmp_path):
    """Run ``apiary`` as a user would: a subprocess with a config file of its own."""

    def run(*args, timeout=300, check=True):
        env = {**os.environ, "APIARY_CONFIG": str(tmp_path / "apiary-config.json")}
        env.pop("APIARY_SERVER", None)
        env.pop("APIARY_TOKEN", None)
        done = subprocess.run([APIARY, *args], capture_output=True, text=True, env=env, timeout=timeout)
        if check:
            assert done.returncode == 0, (
                f"apiary {' '.join(args)}: {done.returncode}\n{done.stdout}{done.stderr}"
            )
        return done

    return run


def _submit(api) -> str:
    files = example_files("grep-wc")
    return api_submit(api, files, main="workflow.cwl", inputs="inputs.yml", name="timtest")["id"]


def _archived(workflow_id) -> Workflow | None:
    workflow = Workflow.objects.get(pk=workflow_id)
    if (
        workflow.state in ("COMPLETED", "FAILED", "PARTIAL_FAIL", "CANCELLED")
        and workflow.outcome != "COMPLETED"
    ):
        pytest.fail(failure_report(workflow))
    return workflow if workflow.state == "ARCHIVED" else None


def _counts(cli, server, token, workflow_id, folder: Path) -> str:
    cli("--server", server, "--token", token, "outputs", workflow_id, "--download", str(folder))
    return (folder / "counts.txt").read_text().strip()


def _job_ids(workflow_id) -> set[str]:
    return set(StepRun.objects.filter(step__workflow_id=workflow_id).values_list("batch_job_id", flat=True))


def test_grep_wc_is_archived_copied_and_reexecuted(api, user, archive_worker, live_server, cli, tmp_path):
    first_id = _submit(api)
    first = wait_for(lambda: _archived(first_id), timeout=240, what="grep-wc to be archived")
    assert first.outcome == "COMPLETED", failure_report(first)
    archive = Archive.objects.get(workflow=first)
    assert Path(archive.path).is_file()

    _, token = api_token_create(user=user, name="cli")
    server = live_server.url
    listed = json.loads(cli("--server", server, "--token", token, "list", "--json").stdout)["results"]
    assert [(w["id"], w["state"], w["outcome"]) for w in listed] == [(first_id, "ARCHIVED", "COMPLETED")]

    # Copy: the .tgz on disk, its checksum verified by the CLI and equal to the recorded one.
    copies = tmp_path / "copies"
    copies.mkdir()
    done = cli("--server", server, "--token", token, "copy", first_id, str(copies))
    copy = copies / f"{first_id}.tgz"
    assert done.stdout.strip() == str(copy)
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == archive.sha256
    with tarfile.open(copy) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))
        grep_meta = json.load(tar.extractfile("steps/grep/metadata.json"))
    assert {"ro-crate-metadata.json", "src/workflow.cwl", "steps/wc/1/job.sh", "steps/wc/1/job.out"} <= names
    assert manifest["workflow_id"] == first_id and manifest["state"] == "COMPLETED"
    assert grep_meta["runs"][0]["batch_job_id"].isdigit() and grep_meta["runs"][0]["node"]

    # Re-execute the copy: a new workflow, new id, run again on Slurm.
    done = cli("--server", server, "--token", token, "reexecute", str(copy), "--name", "timtest2")
    second_id = done.stdout.strip()
    assert second_id and second_id != first_id
    second = wait_for(lambda: _archived(second_id), timeout=240, what="the re-executed run to be archived")
    assert second.outcome == "COMPLETED", failure_report(second)
    assert (second.name, str(second.source_workflow_id)) == ("timtest2", first_id)
    assert second.source_archive_sha256 == archive.sha256
    assert _job_ids(second_id).isdisjoint(_job_ids(first_id))  # new Slurm jobs, nothing reused

    # Both runs listed, both archived; outputs identical.
    listed = json.loads(cli("--server", server, "--token", token, "list", "--json").stdout)["results"]
    assert {(w["id"], w["state"], w["outcome"]) for w in listed} == {
        (first_id, "ARCHIVED", "COMPLETED"),
        (second_id, "ARCHIVED", "COMPLETED"),
    }
    table = cli("--server", server, "--token", token, "list").stdout
    assert "timtest2" in table and table.count("ARCHIVED (COMPLETED)") == 2
    counts = [_counts(cli, server, token, i, tmp_path / i) for i in (first_id, second_id)]
    assert counts == ["87", "87"]
    with tarfile.open(Archive.objects.get(workflow_id=second_id).path) as tar:
        provenance = json.load(tar.extractfile("manifest.json"))["provenance"]
    assert provenance["source_workflow_id"] == first_id
    assert provenance["source_archive_sha256"] == archive.sha256

    # Re-execute by id, through the API, with an input overridden.
    response = api.post(
        "/api/v1/workflows/reexecute",
        {"workflow": first_id, "inputs_text": "pattern: dolor\n", "name": "dolor"},
    )
    assert response.status_code == 201, response.content
    third = wait_for(
        lambda: _archived(response.json()["id"]), timeout=240, what="the dolor run to be archived"
    )
    assert third.inputs["pattern"] == "dolor"
    assert _counts(cli, server, token, str(third.id), tmp_path / "third") != "87"


def test_cancelled_workflow_is_archived_as_cancelled(api, archive_worker):
    files = [SimpleUploadedFile(n, d) for n, d in example_files("grep-wc").items()]
    inputs = "seconds: 30\npattern: integer\ninfile: {class: File, path: lorem.txt}\n"
    response = api.post(
        "/api/v1/workflows/",
        {"files": files, "main": "slow-grep.cwl", "inputs_text": inputs},
        format="multipart",
    )
    workflow_id = response.json()["id"]
    wait_for(
        lambda: StepRun.objects.filter(step__workflow_id=workflow_id).exclude(batch_job_id="").exists(),
        what="grep to be submitted",
    )
    assert api.post(f"/api/v1/workflows/{workflow_id}/cancel/").status_code == 200
    workflow = wait_for(
        lambda: Workflow.objects.filter(pk=workflow_id, state="ARCHIVED").first(),
        what="the cancelled run archived",
    )
    assert workflow.outcome == "CANCELLED"
    with tarfile.open(workflow.archive.path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        crate = json.load(tar.extractfile("ro-crate-metadata.json"))
    assert manifest["state"] == "CANCELLED"
    action = next(e for e in crate["@graph"] if e["@type"] == "CreateAction")
    assert action["actionStatus"] == {"@id": "http://schema.org/FailedActionStatus"}


# --- two instances ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _admin_sql(settings_dict: dict, sql: str) -> None:
    import psycopg

    with psycopg.connect(
        dbname="postgres",
        user=settings_dict["USER"],
        password=settings_dict["PASSWORD"],
        host=settings_dict["HOST"],
        port=settings_dict["PORT"],
        autocommit=True,
    ) as conn:
        conn.execute(sql)


class Instance:
    """A second Apiary: database, web server and worker of its own, torn down by ``stop``."""

    def __init__(self, base: Path):
        from django.conf import settings
        from django.db import connection

        self.base = base
        self.db = dict(connection.settings_dict)
        self.db["NAME"] = f"test_apiary_{os.getpid()}_second"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        for folder in ("runs", "archives", "var", "logs"):
            (base / folder).mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "DATABASE_URL": _database_url(self.db),
            "APIARY_RUNS_DIR": str(base / "runs"),
            "APIARY_ARCHIVE_DIR": str(base / "archives"),
            "APIARY_VAR_DIR": str(base / "var"),
            "APIARY_CELERY_QUEUE": f"tests-{os.getpid()}-second",
            "APIARY_CALLBACK_URL": self.url,
            "APIARY_ARCHIVE_ENABLED": "1",
            "APIARY_RECONCILE_SECONDS": "2",
            "APIARY_IMAGE_STORE": str(settings.APIARY_IMAGE_STORE),
            "PYTHONPATH": str(REPO),
        }
        self.web = None
        self.web_log = None
        self.worker = Worker(self.env, base / "logs", "second")
        self.token = ""

    def manage(self, *args) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done.stdout

    def start(self) -> "Instance":
        _admin_sql(self.db, f'DROP DATABASE IF EXISTS "{self.db["NAME"]}" WITH (FORCE)')
        _admin_sql(self.db, f'CREATE DATABASE "{self.db["NAME"]}"')
        self.manage("migrate", "--noinput")
        self.token = self.manage("create_token", "tcr", "--name", "second-site").strip()
        self.web_log = open(self.base / "logs" / "web.log", "a")  # noqa: SIM115 - closed in stop()
        self.web = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload"],
            cwd=REPO,
            env=self.env,
            stdout=self.web_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def answers():
            if self.web.poll() is not None:
                pytest.fail(
                    f"the second web server died:\n{(self.base / 'logs' / 'web.log').read_text()[-3000:]}"
                )
            try:
                headers = {"Authorization": f"Bearer {self.token}"}
                return (
                    httpx.get(f"{self.url}/api/v1/workflows/", headers=headers, timeout=5).status_code == 200
                )
            except httpx.HTTPError:
                return False

        wait_for(answers, timeout=60, what="the second web server")
        self.worker.start()
        return self

    def stop(self) -> None:
        self.worker.stop()
        if self.web and self.web.poll() is None:
            os.killpg(self.web.pid, signal.SIGTERM)
            try:
                self.web.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.web.pid, signal.SIGKILL)
        if self.web_log:
            self.web_log.close()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "portal",
                "purge",
                "-f",
                "-Q",
                self.env["APIARY_CELERY_QUEUE"],
            ],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            check=False,
        )
        for _ in range(10):
            try:
                _admin_sql(self.db, f'DROP DATABASE IF EXISTS "{self.db["NAME"]}" WITH (FORCE)')
                return
            except Exception:  # a connection still closing
                time.sleep(1)


@pytest.fixture
def second_instance(django_db_setup, tmp_path):
    instance = Instance(tmp_path / "second")
    try:
        yield instance.start()
    finally:
        instance.stop()


def test_copy_from_one_instance_and_reexecute_on_another(
    api, user, archive_worker, live_server, second_instance, cli, tmp_path
):
    first_id = _submit(api)
    first = wait_for(
        lambda: _archived(first_id), timeout=240, what="grep-wc to be archived on the first site"
    )
    _, token = api_token_create(user=user, name="cli")
    site_a, site_b = live_server.url, second_instance.url

    # On site B, as another user: copy from A with A's token, re-execute on B with B's.
    copy = tmp_path / "from-a" / "timtest.tgz"
    copy.parent.mkdir()
    cli("--server", site_a, "--token", token, "copy", first_id, str(copy))
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == first.archive.sha256
    on_b = ("--server", site_b, "--token", second_instance.token)
    new_id = cli(*on_b, "reexecute", str(copy), "--name", "timtest2").stdout.strip()
    assert new_id and new_id != first_id
    watched = cli(*on_b, "query", new_id, "--watch", "--interval", "1", timeout=400, check=False)
    assert watched.returncode == 0, watched.stdout + watched.stderr + second_instance.worker.log[-4000:]

    detail = json.loads(cli(*on_b, "query", new_id, "--json").stdout)
    assert detail["source_workflow_id"] == first_id
    assert detail["source_archive_sha256"] == first.archive.sha256
    assert {s["name"]: s["batch_job_id"].isdigit() for s in detail["steps"]} == {"grep": True, "wc": True}
    assert _counts(cli, site_b, second_instance.token, new_id, tmp_path / "b") == "87"
    assert _counts(cli, site_a, token, first_id, tmp_path / "a") == "87"

    # B archives its run too; A knows nothing of it, and B's list is its own.
    def archived_on_b():
        results = json.loads(cli(*on_b, "list", "--json").stdout)["results"]
        return results if results and results[0]["state"] == "ARCHIVED" else None

    listed = wait_for(archived_on_b, timeout=120, what="the run on the second site to be archived")
    assert [(w["id"], w["outcome"]) for w in listed] == [(new_id, "COMPLETED")]
    assert (second_instance.base / "archives" / f"{new_id}.tgz").is_file()
    assert not Workflow.objects.filter(pk=new_id).exists()
