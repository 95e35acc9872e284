"""``apiary-cwl-runner``: run one CWL document through Apiary's engine, as a ``cwl-runner`` does.

::

    apiary-cwl-runner [--outdir DIR] [--quiet] [--batch-system local|slurm] PROCESS [JOB]

It is the runner the CWL conformance suite (``cwltest``) drives, and a way to run a workflow
from a shell without a portal. The document goes through exactly what a portal submission goes
through — ``workflows.services.workflow_submit`` (cwltool loading and validation, the DAG in
the database), the scheduler (``workers.scheduler.advance``, ``finalize_run``, ``reconcile``),
the same job scripts on the configured batch system — but with no web server and no Celery
worker:

* Django runs in this process on a private, throwaway SQLite database and runs folder in a
  temporary directory (removed at the end unless ``--leave-tmpdir``). The migrated database is
  a template cached under ``~/.cache/apiary/cwl-runner/`` (keyed by the migrations' contents)
  and copied for each run.
* The Celery tasks the scheduler enqueues on commit (``advance``, ``finalize_run``,
  ``cancel_jobs``) are put on a local queue that the loop drains by calling the same tasks
  in-process; ``reconcile`` runs every ``--poll`` seconds to notice ended jobs (there is no
  completion push: ``APIARY_CALLBACK_URL`` is empty).
* The documents and data are used in place (``workflow_submit(local_dir=…)``): the run's
  ``src/`` is a link to PROCESS's folder; JOB's relative paths are resolved against JOB's own
  folder, and may name any local file, as with cwltool.

The CWL output object is printed on stdout as JSON and nothing else goes there (logs and the
jobs' own output go to stderr); output files are copied into ``--outdir`` (default: the current
folder) and their locations rewritten to it, as cwltool does. Exit codes: 0 success, 33 a
feature Apiary does not support, 1 anything else (invalid document or inputs, failed workflow).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

EXIT_SUCCESS, EXIT_FAILED, EXIT_UNSUPPORTED = 0, 1, 33
RUNNER_USER = "cwl-runner"
REPO = Path(__file__).resolve().parent.parent
DEFAULT_POLL_SECONDS = {"local": 0.2, "slurm": 0.5}

# What cwltool (UnsupportedRequirement) and Apiary (``CwlError``) say of a feature they lack.
UNSUPPORTED = re.compile(
    r"not support|unsupported requirement|no support for|"
    r"--no-container, but this CommandLineTool has DockerRequirement",
    re.IGNORECASE,
)

# Flags of cwltool's command line that a caller (cwltest, a user's habit) may pass: accepted and
# ignored, so that the positional arguments stay where they are.
IGNORED_VALUE_OPTIONS = (
    "--tmp-outdir-prefix",
    "--cachedir",
    "--basedir",
    "--eval-timeout",
    "--default-container",
    "--preserve-environment",
    "--custom-net",
    "--log-dir",
    "--provenance",
    "--beta-dependency-resolvers-configuration",
    "--mpi-config-file",
    "--on-error",
    "--compute-checksum",
)
IGNORED_FLAGS = (
    "--verbose",
    "--disable-pull",
    "--enable-pull",
    "--parallel",
    "--strict",
    "--non-strict",
    "--rm-tmpdir",
    "--leave-outputs",
    "--move-outputs",
    "--copy-outputs",
    "--enable-ext",
    "--disable-ext",
    "--enable-dev",
    "--timestamps",
    "--no-compute-checksum",
    "--no-read-only",
    "--no-match-user",
    "--strict-memory-limit",
    "--skip-schemas",
    "--relax-path-checks",
    "--preserve-entire-environment",
    "--singularity",
    "--podman",
    "--udocker",
    "--no-doc-cache",
    "--fast-parser",
    "--print-rdf",
    "--validate",
)

log = logging.getLogger("apiary.cwl_runner")


class RunnerError(Exception):
    """A problem of the invocation itself (missing file, bad folder); exit code 1."""


# --- arguments ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apiary-cwl-runner",
        description="Run a CWL document through Apiary's engine on a local or Slurm batch system "
        "and print its output object (the cwl-runner contract).",
    )
    parser.add_argument("process", metavar="PROCESS", help="the CWL document (optionally #fragment)")
    parser.add_argument("job", metavar="JOB", nargs="?", help="the inputs file (YAML or JSON)")
    parser.add_argument("--outdir", default=".", help="where output files go (default: current folder)")
    parser.add_argument(
        "--batch-system",
        choices=["local", "slurm"],
        default=None,
        help="where jobs run (default: $APIARY_BATCH_SYSTEM, else local)",
    )
    parser.add_argument(
        "--no-container",
        action="store_true",
        help="run DockerRequirement steps on the host (APIARY_CONTAINER_RUNTIME=none)",
    )
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors on stderr")
    parser.add_argument("--debug", action="store_true", help="debug logs on stderr")
    parser.add_argument("--tmpdir-prefix", default=None, help="prefix of the private working folder")
    parser.add_argument(
        "--leave-tmpdir",
        "--keep-tmp",
        dest="leave_tmpdir",
        action="store_true",
        help="keep the private working folder (database, job scripts, logs) and print its path",
    )
    parser.add_argument(
        "--poll", type=float, default=None, help="seconds between reconciles (default 0.2; 0.5 on Slurm)"
    )
    parser.add_argument("--version", action="version", version="apiary-cwl-runner 0.1.0")
    for option in IGNORED_VALUE_OPTIONS:
        parser.add_argument(option, dest=f"ignored_{option[2:]}", help=argparse.SUPPRESS)
    for flag in IGNORED_FLAGS:
        parser.add_argument(flag, dest=f"ignored_{flag[2:]}", action="store_true", help=argparse.SUPPRESS)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    bad = [u for u in unknown if not u.startswith("-")]
    if bad:
        parser.error(f"unexpected arguments: {' '.join(bad)}")
    args.ignored_unknown = unknown
    if args.batch_system is None:
        args.batch_system = os.environ.get("APIARY_BATCH_SYSTEM") or "local"
        if args.batch_system not in ("local", "slurm"):
            parser.error(f"APIARY_BATCH_SYSTEM={args.batch_system!r}: choose local or slurm")
    if args.poll is None:
        args.poll = DEFAULT_POLL_SECONDS[args.batch_system]
    return args


# --- where the documents and data are -------------------------------------------------------


def local_path(ref: str) -> str:
    """A path or ``file://`` URI (cwltest passes URIs) as a local path."""
    if ref.startswith("file://"):
        from schema_salad.ref_resolver import uri_file_path

        return uri_file_path(ref)
    return ref


