"""The ``apiary`` command-line client against a mocked REST API (no server, no database)."""

import io
import json
import re
import stat
import tarfile

import httpx
import pytest
from typer.testing import CliRunner

from portal import cli

pytestmark = pytest.mark.unit

WF = "3f1c2a9e-0000-4000-8000-000000000001"


def detail(state="RUNNING", **extra):
    body = {
        "id": WF,
        "name": "grep-wc",
        "owner": "alice",
        "state": state,
        "process_class": "Workflow",
        "cwl_version": "v1.2",
        "steps_total": 2,
        "steps_done": 2 if state == "COMPLETED" else 1,
        "created_at": "2025-01-02T10:00:00Z",
        "started_at": "2025-01-02T10:00:01Z",
        "ended_at": None,
        "main_document": "workflow.cwl",
        "error": "",
        "steps": [
            {
                "name": "grep",
                "tool_class": "CommandLineTool",
                "state": "COMPLETED",
                "error": "",
                "attempts": 1,
                "depends_on": [],
                "batch_job_id": "4242",
                "node": "c1",
                "exit_code": 0,
                "submitted_at": None,
                "started_at": "2025-01-02T10:00:02Z",
                "ended_at": "2025-01-02T10:00:03Z",
                "outputs": {},
                "runs": [],
            }
        ],
        "outputs": None,
    }
    body.update(extra)
    return body


