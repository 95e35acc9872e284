"""``apiary``: the command-line client of Apiary's REST API (``/api/v1/``).

It talks to the server over HTTP only, never through Django. The server and the personal API
token come from ``--server/-s`` and ``--token/-t``, else ``APIARY_SERVER`` / ``APIARY_TOKEN``, else
the config file ``~/.config/apiary/config.json`` (``APIARY_CONFIG`` overrides the path) that
``apiary login`` writes. The default server is ``http://127.0.0.1:8000``.

Exit codes scripts can rely on:

* 0 - success.
* 1 - the API refused the request (a 4xx not listed below, or a 500), or ``query --watch`` saw the workflow
  end in a state other than COMPLETED (a declined confirmation also exits 1), or ``copy`` received an
  archive whose SHA-256 does not match the server's (nothing is saved).
* 2 - usage error: bad arguments, unreadable config, ``cancel``/``delete`` without ``--yes`` and no
  terminal to ask on.
* 3 - not found (404).
* 4 - conflict (409): the workflow's state forbids the action.
* 5 - cannot reach the server (connection error, timeout, 502/503/504) or authentication failed
  (401/403).

Errors print ``error: <message>`` on stderr, never a traceback. ``--json`` prints the API's JSON.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

__all__ = ["app", "Client", "CliError"]

VERSION = "0.1.0"
DEFAULT_SERVER = "http://127.0.0.1:8000"
DEFAULT_CONFIG = Path("~/.config/apiary/config.json")
MAX_SIBLING_BYTES = 50 * 1024 * 1024  # sibling/bundled files above this are left out (explicit ones are not)

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_UNREACHABLE = range(6)

WORKFLOW_FINISHED = frozenset({"COMPLETED", "FAILED", "PARTIAL_FAIL", "CANCELLED", "ARCHIVED"})
STEP_TERMINAL = frozenset({"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "DEP_FAIL", "SKIPPED"})
STATE_STYLES = {
    "COMPLETED": "green",
    "RUNNING": "cyan",
    "SUBMITTED": "blue",
    "PENDING": "blue",
    "READY": "blue",
    "PAUSED": "yellow",
    "PARTIAL_FAIL": "yellow",
    "FAILED": "red",
    "TIMEOUT": "red",
    "DEP_FAIL": "red",
    "CANCELLED": "magenta",
    "ARCHIVED": "dim",
    "SKIPPED": "dim",
    "WAITING": "dim",
}

# Test hooks: tests inject an ``httpx.MockTransport`` here and replace ``_sleep``.
_transport: httpx.BaseTransport | None = None
_sleep = time.sleep


class CliError(Exception):
    """A failure to report as ``error: <message>`` with a documented exit code."""

    def __init__(self, exit_code: int, message: str):
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message


# --- configuration ------------------------------------------------------------------------------


def config_path() -> Path:
    return Path(os.environ.get("APIARY_CONFIG") or DEFAULT_CONFIG).expanduser()


def read_config(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CliError(EXIT_USAGE, f"cannot read the config file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise CliError(EXIT_USAGE, f"the config file {path} does not hold a JSON object")
    return data


def write_config(path: Path, data: dict) -> None:
    """Write the config as JSON, readable by its owner only (file 0600; a new folder 0700)."""
    folder = path.parent
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700)
        folder.chmod(0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        json.dump(data, fh, indent=2)
        fh.write("\n")


def normalize_server(server: str) -> str:
    server = server.strip().rstrip("/")
    if "://" not in server:
        server = "http://" + server
    return server


def resolve_settings(server: str | None, token: str | None) -> tuple[str, str | None]:
    """Server and token: flag, else environment, else config file (server defaults to localhost)."""
    server = server or os.environ.get("APIARY_SERVER") or None
    token = token or os.environ.get("APIARY_TOKEN") or None
    if server is None or token is None:
        stored = read_config(config_path())
        server = server or stored.get("server") or None
        token = token or _fresh_token(stored) or None
    return normalize_server(server or DEFAULT_SERVER), token


REFRESH_MARGIN = 30  # seconds: a Keycloak access token closer than this to its expiry is refreshed


def _fresh_token(stored: dict) -> str | None:
    """The stored token; a Keycloak token (from ``login --device``) is refreshed when about to expire."""
    token = stored.get("token")
    oidc, refresh = stored.get("oidc") or {}, stored.get("refresh_token")
    if not (token and refresh and oidc.get("token_endpoint")):
        return token
    if float(stored.get("token_expires_at") or 0) > time.time() + REFRESH_MARGIN:
        return token
    try:
        with httpx.Client(transport=_transport, timeout=15) as http:
            response = http.post(
                oidc["token_endpoint"],
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": refresh,
                    "client_id": oidc["client_id"],
                },
            )
    except httpx.HTTPError:
        return token  # the server will say the token expired
    if response.status_code != 200:
        return token  # refresh token expired too: `apiary login` again
    _store_oidc_tokens(stored, response.json())
    write_config(config_path(), stored)
    return stored["token"]


def _store_oidc_tokens(stored: dict, tokens: dict) -> None:
    stored["token"] = tokens["access_token"]
    stored["token_expires_at"] = int(time.time()) + int(tokens.get("expires_in") or 60)
    if tokens.get("refresh_token"):
        stored["refresh_token"] = tokens["refresh_token"]


# --- HTTP client --------------------------------------------------------------------------------


class Client:
    """A thin wrapper of ``httpx.Client`` for ``<server>/api/v1/`` mapping failures to CliError."""

    def __init__(self, server: str, token: str | None, *, transport: httpx.BaseTransport | None = None):
        self.server = normalize_server(server)
        self.token = token
        self._origin = httpx.URL(self.server).copy_with(path="/", query=None, fragment=None)
        self._http = httpx.Client(
            base_url=self.server + "/api/v1/",
            transport=transport if transport is not None else _transport,
            timeout=httpx.Timeout(30.0, connect=10.0),
            headers={"User-Agent": f"apiary-cli/{VERSION}"},
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def _headers(self, url: str) -> dict[str, str]:
        """The bearer token, sent only to the configured server's origin."""
        if not self.token:
            return {}
        target = httpx.URL(url)
        if target.is_absolute_url and target.copy_with(path="/", query=None, fragment=None) != self._origin:
            return {}
        return {"Authorization": f"Bearer {self.token}"}

    def request(self, method: str, url: str, **kwargs) -> Any:
        """Send a request (``url`` relative to ``/api/v1/``); return its JSON, or None if empty."""
        try:
            response = self._http.request(method, url, headers=self._headers(url), **kwargs)
        except httpx.TimeoutException as exc:
            raise CliError(EXIT_UNREACHABLE, f"{self.server} did not answer in time ({exc})") from None
        except httpx.HTTPError as exc:
            raise CliError(EXIT_UNREACHABLE, f"cannot reach {self.server}: {exc}") from None
        self.check(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(
                EXIT_REFUSED, f"{response.request.url} answered {response.status_code} without JSON"
            ) from None

    def get(self, url: str, **kwargs) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> Any:
        return self.request("POST", url, **kwargs)

    def check(self, response: httpx.Response) -> None:
        """Raise the CliError matching a non-2xx response."""
        status = response.status_code
        if status < 300:
            return
        if status < 400:
            where = response.headers.get("location", "?")
            raise CliError(EXIT_REFUSED, f"the server redirected to {where}; use that address as --server")
        response.read()
        message, extra = _error_body(response)
        if status in (401, 403):
            code = EXIT_UNREACHABLE
            if not self.token:
                message += " (no API token configured: run `apiary login --token ...` or set APIARY_TOKEN)"
        elif status == 404:
            code = EXIT_NOT_FOUND
        elif status == 409:
            code = EXIT_CONFLICT
        elif status in (502, 503, 504):
            code = EXIT_UNREACHABLE
        else:
            code = EXIT_REFUSED
        if extra:
            message += " " + json.dumps(extra, ensure_ascii=False, default=str)
        raise CliError(code, message)

    def download(self, url: str, dest: Path) -> int:
        """Stream ``url`` into ``dest`` (through a ``.part`` file); return the byte count."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        size = 0
        try:
            with self._http.stream("GET", url, headers=self._headers(url), timeout=300.0) as response:
                self.check(response)
                with open(part, "wb") as fh:
                    for chunk in response.iter_bytes():
                        fh.write(chunk)
                        size += len(chunk)
        except httpx.HTTPError as exc:
            part.unlink(missing_ok=True)
            raise CliError(EXIT_UNREACHABLE, f"cannot download {url}: {exc}") from None
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        part.replace(dest)
        return size

    def download_verified(self, url: str, dest: Path) -> tuple[int, str]:
        """Stream ``url`` into ``dest`` checking the server's SHA-256 and length; (bytes, sha256).

        The expected digest comes from ``X-Checksum-SHA256`` (or ``Digest: sha-256=<base64>``).
        On a mismatch, or without a digest, nothing is left at ``dest`` and CliError is raised.
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        digest, size = hashlib.sha256(), 0
        try:
            with self._http.stream("GET", url, headers=self._headers(url), timeout=300.0) as response:
                self.check(response)
                expected = _expected_sha256(response.headers)
                length = response.headers.get("content-length")
                with open(part, "wb") as fh:
                    for chunk in response.iter_bytes():
                        fh.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
        except httpx.HTTPError as exc:
            part.unlink(missing_ok=True)
            raise CliError(EXIT_UNREACHABLE, f"cannot download {url}: {exc}") from None
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        actual = digest.hexdigest()
        problem = None
        if expected is None:
            problem = "the server sent no SHA-256 checksum (X-Checksum-SHA256 or Digest); nothing saved"
        elif length is not None and length.isdigit() and int(length) != size:
            problem = f"received {size} bytes but the server announced {length}; nothing saved"
        elif actual != expected:
            problem = (
                f"checksum mismatch: got sha256 {actual}, the server announced {expected}; nothing saved"
            )
        if problem:
            part.unlink(missing_ok=True)
            raise CliError(EXIT_REFUSED, problem)
        part.replace(dest)
        return size, actual


def _expected_sha256(headers: httpx.Headers) -> str | None:
    value = headers.get("x-checksum-sha256")
    if value:
        return value.strip().lower()
    for part in headers.get("digest", "").split(","):
        algorithm, _, encoded = part.strip().partition("=")
        if algorithm.lower() == "sha-256" and encoded:
            try:
                return base64.b64decode(encoded).hex()
            except ValueError:
                return None
    return None


def _error_body(response: httpx.Response) -> tuple[str, dict]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        extra = body.get("extra")
        return str(body["message"]), extra if isinstance(extra, dict) else {}
    if isinstance(body, dict) and body.get("detail"):
        return str(body["detail"]), {}
    message = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    if response.headers.get("content-type", "").startswith("text/plain") and response.text.strip():
        message += ": " + response.text.strip().splitlines()[0][:200]
    return message, {}


def _wf(workflow_id: str, *rest: str) -> str:
    """The API path of a workflow (or of something below it)."""
    return "/".join(["workflows", quote(workflow_id, safe=""), *rest]) + ("" if rest else "/")


# --- CLI state and error handling ---------------------------------------------------------------


@dataclass
class State:
    server_flag: str | None = None
    token_flag: str | None = None
    out: Console = field(default_factory=Console)
    err: Console = field(default_factory=lambda: Console(stderr=True))
    _client: Client | None = None

    def client(self) -> Client:
        if self._client is None:
            server, token = resolve_settings(self.server_flag, self.token_flag)
            self._client = Client(server, token)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _state(ctx: typer.Context) -> State:
    if not isinstance(ctx.obj, State):
        ctx.obj = State()
    return ctx.obj


def handle_errors(fn):
    """Turn CliError into ``error: ...`` on stderr and its exit code; Ctrl-C into exit 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CliError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _note(state: State, text: str) -> None:
    """A remark for humans on stderr (stdout stays clean for scripts)."""
    state.err.print(text, style="dim", highlight=False, markup=False, soft_wrap=True)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


EPILOG = """Server and token: --server/--token, else APIARY_SERVER/APIARY_TOKEN, else
~/.config/apiary/config.json (APIARY_CONFIG overrides the path; `apiary login` writes it).

Exit codes:

* 0 ok
* 1 the API refused the request (other 4xx), or `query --watch` saw the workflow end not COMPLETED,
  or `copy` got an archive whose checksum does not match
* 2 usage error
* 3 not found (404)
* 4 conflict with the workflow's state (409)
* 5 cannot reach the server, or authentication failed (401/403)
"""

app = typer.Typer(
    name="apiary",
    help="Submit, watch and manage CWL workflows on an Apiary portal through its REST API.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option("--server", "-s", help=f"Portal address (env APIARY_SERVER; default {DEFAULT_SERVER})."),
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", "-t", help="Personal API token (env APIARY_TOKEN).")
    ] = None,
) -> None:
    state = _state(ctx)
    state.server_flag, state.token_flag = server, token
    ctx.call_on_close(state.close)


# --- rendering ----------------------------------------------------------------------------------


def _show(console: Console, renderable) -> None:
    """Print; to a file or pipe at the renderable's natural width, so that nothing is cut."""
    if console.is_terminal:
        console.print(renderable)
    else:
        width = Measurement.get(console, console.options.update_width(1000), renderable).maximum
        console.width = max(width, 40)
        console.print(renderable, crop=False)


def _when(value: str | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    return moment.strftime(fmt)


def _state_text(state: str | None) -> Text:
    state = state or "?"
    return Text(state, style=STATE_STYLES.get(state, ""))


def _state_cell(workflow: dict) -> Text:
    """The state, with how an archived workflow ended: ``ARCHIVED (COMPLETED)``."""
    text = _state_text(workflow.get("state"))
    outcome = workflow.get("outcome")
    if workflow.get("state") == "ARCHIVED" and outcome:
        text.append(" (")
        text.append_text(_state_text(outcome))
        text.append(")")
    return text


def _succeeded(workflow: dict) -> bool:
    """Completed, or archived after completing."""
    state = workflow.get("state")
    return state == "COMPLETED" or (state == "ARCHIVED" and workflow.get("outcome") == "COMPLETED")


def _progress(workflow: dict) -> str:
    return f"{workflow.get('steps_done') or 0}/{workflow.get('steps_total') or 0}"


def render_list(results: list[dict], width: int = 200) -> Table:
    """The workflows table; narrower terminals get shorter dates, then none."""
    dates = "%Y-%m-%d %H:%M" if width >= 110 else "%m-%d %H:%M" if width >= 95 else None
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("id", no_wrap=True, min_width=36)
    table.add_column("name")
    table.add_column("state", no_wrap=True)
    table.add_column("steps", justify="right", no_wrap=True)
    if dates:
        table.add_column("created", no_wrap=True)
        table.add_column("ended", no_wrap=True)
    for w in results:
        cells = [Text(str(w.get("id", ""))), Text(str(w.get("name", ""))), _state_cell(w)]
        cells.append(_progress(w))
        if dates:
            cells += [_when(w.get("created_at"), dates), _when(w.get("ended_at"), dates)]
        table.add_row(*cells)
    return table


def render_workflow(detail: dict) -> Group:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("workflow", Text(f"{detail.get('id', '')}  {detail.get('name', '')}"))
    head.add_row("state", _state_cell(detail))
    head.add_row("steps", f"{_progress(detail)} done")
    for key in ("created_at", "started_at", "ended_at"):
        if detail.get(key):
            head.add_row(key.removesuffix("_at"), _when(detail[key]))
    archive = detail.get("archive")
    if isinstance(archive, dict):
        head.add_row("archive", Text(f"{archive.get('size')} bytes, sha256 {archive.get('sha256')}"))
    if detail.get("source_workflow_id"):
        source = f"workflow {detail['source_workflow_id']}"
        if detail.get("source_archive_sha256"):
            source += f", archive sha256 {detail['source_archive_sha256']}"
        head.add_row("re-executed from", Text(source))
    if detail.get("error"):
        head.add_row("error", Text(str(detail["error"]), style="red"))
    steps = Table(box=box.SIMPLE_HEAD)
    for name, options in [
        ("step", {}),
        ("state", {"no_wrap": True}),
        ("job id", {"no_wrap": True}),
        ("node", {}),
        ("started", {}),
        ("ended", {}),
        ("exit", {"justify": "right"}),
    ]:
        steps.add_column(name, **options)
    problems = []
    for s in detail.get("steps") or []:
        exit_code = s.get("exit_code")
        steps.add_row(
            Text(str(s.get("name", ""))),
            _state_text(s.get("state")),
            Text(str(s.get("batch_job_id") or "")),
            Text(str(s.get("node") or "")),
            _when(s.get("started_at")),
            _when(s.get("ended_at")),
            "" if exit_code is None else str(exit_code),
        )
        if s.get("error"):
            problems.append(Text(f"{s.get('name')}: {s['error']}", style="red"))
    return Group(head, Text(""), steps, *problems)


# --- submission packing -------------------------------------------------------------------------


@dataclass
class Submission:
    files: dict[str, bytes] = field(default_factory=dict)
    main: str | None = None
    inputs: str | None = None
    notes: list[str] = field(default_factory=list)


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _inside(path: Path, folder: Path) -> Path | None:
    """``path`` relative to ``folder`` if it lies inside it, else None."""
    try:
        return path.resolve().relative_to(folder.resolve())
    except ValueError:
        return None


def _guess_main(folder: Path) -> str | None:
    for preferred in ("workflow.cwl", "main.cwl"):
        if (folder / preferred).is_file():
            return preferred
    top = sorted(p.name for p in folder.glob("*.cwl") if p.is_file())
    return top[0] if len(top) == 1 else None


def _add_explicit(sub: Submission, path: Path, name: str) -> None:
    data = path.read_bytes()
    if name in sub.files and sub.files[name] != data:
        sub.notes.append(f"{path} replaces the file {name} of the workflow's folder")
    sub.files[name] = data


def pack_bundle(folder: Path, main: str | None, extra: list[Path], inputs: Path | None) -> Submission:
    """The whole folder (recursively) as one in-memory .tar.gz; files outside it uploaded alongside."""
    sub = Submission(main=main)
    forced = {}
    outside = []
    for path in [*extra, *([inputs] if inputs else [])]:
        relative = _inside(path, folder)
        if relative is None:
            outside.append(path)
        else:
            forced[relative.as_posix()] = path
    if inputs is not None:
        relative = _inside(inputs, folder)
        sub.inputs = relative.as_posix() if relative is not None else inputs.name
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        members = {}
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if not path.is_file() or _hidden(relative):
                continue
            if path.stat().st_size > MAX_SIBLING_BYTES and relative.as_posix() not in forced:
                sub.notes.append(f"left out {relative} (over {MAX_SIBLING_BYTES // 2**20} MB)")
                continue
            members[relative.as_posix()] = path
        members.update(forced)
        for name, path in sorted(members.items()):
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(path.stat().st_mtime)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    sub.files[f"{folder.resolve().name or 'workflow'}.tar.gz"] = buffer.getvalue()
    for path in outside:
        _add_explicit(sub, path, path.name)
    return sub


def pack_files(document: Path, extra: list[Path], inputs: Path | None) -> Submission:
    """The main document, its non-hidden siblings up to 50 MB, the inputs file and extra files."""
    folder = document.parent
    sub = Submission(main=document.name)
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path == document:
            continue
        if path.stat().st_size > MAX_SIBLING_BYTES:
            sub.notes.append(
                f"left out {path.name} (over {MAX_SIBLING_BYTES // 2**20} MB; name it to send it)"
            )
            continue
        sub.files[path.name] = path.read_bytes()
    sub.files[document.name] = document.read_bytes()
    for path in [*extra, *([inputs] if inputs else [])]:
        _add_explicit(sub, path, path.name)
    if inputs is not None:
        sub.inputs = inputs.name
    return sub


def pack_submission(
    workflow: Path, extra: list[Path], inputs: Path | None, *, bundle: bool, main: str | None
) -> Submission:
    """What to upload for ``apiary submit``: loose files, or a bundle of the workflow's folder."""
    if workflow.is_dir():
        return pack_bundle(workflow, main or _guess_main(workflow), extra, inputs)
    folder = workflow.parent
    # A file named from a subfolder keeps its place (and its relative references) only in a bundle.
    named = [*extra, *([inputs] if inputs else [])]
    nested = [p for p in named if len((_inside(p, folder) or Path()).parts) > 1]
    if not bundle and not nested:
        return pack_files(workflow, extra, inputs)
    sub = pack_bundle(folder, main or workflow.name, extra, inputs)
    if nested and not bundle:
        sub.notes.insert(
            0, f"sending {folder} as a bundle to keep the layout of {', '.join(map(str, nested))}"
        )
    return sub


# --- commands -----------------------------------------------------------------------------------


class Stream(StrEnum):
    stdout = "stdout"
    stderr = "stderr"
    script = "script"


JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
IdArg = Annotated[str, typer.Argument(metavar="ID", help="The workflow id.")]


@app.command()
@handle_errors
def submit(
    ctx: typer.Context,
    workflow: Annotated[
        Path,
        typer.Argument(
            exists=True,
            readable=True,
            metavar="WORKFLOW",
            help="The main .cwl document, or the workflow's folder.",
        ),
    ],
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            metavar="FILE",
            help="Extra files: tools, data the inputs name.",
        ),
    ] = None,
    inputs: Annotated[
        str | None,
        typer.Option("--inputs", "-i", help="The inputs (job order) YAML/JSON file; '-' reads stdin."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="A name for the workflow.")] = None,
    bundle: Annotated[
        bool, typer.Option("--bundle", "-b", help="Send the document's whole folder as one .tar.gz.")
    ] = False,
    main_doc: Annotated[
        str | None, typer.Option("--main", help="The main document's path inside a folder/bundle.")
    ] = None,
    start: Annotated[bool, typer.Option("--start/--no-start", help="Start it right away.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Upload a CWL workflow (and its inputs) and start it; print the new workflow's id.

    For a .cwl file, every non-hidden file next to it (up to 50 MB each) is sent too, so
    `apiary submit examples/grep-wc/workflow.cwl -i examples/grep-wc/inputs.yml` just works.
    For a folder, or with --bundle, the whole folder goes as one .tar.gz (use this when tools
    live in subfolders).
    """
    state = _state(ctx)
    inputs_path = None
    inputs_text = None
    if inputs == "-":
        inputs_text = sys.stdin.read()
    elif inputs is not None:
        inputs_path = Path(inputs)
        if not inputs_path.is_file():
            raise typer.BadParameter(f"{inputs} is not a file", param_hint="'--inputs'")
    sub = pack_submission(workflow, files or [], inputs_path, bundle=bundle, main=main_doc)
    for note in sub.notes:
        _note(state, f"note: {note}")
    data = {"start": "true" if start else "false"}
    for key, value in (
        ("main", sub.main),
        ("inputs", sub.inputs),
        ("inputs_text", inputs_text),
        ("name", name),
    ):
        if value is not None:
            data[key] = value
    uploads = [
        ("files", (fname, content, "application/octet-stream")) for fname, content in sub.files.items()
    ]
    detail = state.client().post("workflows/", data=data, files=uploads, timeout=300.0)
    if as_json:
        _print_json(detail)
        return
    typer.echo(detail["id"])
    _note(
        state,
        f"submitted {detail.get('name', '')!r} ({detail.get('state', '?')}); "
        f"follow it with: apiary query {detail['id']} --watch",
    )


def _confirm(state: State, action: str, workflow_id: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise CliError(EXIT_USAGE, f"refusing to {action} workflow {workflow_id} without --yes (no terminal)")
    detail = state.client().get(_wf(workflow_id))
    question = f"{action.capitalize()} workflow {workflow_id} ({detail.get('name')}, {detail.get('state')})?"
    if not typer.confirm(question, default=False, err=True):
        typer.echo("not done", err=True)
        raise typer.Exit(EXIT_REFUSED)


def _action(ctx: typer.Context, action: str, workflow_id: str, as_json: bool) -> None:
    state = _state(ctx)
    detail = state.client().post(_wf(workflow_id, action, ""))
    if as_json:
        _print_json(detail)
    else:
        line = Text(f"{detail.get('id', workflow_id)}: ")
        line.append_text(_state_text(detail.get("state")))
        state.out.print(line)


@app.command()
@handle_errors
def start(ctx: typer.Context, workflow_id: IdArg, as_json: JsonOpt = False) -> None:
    """Start a workflow submitted with --no-start."""
    _action(ctx, "start", workflow_id, as_json)


@app.command()
@handle_errors
def pause(ctx: typer.Context, workflow_id: IdArg, as_json: JsonOpt = False) -> None:
    """Pause a workflow: no new steps are submitted; running jobs finish."""
    _action(ctx, "pause", workflow_id, as_json)


@app.command()
@handle_errors
def resume(ctx: typer.Context, workflow_id: IdArg, as_json: JsonOpt = False) -> None:
    """Resume a paused workflow."""
    _action(ctx, "resume", workflow_id, as_json)


@app.command()
@handle_errors
def cancel(ctx: typer.Context, workflow_id: IdArg, yes: YesOpt = False, as_json: JsonOpt = False) -> None:
    """Cancel a workflow and its batch jobs (asks first unless --yes)."""
    _confirm(_state(ctx), "cancel", workflow_id, yes)
    _action(ctx, "cancel", workflow_id, as_json)


@app.command()
@handle_errors
def delete(ctx: typer.Context, workflow_id: IdArg, yes: YesOpt = False) -> None:
    """Delete a workflow and its files (asks first unless --yes)."""
    state = _state(ctx)
    _confirm(state, "delete", workflow_id, yes)
    state.client().request("DELETE", _wf(workflow_id))
    state.out.print(f"deleted {workflow_id}", highlight=False, markup=False)


@app.command("list")
@handle_errors
def list_(
    ctx: typer.Context,
    states: Annotated[
        list[str] | None,
        typer.Option("--state", "-S", help="Only these states (repeat or comma-separate: RUNNING,PAUSED)."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Only names containing this.")] = None,
    all_pages: Annotated[bool, typer.Option("--all-pages", "-a", help="Fetch every page.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Page size.")] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the ids.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List your workflows, newest first."""
    state = _state(ctx)
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    wanted = [s.strip().upper() for item in states or [] for s in item.split(",") if s.strip()]
    if wanted:
        params["state"] = ",".join(wanted)
    if name:
        params["name"] = name
    page = state.client().get("workflows/", params=params)
    results = list(page.get("results") or [])
    count = int(page.get("count") or len(results))
    while all_pages and page.get("next") and page.get("results") and offset + len(results) < count:
        params["offset"] = offset + len(results)
        page = state.client().get("workflows/", params=params)
        results.extend(page.get("results") or [])
    if as_json:
        _print_json(
            {"count": count, "next": None, "previous": None, "results": results} if all_pages else page
        )
    elif quiet:
        for w in results:
            typer.echo(w.get("id"))
    else:
        _show(state.out, render_list(results, state.out.width if state.out.is_terminal else 200))
        if count > offset + len(results):
            _note(
                state, f"{len(results)} of {count} workflows shown; see the rest with --all-pages or --offset"
            )


@app.command()
@handle_errors
def query(
    ctx: typer.Context,
    workflow_id: IdArg,
    watch: Annotated[
        bool,
        typer.Option("--watch", "-w", help="Refresh until the workflow finishes; exit 1 unless COMPLETED."),
    ] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.0, help="Seconds between refreshes.")] = 2.0,
    as_json: JsonOpt = False,
) -> None:
    """Show a workflow's state and its steps (batch job, node, times, exit code)."""
    state = _state(ctx)
    client = state.client()
    if not watch:
        detail = client.get(_wf(workflow_id))
        if as_json:
            _print_json(detail)
        else:
            _show(state.out, render_workflow(detail))
        return
    if as_json or not state.out.is_terminal:
        detail = _poll(client, workflow_id, interval, None if as_json else state.err)
        if as_json:
            _print_json(detail)
        else:
            _show(state.out, render_workflow(detail))
    else:
        with Live(console=state.out, auto_refresh=False) as live:
            detail = _poll(client, workflow_id, interval, None, live)
    raise typer.Exit(EXIT_OK if _succeeded(detail) else EXIT_REFUSED)


def _poll(client: Client, workflow_id: str, interval: float, log: Console | None, live: Live | None = None):
    """Fetch the workflow until it is finished; report progress on ``live`` or as lines on ``log``."""
    last = None
    while True:
        detail = client.get(_wf(workflow_id))
        if live is not None:
            live.update(render_workflow(detail), refresh=True)
        status = f"{detail.get('state')} {_progress(detail)}"
        if log is not None and status != last:
            log.print(f"{datetime.now():%H:%M:%S} {status}", highlight=False, markup=False, soft_wrap=True)
        last = status
        if detail.get("state") in WORKFLOW_FINISHED:
            return detail
        _sleep(interval)


@app.command()
@handle_errors
def logs(
    ctx: typer.Context,
    workflow_id: IdArg,
    step: Annotated[str, typer.Argument(metavar="STEP", help="The step's name.")],
    stream: Annotated[Stream, typer.Option("--stream", help="Which log.")] = Stream.stdout,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the step ends.")
    ] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.0, help="Seconds between polls.")] = 2.0,
) -> None:
    """Print a step's job output (stdout, stderr) or its batch script."""
    client = _state(ctx).client()
    url = _wf(workflow_id, "steps", quote(step, safe="/"), "logs", stream.value)
    offset = 0
    while True:
        body = client.get(url, params={"offset": offset})
        text = body.get("text") or ""
        if text:
            typer.echo(text, nl=False)
            sys.stdout.flush()
        new_offset = max(offset, int(body.get("offset") or 0))
        if new_offset > offset:  # there may be more already: read on without waiting
            offset = new_offset
            continue
        if not follow or body.get("state") in STEP_TERMINAL:
            return
        _sleep(interval)