def split_fragment(process: str) -> tuple[Path, str]:
    """``tests/wf.cwl#main`` -> (absolute path, ``main``); a ``file://`` URI is accepted."""
    if process.startswith("file://") and "#" in process:
        uri, _, fragment = process.partition("#")
        return Path(local_path(uri)).resolve(), fragment
    process = local_path(process)
    path, fragment = Path(process), ""
    if not path.exists() and "#" in process:
        head, _, fragment = process.rpartition("#")
        path = Path(head)
    return path.resolve(), fragment


# --- the private Django ---------------------------------------------------------------------


def configure_environment(work: Path, batch_system: str, level: str, no_container: bool = False) -> None:
    """Point Apiary's settings at the private folder; must run before ``django.setup()``.

    The site's image store (``APIARY_IMAGE_STORE``, default ``<repo>/var/images``) and container
    runtime (``APIARY_CONTAINER_RUNTIME``; ``--no-container``: none) are the configured ones;
    archiving is off (the run is thrown away).
    """
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DATABASE_URL": f"sqlite:///{work / 'apiary.sqlite3'}",
            "APIARY_VAR_DIR": str(work / "var"),
            "APIARY_RUNS_DIR": str(work / "runs"),
            "APIARY_CALLBACK_URL": "",
            "CELERY_BROKER_URL": "memory://",
            "APIARY_BATCH_SYSTEM": batch_system,
            "APIARY_LOG_LEVEL": level,
            "APIARY_ARCHIVE_ENABLED": "0",
        }
    )
    os.environ.setdefault("APIARY_IMAGE_STORE", str(REPO / "var" / "images"))
    if no_container:
        os.environ["APIARY_CONTAINER_RUNTIME"] = "none"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "apiary" / "cwl-runner"