class Api:
    """A scripted server: ``routes`` maps "METHOD path" to a response, a list of them, or a callable."""

    def __init__(self, routes=None):
        self.routes = routes or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        key = f"{request.method} {request.url.path}"
        route = self.routes.get(key)
        if route is None:
            return httpx.Response(404, json={"message": f"no route {key}", "extra": {}})
        if isinstance(route, list):
            route = route.pop(0) if len(route) > 1 else route[0]
        if callable(route):
            return route(request)
        return route


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No real config, env or sleeping; requests go to whatever ``use`` installs."""
    monkeypatch.setenv("APIARY_CONFIG", str(tmp_path / "cfg" / "config.json"))
    monkeypatch.delenv("APIARY_SERVER", raising=False)
    monkeypatch.delenv("APIARY_TOKEN", raising=False)
    monkeypatch.setattr(cli, "_sleep", lambda seconds: None)
    monkeypatch.setattr(cli, "_transport", httpx.MockTransport(Api()))


@pytest.fixture
def use(monkeypatch):
    def install(api: Api) -> Api:
        monkeypatch.setattr(cli, "_transport", httpx.MockTransport(api))
        return api

    return install


def page(results, count=None, next_url=None):
    return httpx.Response(
        200,
        json={
            "count": len(results) if count is None else count,
            "next": next_url,
            "previous": None,
            "results": results,
        },
    )


def parse_multipart(request: httpx.Request):
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    fields, files = {}, []
    for part in request.content.split(b"--" + boundary)[1:-1]:
        head, _, body = part.partition(b"\r\n\r\n")
        body = body[:-2]  # the CRLF before the next boundary
        name = re.search(rb'name="([^"]*)"', head).group(1).decode()
        filename = re.search(rb'filename="([^"]*)"', head)
        if filename:
            files.append((name, filename.group(1).decode(), body))
        else:
            fields[name] = body.decode()
    return fields, files


# --- configuration ------------------------------------------------------------------------------


def test_config_precedence_flag_over_env_over_file(runner, use, tmp_path, monkeypatch):
    api = use(Api({"GET /api/v1/workflows/": page([])}))
    config = tmp_path / "cfg" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"server": "http://file.example:1", "token": "apy_file"}))

    def last():
        request = api.requests[-1]
        return f"{request.url.scheme}://{request.url.host}:{request.url.port}", request.headers.get(
            "authorization"
        )

    assert runner.invoke(cli.app, ["list", "--json"]).exit_code == 0
    assert last() == ("http://file.example:1", "Bearer apy_file")

    monkeypatch.setenv("APIARY_SERVER", "http://env.example:2")
    monkeypatch.setenv("APIARY_TOKEN", "apy_env")
    assert runner.invoke(cli.app, ["list", "--json"]).exit_code == 0
    assert last() == ("http://env.example:2", "Bearer apy_env")

    args = ["-s", "http://flag.example:3/", "-t", "apy_flag", "list", "--json"]
    assert runner.invoke(cli.app, args).exit_code == 0
    assert last() == ("http://flag.example:3", "Bearer apy_flag")
    assert api.requests[-1].url.path == "/api/v1/workflows/"

    # Each setting falls back on its own: a flag for the server, the token from the environment.
    assert runner.invoke(cli.app, ["-s", "http://flag.example:3", "list", "--json"]).exit_code == 0
    assert last() == ("http://flag.example:3", "Bearer apy_env")


def test_default_server_and_no_token(runner, use):
    api = use(Api({"GET /api/v1/workflows/": page([])}))
    assert runner.invoke(cli.app, ["list", "--json"]).exit_code == 0
    assert str(api.requests[0].url).startswith("http://127.0.0.1:8000/api/v1/workflows/")
    assert "authorization" not in api.requests[0].headers


def test_login_writes_private_config(runner, use, tmp_path):
    api = use(Api({"GET /api/v1/workflows/": page([])}))
    result = runner.invoke(cli.app, ["login", "--token", "apy_secret", "--server", "https://hpc.example/"])
    assert result.exit_code == 0, result.output
    config = tmp_path / "cfg" / "config.json"
    assert json.loads(config.read_text()) == {"server": "https://hpc.example", "token": "apy_secret"}
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    assert api.requests[0].headers["authorization"] == "Bearer apy_secret"  # verified first

    # Later commands use it.
    assert runner.invoke(cli.app, ["list", "--json"]).exit_code == 0
    assert api.requests[-1].url.host == "hpc.example"
    assert api.requests[-1].headers["authorization"] == "Bearer apy_secret"


def test_login_with_a_rejected_token_stores_nothing(runner, use, tmp_path):
    use(
        Api({"GET /api/v1/workflows/": httpx.Response(401, json={"detail": "Unknown or revoked API token."})})
    )
    result = runner.invoke(cli.app, ["login", "-t", "apy_bad"])
    assert result.exit_code == 5
    assert "error: Unknown or revoked API token." in result.stderr
    assert not (tmp_path / "cfg" / "config.json").exists()


def test_login_no_verify_works_offline(runner, use, tmp_path):
    use(Api({"GET /api/v1/workflows/": lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused"))}))
    result = runner.invoke(cli.app, ["login", "-t", "apy_x", "--no-verify"])
    assert result.exit_code == 0, result.output
    stored = json.loads((tmp_path / "cfg" / "config.json").read_text())
    assert stored == {"server": "http://127.0.0.1:8000", "token": "apy_x"}


# --- submit -------------------------------------------------------------------------------------


@pytest.fixture
def workflow_folder(tmp_path, monkeypatch):
    folder = tmp_path / "grep-wc"
    folder.mkdir()
    for name in ("workflow.cwl", "grep.cwl", "wc.cwl", "inputs.yml", "lorem.txt"):
        (folder / name).write_text(f"# {name}\n")
    (folder / ".hidden").write_text("secret")
    (folder / "huge.dat").write_bytes(b"x" * 2000)
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.txt").write_text("deep")
    monkeypatch.setattr(cli, "MAX_SIBLING_BYTES", 1000)
    return folder


def created(request):
    return httpx.Response(201, json=detail("SUBMITTED"))


def test_submit_sends_main_siblings_and_inputs_name(runner, use, workflow_folder):
    api = use(Api({"POST /api/v1/workflows/": created}))
    result = runner.invoke(
        cli.app,
        [
            "-t",
            "apy_t",
            "submit",
            str(workflow_folder / "workflow.cwl"),
            "-i",
            str(workflow_folder / "inputs.yml"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == WF
    fields, files = parse_multipart(api.requests[0])
    assert fields == {"main": "workflow.cwl", "inputs": "inputs.yml", "start": "true"}
    assert {field for field, _, _ in files} == {"files"}
    sent = {name: body for _, name, body in files}
    assert set(sent) == {"workflow.cwl", "grep.cwl", "wc.cwl", "inputs.yml", "lorem.txt"}
    assert sent["grep.cwl"] == b"# grep.cwl\n"
    assert "huge.dat" in result.stderr  # the note about the left-out big file
    assert api.requests[0].headers["authorization"] == "Bearer apy_t"


def test_submit_inputs_and_extra_files_from_elsewhere(runner, use, workflow_folder, tmp_path):
    api = use(Api({"POST /api/v1/workflows/": created}))
    elsewhere = tmp_path / "jobs"
    elsewhere.mkdir()
    (elsewhere / "run1.yml").write_text("pattern: x\n")
    (elsewhere / "data.txt").write_text("data\n")
    args = [
        "submit",
        str(workflow_folder / "workflow.cwl"),
        str(elsewhere / "data.txt"),
        "-i",
        str(elsewhere / "run1.yml"),
        "--name",
        "run 1",
        "--no-start",
        "--json",
    ]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == WF
    fields, files = parse_multipart(api.requests[0])
    assert fields == {"main": "workflow.cwl", "inputs": "run1.yml", "name": "run 1", "start": "false"}
    assert {"run1.yml", "data.txt", "workflow.cwl"} <= {name for _, name, _ in files}


def test_submit_folder_as_bundle(runner, use, workflow_folder):
    api = use(Api({"POST /api/v1/workflows/": created}))
    result = runner.invoke(
        cli.app, ["submit", str(workflow_folder), "-i", str(workflow_folder / "inputs.yml")]
    )
    assert result.exit_code == 0, result.output
    fields, files = parse_multipart(api.requests[0])
    assert fields["main"] == "workflow.cwl" and fields["inputs"] == "inputs.yml"
    [(_, name, body)] = files
    assert name == "grep-wc.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        members = set(archive.getnames())
    assert members == {"workflow.cwl", "grep.cwl", "wc.cwl", "inputs.yml", "lorem.txt", "sub/deep.txt"}


def test_submit_bundle_flag_with_nested_inputs(runner, use, workflow_folder):
    api = use(Api({"POST /api/v1/workflows/": created}))
    (workflow_folder / "sub" / "in.yml").write_text("pattern: x\n")
    args = ["submit", str(workflow_folder / "grep.cwl"), "-i", str(workflow_folder / "sub" / "in.yml")]
    result = runner.invoke(cli.app, args)  # a nested inputs file switches to a bundle by itself
    assert result.exit_code == 0, result.output
    fields, files = parse_multipart(api.requests[0])
    assert fields["main"] == "grep.cwl" and fields["inputs"] == "sub/in.yml"
    assert [name for _, name, _ in files] == ["grep-wc.tar.gz"]


def test_submit_validation_error_shows_message_and_extra(runner, use, workflow_folder):
    error = {"message": "The inputs are not valid.", "extra": {"fields": {"pattern": ["missing"]}}}
    use(Api({"POST /api/v1/workflows/": httpx.Response(400, json=error)}))
    result = runner.invoke(cli.app, ["submit", str(workflow_folder / "workflow.cwl")])
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == 'error: The inputs are not valid. {"fields": {"pattern": ["missing"]}}'
    assert "Traceback" not in result.output


# --- reading ------------------------------------------------------------------------------------


def test_list_json_prints_raw_json_and_passes_filters(runner, use):
    rows = [
        {
            "id": WF,
            "name": "grep-wc",
            "state": "RUNNING",
            "steps_total": 2,
            "steps_done": 1,
            "created_at": "2025-01-02T10:00:00Z",
            "ended_at": None,
        }
    ]
    api = use(Api({"GET /api/v1/workflows/": page(rows)}))
    result = runner.invoke(
        cli.app, ["list", "--state", "running", "-S", "PAUSED", "--name", "grep", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"count": 1, "next": None, "previous": None, "results": rows}
    params = api.requests[0].url.params
    assert params["state"] == "RUNNING,PAUSED" and params["name"] == "grep"


def test_list_all_pages_and_table(runner, use):
    first = [
        {"id": f"id-{i}", "name": f"w{i}", "state": "COMPLETED", "steps_total": 1, "steps_done": 1}
        for i in range(2)
    ]
    second = [{"id": "id-2", "name": "w2", "state": "FAILED", "steps_total": 1, "steps_done": 0}]
    api = use(Api({"GET /api/v1/workflows/": [page(first, 3, "http://x/next"), page(second, 3)]}))
    result = runner.invoke(cli.app, ["list", "--all-pages", "--limit", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert [w["id"] for w in json.loads(result.stdout)["results"]] == ["id-0", "id-1", "id-2"]
    assert api.requests[1].url.params["offset"] == "2"

    api = use(Api({"GET /api/v1/workflows/": page(first)}))
    result = runner.invoke(cli.app, ["list"])
    assert result.exit_code == 0
    assert "id-0" in result.stdout and "COMPLETED" in result.stdout and "1/1" in result.stdout


def test_query_shows_steps(runner, use):
    use(Api({f"GET /api/v1/workflows/{WF}/": httpx.Response(200, json=detail())}))
    result = runner.invoke(cli.app, ["query", WF])
    assert result.exit_code == 0, result.output
    assert "RUNNING" in result.stdout and "grep" in result.stdout and "4242" in result.stdout


@pytest.mark.parametrize(("final", "code"), [("COMPLETED", 0), ("FAILED", 1), ("PARTIAL_FAIL", 1)])
def test_query_watch_exit_code(runner, use, final, code):
    responses = [httpx.Response(200, json=detail(s)) for s in ("SUBMITTED", "RUNNING", final)]
    api = use(Api({f"GET /api/v1/workflows/{WF}/": responses}))
    result = runner.invoke(cli.app, ["query", WF, "--watch", "--interval", "0"])
    assert result.exit_code == code, result.output
    assert len(api.requests) == 3
    assert final in result.stdout


def test_query_watch_json_prints_final_detail(runner, use):
    responses = [httpx.Response(200, json=detail(s)) for s in ("RUNNING", "COMPLETED")]
    use(Api({f"GET /api/v1/workflows/{WF}/": responses}))
    result = runner.invoke(cli.app, ["query", WF, "--watch", "--interval", "0", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["state"] == "COMPLETED"


def test_logs_follow_reads_on_until_the_step_ends(runner, use):
    def log(offset, state, text):
        body = {"step": "grep", "stream": "stdout", "state": state, "offset": offset, "text": text}
        return httpx.Response(200, json=body)

    responses = [
        log(6, "RUNNING", "hello\n"),
        log(6, "RUNNING", ""),
        log(12, "COMPLETED", "world\n"),
        log(12, "COMPLETED", ""),
    ]
    api = use(Api({f"GET /api/v1/workflows/{WF}/steps/grep/logs/stdout": responses}))
    result = runner.invoke(cli.app, ["logs", WF, "grep", "-f"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "hello\nworld\n"
    assert [r.url.params["offset"] for r in api.requests] == ["0", "6", "6", "12"]


def test_outputs_download(runner, use, tmp_path):
    outputs = {
        "counts": {
            "class": "File",
            "basename": "counts.txt",
            "path": "steps/wc/1/outdir/counts.txt",
            "location": f"http://elsewhere/api/v1/workflows/{WF}/files/steps/wc/1/outdir/counts.txt",
        }
    }
    api = use(
        Api(
            {
                f"GET /api/v1/workflows/{WF}/outputs": httpx.Response(200, json=outputs),
                f"GET /api/v1/workflows/{WF}/files/steps/wc/1/outdir/counts.txt": httpx.Response(
                    200, content=b"3\n"
                ),
            }
        )
    )
    result = runner.invoke(
        cli.app, ["-t", "apy_t", "outputs", WF, "--download", str(tmp_path / "out"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == outputs
    assert (tmp_path / "out" / "counts.txt").read_bytes() == b"3\n"
    assert api.requests[1].url.host == "127.0.0.1"  # fetched from the configured server, with the token
    assert api.requests[1].headers["authorization"] == "Bearer apy_t"


# --- actions and errors -------------------------------------------------------------------------


def test_pause_prints_new_state(runner, use):
    api = use(Api({f"POST /api/v1/workflows/{WF}/pause/": httpx.Response(200, json=detail("PAUSED"))}))
    result = runner.invoke(cli.app, ["pause", WF])
    assert result.exit_code == 0, result.output
    assert "PAUSED" in result.stdout
    assert api.requests[0].method == "POST"


def test_not_found_exits_3(runner, use):
    missing = httpx.Response(404, json={"message": "No workflow nope.", "extra": {}})
    use(Api({"GET /api/v1/workflows/nope/": missing}))
    result = runner.invoke(cli.app, ["query", "nope"])
    assert result.exit_code == 3
    assert result.stderr == "error: No workflow nope.\n"
    assert result.stdout == ""


def test_conflict_exits_4(runner, use):
    refused = httpx.Response(409, json={"message": "A COMPLETED workflow cannot be paused.", "extra": {}})
    use(Api({f"POST /api/v1/workflows/{WF}/pause/": refused}))
    result = runner.invoke(cli.app, ["pause", WF])
    assert result.exit_code == 4
    assert result.stderr.startswith("error: A COMPLETED workflow cannot be paused.")


def test_connection_refused_exits_5(runner, use):
    def refuse(request):
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    use(Api({"GET /api/v1/workflows/": refuse}))
    result = runner.invoke(cli.app, ["list"])
    assert result.exit_code == 5
    assert result.stderr.startswith("error: cannot reach http://127.0.0.1:8000")
    assert "Traceback" not in result.output


def test_unauthenticated_exits_5_with_a_hint(runner, use):
    use(
        Api(
            {
                "GET /api/v1/workflows/": httpx.Response(
                    403, json={"message": "Authentication credentials were not provided.", "extra": {}}
                )
            }
        )
    )
    result = runner.invoke(cli.app, ["list"])
    assert result.exit_code == 5
    assert "apiary login" in result.stderr


def test_cancel_needs_yes_without_a_terminal(runner, use):
    api = use(Api({f"POST /api/v1/workflows/{WF}/cancel/": httpx.Response(200, json=detail("CANCELLED"))}))
    result = runner.invoke(cli.app, ["cancel", WF])
    assert result.exit_code == 2
    assert "--yes" in result.stderr
    assert api.requests == []
    result = runner.invoke(cli.app, ["cancel", WF, "--yes"])
    assert result.exit_code == 0
    assert "CANCELLED" in result.stdout


def test_delete_with_yes(runner, use):
    api = use(Api({f"DELETE /api/v1/workflows/{WF}/": httpx.Response(204)}))
    result = runner.invoke(cli.app, ["delete", WF, "-y"])
    assert result.exit_code == 0, result.output
    assert api.requests[0].method == "DELETE"


def test_broken_config_is_a_usage_error(runner, tmp_path):
    config = tmp_path / "cfg" / "config.json"
    config.parent.mkdir()
    config.write_text("{not json")
    result = runner.invoke(cli.app, ["list"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot read the config file")


# --- login through Keycloak (device authorization grant) ----------------------------------------

KC = "http://kc.example/realms/apiary/protocol/openid-connect"
CLI_CONFIG = {
    "issuer": "http://kc.example/realms/apiary",
    "client_id": "apiary-cli",
    "device_authorization_endpoint": f"{KC}/auth/device",
    "token_endpoint": f"{KC}/token",
}
DEVICE = {
    "device_code": "dev-1",
    "user_code": "ABCD-EFGH",
    "verification_uri": "http://kc.example/realms/apiary/device",
    "verification_uri_complete": "http://kc.example/realms/apiary/device?user_code=ABCD-EFGH",
    "expires_in": 600,
    "interval": 1,
}


def test_login_without_token_runs_the_device_grant_and_stores_the_refresh_token(runner, use, tmp_path):
    pending = httpx.Response(400, json={"error": "authorization_pending"})
    tokens = httpx.Response(
        200, json={"access_token": "jwt-1", "refresh_token": "r-1", "expires_in": 300, "token_type": "Bearer"}
    )
    api = use(
        Api(
            {
                "GET /oidc/cli-config": httpx.Response(200, json=CLI_CONFIG),
                "POST /realms/apiary/protocol/openid-connect/auth/device": httpx.Response(200, json=DEVICE),
                "POST /realms/apiary/protocol/openid-connect/token": [pending, pending, tokens],
                "GET /api/v1/workflows/": page([]),
            }
        )
    )
    result = runner.invoke(cli.app, ["login", "--server", "http://portal.example"])
    assert result.exit_code == 0, result.output
    assert DEVICE["verification_uri_complete"] in result.stderr and "ABCD-EFGH" in result.stderr
    config = tmp_path / "cfg" / "config.json"
    stored = json.loads(config.read_text())
    assert stored["token"] == "jwt-1" and stored["refresh_token"] == "r-1"
    assert stored["oidc"] == {"token_endpoint": CLI_CONFIG["token_endpoint"], "client_id": "apiary-cli"}
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    polls = [r for r in api.requests if r.url.path.endswith("/token")]
    assert len(polls) == 3 and b"device_code=dev-1" in polls[0].content
    assert api.requests[-1].headers["authorization"] == "Bearer jwt-1"  # verified


def test_an_expired_keycloak_token_is_refreshed_before_the_request(runner, use, tmp_path):
    config = tmp_path / "cfg" / "config.json"
    cli.write_config(
        config,
        {
            "server": "http://portal.example",
            "token": "old",
            "refresh_token": "r-1",
            "token_expires_at": 1,
            "oidc": {"token_endpoint": CLI_CONFIG["token_endpoint"], "client_id": "apiary-cli"},
        },
    )
    refreshed = httpx.Response(200, json={"access_token": "new", "refresh_token": "r-2", "expires_in": 300})
    api = use(
        Api(
            {
                "POST /realms/apiary/protocol/openid-connect/token": refreshed,
                "GET /api/v1/workflows/": page([]),
            }
        )
    )
    assert runner.invoke(cli.app, ["list", "--json"]).exit_code == 0
    assert b"grant_type=refresh_token" in api.requests[0].content
    assert api.requests[-1].headers["authorization"] == "Bearer new"
    stored = json.loads(config.read_text())
    assert stored["token"] == "new" and stored["refresh_token"] == "r-2"


def test_login_device_on_a_server_without_keycloak_says_so(runner, use):
    use(Api({}))
    result = runner.invoke(cli.app, ["login", "--device"])
    assert result.exit_code == 1
    assert "does not offer Keycloak sign-in" in result.stderr


def test_a_denied_device_code_fails_cleanly(runner, use, tmp_path):
    use(
        Api(
            {
                "GET /oidc/cli-config": httpx.Response(200, json=CLI_CONFIG),
                "POST /realms/apiary/protocol/openid-connect/auth/device": httpx.Response(200, json=DEVICE),
                "POST /realms/apiary/protocol/openid-connect/token": httpx.Response(
                    400, json={"error": "access_denied"}
                ),
            }
        )
    )
    result = runner.invoke(cli.app, ["login"])
    assert result.exit_code == 5
    assert "sign-in failed: access_denied" in result.stderr
    assert not (tmp_path / "cfg" / "config.json").exists()