def iter_files(value: Any):
    """Every CWL File object in an output object (including secondaryFiles and Directory listings)."""
    if isinstance(value, list):
        for item in value:
            yield from iter_files(item)
    elif isinstance(value, dict):
        if value.get("class") == "File":
            yield value
        for key, item in value.items():
            if key != "contents":
                yield from iter_files(item)


def _safe_relative(text: str) -> Path | None:
    relative = Path(text)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        return None
    return relative


@app.command()
@handle_errors
def outputs(
    ctx: typer.Context,
    workflow_id: IdArg,
    download: Annotated[
        Path | None,
        typer.Option("--download", "-d", file_okay=False, help="Fetch every output File into this folder."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a workflow's CWL output object; --download fetches its files.

    Files are saved as DIR/<basename>; when basenames clash, as DIR/<path in the workflow>.
    """
    state = _state(ctx)
    client = state.client()
    result = client.get(_wf(workflow_id, "outputs"))
    if as_json:
        _print_json(result)
    elif result:
        state.out.print_json(data=result)
    else:
        _note(state, "no outputs (yet)")
    if download is None:
        return
    log = state.err if as_json else state.out
    taken: set[Path] = set()
    for file in iter_files(result):
        path = file.get("path")
        location = str(file.get("location") or "")
        if path:
            url = _wf(workflow_id, "files", quote(str(path), safe="/"))
        elif location.startswith(("http://", "https://")):
            url = location
        else:
            log.print(
                f"skipped {location or file.get('basename')}: not downloadable", markup=False, soft_wrap=True
            )
            continue
        basename = _safe_relative(str(file.get("basename") or Path(str(path or location)).name))
        target = download / basename.name if basename else None
        if target is None or target in taken:
            relative = _safe_relative(str(path or ""))
            if relative is None:
                log.print(f"skipped {location}: no safe file name", markup=False, soft_wrap=True)
                continue
            target = download / relative
        taken.add(target)
        size = client.download(url, target)
        log.print(f"{target} ({size} bytes)", highlight=False, markup=False, soft_wrap=True)


class DagFormat(StrEnum):
    graphml = "graphml"
    json = "json"
    png = "png"


@app.command()
@handle_errors
def dag(
    ctx: typer.Context,
    workflow_id: IdArg,
    fmt: Annotated[DagFormat, typer.Option("--format", help="GraphML, JSON, or PNG (graphviz).")] = (
        DagFormat.graphml
    ),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to FILE (PNG default: ID.png).")
    ] = None,
) -> None:
    """Write a workflow's DAG (steps, their states, dependencies) from the server's graph store.

    GraphML and JSON go to stdout unless -o is given; PNG needs graphviz's `dot` on this machine
    (exit 1 if it is missing).
    """
    import shutil
    import subprocess

    from workflows.graph.formats import to_dot, to_graphml

    data = _state(ctx).client().get(_wf(workflow_id, "dag"), params={"format": "json"})
    if fmt == DagFormat.png:
        dot = shutil.which("dot")
        if dot is None:
            raise CliError(EXIT_REFUSED, "PNG needs graphviz's `dot`, which is not installed (apt graphviz)")
        target = output or Path(f"{workflow_id}.png")
        done = subprocess.run(
            [dot, "-Tpng", "-o", str(target)], input=to_dot(data), text=True, capture_output=True, check=False
        )
        if done.returncode != 0:
            raise CliError(EXIT_REFUSED, f"dot failed: {done.stderr.strip()[:300]}")
        typer.echo(str(target))
        return
    text = to_graphml(data) if fmt == DagFormat.graphml else json.dumps(data, indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(str(output))


@app.command()
@handle_errors
def copy(
    ctx: typer.Context,
    workflow_id: IdArg,
    dest: Annotated[
        Path | None,
        typer.Argument(metavar="[DEST]", help="A folder (default: here) or a file name for the .tgz."),
    ] = None,
) -> None:
    """Download an ARCHIVED workflow's archive as ID.tgz and verify its SHA-256.

    The archive holds the CWL documents, inputs, job scripts, logs, step metadata and outputs;
    `apiary --server OTHER reexecute ID.tgz` runs it again on any Apiary. Exits 4 if the workflow
    is not archived yet, 1 (and saves nothing) if the checksum does not match.
    """
    state = _state(ctx)
    target = dest or Path(".")
    if target.is_dir() or str(target).endswith(("/", os.sep)):
        target = target / f"{workflow_id}.tgz"
    size, sha256 = state.client().download_verified(_wf(workflow_id, "archive"), target)
    typer.echo(str(target))
    _note(state, f"{size} bytes, sha256 {sha256} (verified)")


@app.command()
@handle_errors
def reexecute(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            metavar="ARCHIVE_OR_ID",
            help="An archive (.tgz, e.g. from `apiary copy`) or an archived workflow's id.",
        ),
    ],
    name: Annotated[str | None, typer.Option("--name", "-n", help="A name for the new workflow.")] = None,
    inputs: Annotated[
        Path | None,
        typer.Option(
            "--inputs",
            "-i",
            exists=True,
            dir_okay=False,
            readable=True,
            help="YAML/JSON inputs overriding the archived ones (File paths relative to the main document).",
        ),
    ] = None,
    start: Annotated[bool, typer.Option("--start/--no-start", help="Start it right away.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Run an archived workflow again as a new workflow (new id, every state reset); print its id."""
    state = _state(ctx)
    data = {"start": "true" if start else "false"}
    if name:
        data["name"] = name
    if inputs is not None:
        data["inputs_text"] = inputs.read_text()
    path = Path(source)
    if path.is_file():
        with open(path, "rb") as fh:
            detail = state.client().post(
                "workflows/reexecute",
                data=data,
                files=[("archive", (path.name, fh, "application/gzip"))],
                timeout=600.0,
            )
    elif _looks_like_id(source):
        detail = state.client().post("workflows/reexecute", data={**data, "workflow": source}, timeout=600.0)
    else:
        raise CliError(EXIT_USAGE, f"{source} is neither an archive file nor a workflow id")
    if as_json:
        _print_json(detail)
        return
    typer.echo(detail["id"])
    _note(
        state,
        f"re-executed {detail.get('source_workflow_id')} as {detail.get('name', '')!r} "
        f"({detail.get('state', '?')}); follow it with: apiary query {detail['id']} --watch",
    )


def _looks_like_id(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}", text.strip()))


@app.command()
@handle_errors
def login(
    ctx: typer.Context,
    token: Annotated[
        str | None, typer.Option("--token", "-t", help="A personal API token from the portal's Tokens page.")
    ] = None,
    server: Annotated[str | None, typer.Option("--server", "-s", help="The portal's address.")] = None,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Check the token against the server first.")
    ] = True,
    device: Annotated[
        bool,
        typer.Option(
            "--device",
            help="Sign in through Keycloak (device authorization grant): open the printed address, "
            "enter the code. The default without --token when the server uses Keycloak.",
        ),
    ] = False,
) -> None:
    """Store the server and a token in the config file (mode 0600).

    Either a personal API token (--token; create it on the portal's Tokens page, SERVER/tokens/),
    or a Keycloak token obtained by the device authorization grant (--device, or no --token on a
    server that uses Keycloak); its refresh token is stored too and used when it expires.
    """
    state = _state(ctx)
    token = token or state.token_flag
    server = normalize_server(
        server or state.server_flag or os.environ.get("APIARY_SERVER") or _stored_server() or DEFAULT_SERVER
    )
    oidc = None
    if not token:
        oidc = _oidc_config(server, required=device)
    if oidc is not None:
        tokens = _device_grant(state, oidc)
        _save_login(state, server, tokens["access_token"], verify, oidc=oidc, tokens=tokens)
        return
    if not token:
        if not sys.stdin.isatty():
            raise CliError(EXIT_USAGE, "give the token with --token (no terminal to ask on)")
        token = typer.prompt("API token", hide_input=True, err=True)
    _save_login(state, server, token, verify)


def _oidc_config(server: str, *, required: bool) -> dict | None:
    """The server's Keycloak settings for the CLI (``/oidc/cli-config``); None if it has none."""
    try:
        with httpx.Client(transport=_transport, timeout=15) as http:
            response = http.get(server + "/oidc/cli-config")
        if response.status_code == 200:
            data = response.json()
            if data.get("device_authorization_endpoint") and data.get("token_endpoint"):
                return data
    except (httpx.HTTPError, ValueError) as exc:
        if required:
            raise CliError(EXIT_UNREACHABLE, f"cannot reach {server}: {exc}") from None
        return None
    if required:
        raise CliError(EXIT_REFUSED, f"{server} does not offer Keycloak sign-in; use --token")
    return None


def _device_grant(state: State, oidc: dict) -> dict:
    """RFC 8628: ask for a device code, show where to approve it, poll until approved."""
    client_id = oidc["client_id"]
    try:
        with httpx.Client(transport=_transport, timeout=15) as http:
            response = http.post(
                oidc["device_authorization_endpoint"], data={"client_id": client_id, "scope": "openid"}
            )
            if response.status_code != 200:
                raise CliError(
                    EXIT_REFUSED, f"Keycloak refused the device code request: {response.text[:300]}"
                )
            grant = response.json()
            where = grant.get("verification_uri_complete") or grant["verification_uri"]
            state.err.print(
                f"To sign in, open {where}\nand confirm the code {grant['user_code']} "
                f"(or open {grant['verification_uri']} and enter it).",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            interval = float(grant.get("interval") or 5)
            deadline = time.monotonic() + float(grant.get("expires_in") or 600)
            while time.monotonic() < deadline:
                _sleep(interval)
                response = http.post(
                    oidc["token_endpoint"],
                    data={
                        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                        "device_code": grant["device_code"],
                        "client_id": client_id,
                    },
                )
                if response.status_code == 200:
                    return response.json()
                error = _oauth_error(response)
                if error == "authorization_pending":
                    continue
                if error == "slow_down":
                    interval += 5
                    continue
                raise CliError(EXIT_UNREACHABLE, f"sign-in failed: {error}")
    except httpx.HTTPError as exc:
        raise CliError(EXIT_UNREACHABLE, f"cannot reach Keycloak: {exc}") from None
    raise CliError(EXIT_UNREACHABLE, "sign-in failed: the code expired before it was confirmed")


def _oauth_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    return str(body.get("error") or f"HTTP {response.status_code}")


def _save_login(
    state: State,
    server: str,
    token: str,
    verify: bool,
    *,
    oidc: dict | None = None,
    tokens: dict | None = None,
) -> None:
    if verify:
        client = Client(server, token)
        try:
            client.get("workflows/", params={"limit": 1})
        finally:
            client.close()
    path = config_path()
    try:
        stored = read_config(path)
    except CliError as exc:
        _note(state, f"note: replacing it: {exc.message}")
        stored = {}
    for key in ("refresh_token", "token_expires_at", "oidc"):
        stored.pop(key, None)
    stored.update(server=server, token=token)
    if oidc is not None and tokens is not None:
        _store_oidc_tokens(stored, tokens)
        stored["oidc"] = {"token_endpoint": oidc["token_endpoint"], "client_id": oidc["client_id"]}
    write_config(path, stored)
    state.out.print(f"logged in to {server}; saved in {path}", highlight=False, markup=False)


def _stored_server() -> str | None:
    try:
        return read_config(config_path()).get("server")
    except CliError:
        return None


if __name__ == "__main__":  # pragma: no cover
    app()
