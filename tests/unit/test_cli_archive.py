"""``apiary copy`` / ``apiary reexecute`` and archived workflows in ``list``/``query`` (mocked API)."""

import base64
import hashlib

import httpx
import pytest
from typer.testing import CliRunner

from portal import cli
from tests.unit.test_cli import Api, detail, page, parse_multipart

pytestmark = pytest.mark.unit

WF = "3f1c2a9e-0000-4000-8000-000000000001"
NEW = "3f1c2a9e-0000-4000-8000-000000000002"
ARCHIVE = b"\x1f\x8b pretend this is a tgz" * 100
SHA = hashlib.sha256(ARCHIVE).hexdigest()


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("APIARY_CONFIG", str(tmp_path / "cfg" / "config.json"))
    monkeypatch.delenv("APIARY_SERVER", raising=False)
    monkeypatch.delenv("APIARY_TOKEN", raising=False)
    monkeypatch.setattr(cli, "_sleep", lambda seconds: None)


@pytest.fixture
def use(monkeypatch):
    def install(api: Api) -> Api:
        monkeypatch.setattr(cli, "_transport", httpx.MockTransport(api))
        return api

    return install


def archive_response(body=ARCHIVE, **headers):
    return httpx.Response(200, content=body, headers={"content-type": "application/gzip", **headers})


def test_copy_saves_id_tgz_and_verifies_the_checksum(runner, use, tmp_path, monkeypatch):
    use(Api({f"GET /api/v1/workflows/{WF}/archive": archive_response(**{"X-Checksum-SHA256": SHA})}))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli.app, ["copy", WF])
    assert result.exit_code == 0, result.output
    assert (tmp_path / f"{WF}.tgz").read_bytes() == ARCHIVE
    assert "verified" in result.stderr


def test_copy_to_a_folder_or_a_file_name_with_a_digest_header(runner, use, tmp_path):
    digest = "sha-256=" + base64.b64encode(bytes.fromhex(SHA)).decode()
    use(Api({f"GET /api/v1/workflows/{WF}/archive": archive_response(Digest=digest)}))
    assert runner.invoke(cli.app, ["copy", WF, str(tmp_path)]).exit_code == 0
    assert (tmp_path / f"{WF}.tgz").read_bytes() == ARCHIVE
    assert runner.invoke(cli.app, ["copy", WF, str(tmp_path / "run.tgz")]).exit_code == 0
    assert (tmp_path / "run.tgz").read_bytes() == ARCHIVE


@pytest.mark.parametrize(
    "headers",
    [{"X-Checksum-SHA256": "0" * 64}, {}],
    ids=["mismatch", "no-checksum"],
)
def test_copy_refuses_an_unverified_archive(runner, use, tmp_path, headers):
    use(Api({f"GET /api/v1/workflows/{WF}/archive": archive_response(**headers)}))
    result = runner.invoke(cli.app, ["copy", WF, str(tmp_path)])
    assert result.exit_code == cli.EXIT_REFUSED
    assert "nothing saved" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_copy_of_a_workflow_not_archived_yet_exits_4(runner, use, tmp_path):
    conflict = httpx.Response(409, json={"message": "Workflow is RUNNING, not archived yet.", "extra": {}})
    use(Api({f"GET /api/v1/workflows/{WF}/archive": conflict}))
    result = runner.invoke(cli.app, ["copy", WF, str(tmp_path)])
    assert result.exit_code == cli.EXIT_CONFLICT
    assert "not archived yet" in result.stderr
    assert list(tmp_path.iterdir()) == []


def created(request):
    return httpx.Response(201, json=detail("RUNNING", id=NEW, name="timtest2", source_workflow_id=WF))


def test_reexecute_uploads_the_archive_with_name_and_overrides(runner, use, tmp_path):
    archive = tmp_path / f"{WF}.tgz"
    archive.write_bytes(ARCHIVE)
    overrides = tmp_path / "over.yml"
    overrides.write_text("pattern: dolor\n")
    api = use(Api({"POST /api/v1/workflows/reexecute": created}))
    result = runner.invoke(
        cli.app, ["reexecute", str(archive), "--name", "timtest2", "--inputs", str(overrides)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == NEW
    fields, files = parse_multipart(api.requests[0])
    assert fields == {"start": "true", "name": "timtest2", "inputs_text": "pattern: dolor\n"}
    assert files == [("archive", archive.name, ARCHIVE)]


def test_reexecute_by_workflow_id(runner, use):
    api = use(Api({"POST /api/v1/workflows/reexecute": created}))
    result = runner.invoke(cli.app, ["reexecute", WF, "--name", "timtest2"])
    assert result.exit_code == 0, result.output
    body = api.requests[0].content.decode()
    assert f"workflow={WF}" in body and "name=timtest2" in body


def test_reexecute_of_neither_file_nor_id_is_a_usage_error(runner, use):
    use(Api())
    result = runner.invoke(cli.app, ["reexecute", "no-such-file.tgz"])
    assert result.exit_code == cli.EXIT_USAGE


def test_list_shows_the_outcome_of_archived_workflows(runner, use):
    archived = detail("ARCHIVED", outcome="PARTIAL_FAIL")
    use(Api({"GET /api/v1/workflows/": page([archived])}))
    result = runner.invoke(cli.app, ["list"])
    assert result.exit_code == 0, result.output
    assert "ARCHIVED (PARTIAL_FAIL)" in result.stdout


@pytest.mark.parametrize(("outcome", "code"), [("COMPLETED", 0), ("FAILED", 1)])
def test_query_watch_of_an_archived_workflow_exits_by_its_outcome(runner, use, outcome, code):
    responses = [detail("RUNNING"), detail("ARCHIVED", outcome=outcome, archive={"size": 10, "sha256": SHA})]
    use(Api({f"GET /api/v1/workflows/{WF}/": [httpx.Response(200, json=r) for r in responses]}))
    result = runner.invoke(cli.app, ["query", WF, "--watch", "--interval", "0"])
    assert result.exit_code == code, result.output
    assert f"ARCHIVED ({outcome})" in result.stdout and SHA in result.stdout