def migrations_key() -> str:
    """A hash of every installed app's migrations (and Django's version)."""
    import django
    from django.apps import apps

    digest = hashlib.sha256(django.get_version().encode())
    for config in sorted(apps.get_app_configs(), key=lambda c: c.label):
        for path in sorted((Path(config.path) / "migrations").glob("*.py")):
            digest.update(f"{config.label}/{path.name}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def prepare_database(db_path: Path) -> None:
    """Copy the cached migrated template into place, or migrate and cache it."""
    from django.core.management import call_command
    from django.db import connection

    template = cache_dir() / f"db-{migrations_key()}.sqlite3"
    if template.is_file():
        shutil.copyfile(template, db_path)
        return
    call_command("migrate", verbosity=0, interactive=False)
    connection.close()
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        partial = template.with_name(f"{template.name}.{os.getpid()}.tmp")
        with contextlib.closing(sqlite3.connect(db_path)) as source:
            with contextlib.closing(sqlite3.connect(partial)) as copy:
                source.backup(copy)
        os.replace(partial, template)
    except (OSError, sqlite3.Error) as exc:
        log.debug("could not cache the migrated database: %s", exc)


class LocalQueue:
    """Stands in for the broker: the tasks the scheduler enqueues run here, in this process.

    ``workers.tasks.advance`` / ``finalize_run`` / ``cancel_jobs`` are replaced (in this
    process only) by objects whose ``delay`` appends to the queue; ``drain`` calls the real
    tasks in order. The scheduler's own code is unchanged.
    """

    TASKS = ("advance", "finalize_run", "cancel_jobs")

    def __init__(self) -> None:
        self.items: deque[tuple[str, tuple, dict]] = deque()
        self.tasks: dict[str, Any] = {}

    def install(self) -> None:
        from workers import tasks

        for name in self.TASKS:
            self.tasks[name] = getattr(tasks, name)
            setattr(tasks, name, _Enqueuer(self, name))

    def put(self, name: str, args: tuple, kwargs: dict) -> None:
        self.items.append((name, args, kwargs))

    def drain(self) -> int:
        done = 0
        while self.items:
            name, args, kwargs = self.items.popleft()
            self.tasks[name](*args, **kwargs)  # a Celery task called directly runs here
            done += 1
        return done


class _Enqueuer:
    def __init__(self, queue: LocalQueue, name: str):
        self.queue, self.name = queue, name

    def delay(self, *args, **kwargs) -> None:
        self.queue.put(self.name, args, kwargs)


# --- outputs --------------------------------------------------------------------------------


def relocate_outputs(outputs: dict, outdir: Path, source_dirs: list[Path]) -> dict:
    """Copy the output files into ``outdir`` and point the output object at them (as cwltool).

    Files under ``source_dirs`` (the run folders) and elsewhere (an input passed through) are
    copied, never moved; ``path`` is added and ``nameroot``/``nameext``/``dirname`` dropped, as
    cwltool's main does.
    """
    from cwltool.mutation import MutationManager
    from cwltool.process import relocateOutputs
    from cwltool.stdfsaccess import StdFsAccess
    from cwltool.utils import visit_class

    outdir.mkdir(parents=True, exist_ok=True)
    result = relocateOutputs(
        json.loads(json.dumps(outputs)),
        str(outdir.resolve()),
        {str(p.resolve()) for p in source_dirs},
        "copy",
        StdFsAccess(""),
        compute_checksum=True,
    )

    def loc_to_path(obj: dict) -> None:
        for key in ("path", "nameext", "nameroot", "dirname"):
            obj.pop(key, None)
        if obj["location"].startswith("file://"):
            from schema_salad.ref_resolver import uri_file_path

            obj["path"] = uri_file_path(obj["location"])

    visit_class(result, ("File", "Directory"), loc_to_path)
    visit_class(result, ("File",), MutationManager().unset_generation)
    return result


# --- running --------------------------------------------------------------------------------


def is_unsupported(message: str) -> bool:
    return bool(UNSUPPORTED.search(message or ""))


def _submit(process_path: Path, fragment: str, job_path: Path | None):
    """``workflow_submit`` on the document in place; returns the workflow.

    The document's folder is the submission (``local_dir``); the job file's relative paths are
    resolved against the job file's own folder here, so that it may live anywhere.
    """
    from portal.services import user_ensure
    from workflows import cwl
    from workflows.services import workflow_submit

    inputs_text = None
    if job_path is not None:
        if not job_path.is_file():
            raise RunnerError(f"The inputs file {job_path} does not exist.")
        job_order = cwl.parse_job_order(job_path.read_text(errors="replace"), job_path.name)
        job_order = cwl.resolve_locations(job_order, job_path.parent, root=Path("/"))
        inputs_text = json.dumps(job_order, default=str)
    owner = user_ensure(username=RUNNER_USER)
    main = process_path.name + (f"#{fragment}" if fragment else "")
    log.info("submitting %s (inputs %s) from %s", main, job_path or "none", process_path.parent)
    return workflow_submit(
        owner=owner,
        files={},
        local_dir=process_path.parent,
        main=main,
        inputs_text=inputs_text,
        name=process_path.stem,
        start=True,
    )


def _wait(workflow, queue: LocalQueue, poll: float) -> None:
    from workers import scheduler
    from workflows.states import WORKFLOW_FINISHED

    while True:
        queue.drain()
        workflow.refresh_from_db()
        if workflow.state in WORKFLOW_FINISHED:
            return
        time.sleep(poll)
        scheduler.reconcile()


def _report_failure(workflow) -> bool:
    """Log why the workflow did not complete; True if it hit an unsupported feature."""
    from workflows.states import STEP_UNSUCCESSFUL

    unsupported = is_unsupported(workflow.error)
    log.error(
        "workflow %s ended %s%s", workflow.id, workflow.state, f": {workflow.error}" if workflow.error else ""
    )
    for step in workflow.steps.filter(state__in=STEP_UNSUCCESSFUL).order_by("id"):
        if step.state == "DEP_FAIL":
            continue
        log.error("step %s %s: %s", step.name, step.state, step.error or "(no message)")
        unsupported |= is_unsupported(step.error)
        run = step.runs.order_by("-attempt").first()
        if run is not None:
            for name in ("job.err", "job.out"):
                try:
                    text = (run.run_dir / name).read_text(errors="replace").strip()
                except OSError:
                    continue
                if text:
                    tail = "\n".join(text.splitlines()[-30:])
                    log.error("step %s %s (last lines):\n%s", step.name, name, tail)
    return unsupported


def _cancel(workflow, queue: LocalQueue) -> None:
    from workflows.services import workflow_cancel
    from workflows.states import WORKFLOW_ACTIVE

    with contextlib.suppress(Exception):
        workflow.refresh_from_db()
        if workflow.state in WORKFLOW_ACTIVE:
            workflow_cancel(workflow=workflow, reason="apiary-cwl-runner interrupted")
            queue.drain()


def run(args: argparse.Namespace, work: Path, out) -> int:
    """Everything after argument parsing: set up Django, submit, drive, print the outputs."""
    process_path, fragment = split_fragment(args.process)
    job_path = Path(local_path(args.job)).resolve() if args.job else None
    if not process_path.is_file():
        log.error("The CWL document %s does not exist.", process_path)
        return EXIT_FAILED
    level = "DEBUG" if args.debug else ("WARNING" if args.quiet else "INFO")
    configure_environment(work, args.batch_system, level, no_container=args.no_container)

    import django

    django.setup()
    logging.getLogger("apiary").setLevel(level)
    prepare_database(work / "apiary.sqlite3")

    from portal.errors import ApplicationError
    from workflows.states import WorkflowState

    queue = LocalQueue()
    queue.install()
    try:
        workflow = _submit(process_path, fragment, job_path)
    except RunnerError as exc:
        log.error("%s", exc)
        return EXIT_FAILED
    except ApplicationError as exc:
        log.error("%s", exc.message)
        return EXIT_UNSUPPORTED if is_unsupported(exc.message) else EXIT_FAILED
    try:
        _wait(workflow, queue, args.poll)
    except BaseException:
        _cancel(workflow, queue)
        raise
    if workflow.state != WorkflowState.COMPLETED:
        return EXIT_UNSUPPORTED if _report_failure(workflow) else EXIT_FAILED
    from workflows.storage import workflow_dir

    outputs = relocate_outputs(workflow.outputs or {}, Path(args.outdir), [workflow_dir(workflow.id)])
    json.dump(outputs, out, indent=4, ensure_ascii=False, default=str)
    out.write("\n")
    out.flush()
    log.info("workflow %s completed", workflow.id)
    return EXIT_SUCCESS


def _on_signal(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.ignored_unknown:
        log.debug("ignoring options %s", " ".join(args.ignored_unknown))
    prefix = args.tmpdir_prefix or os.path.join(tempfile.gettempdir(), "apiary-cwl-runner-")
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=Path(prefix).name, dir=Path(prefix).parent)).resolve()
    # Only the output object may reach stdout: anything else this process or the commands it
    # starts would print there (sbatch, libraries) goes to stderr.
    sys.stdout.flush()
    real_stdout = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        return run(args, work, real_stdout)
    except KeyboardInterrupt as exc:
        log.error("interrupted (%s)", exc or "Ctrl-C")
        return EXIT_FAILED
    except Exception as exc:  # the contract: a message on stderr and exit code 1, no traceback spew
        log.error("apiary-cwl-runner failed: %s: %s", type(exc).__name__, exc, exc_info=args.debug)
        return EXIT_FAILED
    finally:
        real_stdout.close()
        if args.leave_tmpdir:
            log.warning("kept the working folder %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
