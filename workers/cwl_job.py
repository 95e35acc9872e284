"""A CWL tool invocation as a batch job, with cwltool doing the CWL work.

cwltool builds the job (command line, environment, staging map, resources) exactly as it would
run it locally; instead of executing it we stage the inputs, render a job script and hand it to
the batch system. Outputs are collected afterwards by building the same job again: the job is a
deterministic function of the tool, the input object and the run folder's paths, which are
fixed (``outdir``, ``tmp``, ``stage`` inside the run folder). That keeps the job script free of
any Python and lets collection happen in a worker, where cwltool is.

Containers. cwltool always builds the job for the host (``use_container`` off), with host paths
on the command line; a step with a ``DockerRequirement`` (under ``requirements`` or ``hints``) is
then wrapped by the configured container runtime (``APIARY_CONTAINER_RUNTIME``, see
``workers/runtimes/``), which binds those paths at the same place inside the container. Output
collection is therefore the same with or without a container. In the container the command gets
CWL's environment without the worker's ``PATH`` (the image's applies, unless an
``EnvVarRequirement`` sets one). A missing image fails the step here, before submission.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from cwltool.command_line_tool import CommandLineTool
from cwltool.context import RuntimeContext
from cwltool.errors import WorkflowException
from cwltool.job import CommandLineJob, relink_initialworkdir
from cwltool.pathmapper import PathMapper
from cwltool.process import Process, stage_files
from cwltool.utils import bytes2str_in_dicts
from django.conf import settings
from schema_salad.exceptions import ValidationException

from workers.jobscript import JobSpec
from workers.runtimes import ContainerError, ContainerJob, ImageRequest, Wrapping, get_container_runtime

RUNTIME_FIELDS = {"cores", "ram"}


class JobBuildError(Exception):
    """cwltool could not build the job (an expression failed, an input is missing…)."""


class StablePathMapper(PathMapper):
    """cwltool's path mapper with stage folder names that do not change between builds.

    cwltool stages each input in ``<stagedir>/stg<random uuid>/``. The job is built twice (to
    write the script, then to collect outputs) and a tool may echo its inputs' paths into its
    outputs (``cwl.output.json``), so both builds must map an input to the same place: the name
    is derived from the input's position and location instead.
    """

    def setup(self, referenced_files, basedir: str) -> None:
        for index, fob in enumerate(referenced_files):
            stagedir = self.stagedir
            if self.separateDirs:
                key = f"{index}:{fob.get('location', '')}".encode()
                stagedir = os.path.join(self.stagedir, "stg" + hashlib.sha1(key).hexdigest()[:16])
            copy = bool(fob.get("writable", False) or False)
            self.visit(fob, stagedir, basedir, copy=copy, staged=True)


def runtime_context(run_dir: Path) -> RuntimeContext:
    run_dir = Path(run_dir)
    return RuntimeContext(
        {
            "outdir": str(run_dir / "outdir"),
            "tmpdir": str(run_dir / "tmp"),
            "stagedir": str(run_dir / "stage"),
            "tmp_outdir_prefix": str(run_dir / "tmp") + "/",
            "tmpdir_prefix": str(run_dir / "tmp") + "/",
            "use_container": False,
            "move_outputs": "leave",
            "compute_checksum": True,
            "path_mapper": StablePathMapper,
        }
    )


def build_job(tool: Process, job_order: dict[str, Any], run_dir: Path):
    """cwltool's job object for this invocation, not run."""
    context = runtime_context(run_dir)
    collected: dict[str, Any] = {}

    def callback(outputs, status):
        collected["outputs"], collected["status"] = outputs, status

    docker, _ = _docker_requirement(tool)
    try:
        if docker is not None:
            # cwltool refuses a required DockerRequirement without use_container; we build the
            # host job on purpose (the runtime wraps it), so ask for the plain job class.
            tool.make_job_runner = lambda _context: CommandLineJob
        job = next(tool.job(json.loads(json.dumps(job_order)), callback, context))
    except StopIteration:
        raise JobBuildError("cwltool produced no job for this step") from None
    except (WorkflowException, ValidationException) as exc:
        raise JobBuildError(str(exc)) from None
    finally:
        tool.__dict__.pop("make_job_runner", None)
    return job, context, collected


def _docker_requirement(tool: Process) -> tuple[dict | None, bool]:
    if not isinstance(tool, CommandLineTool):
        return None, False
    requirement, required = tool.get_requirement("DockerRequirement")
    return requirement, bool(required)


def _runs_in_container(tool: Process) -> bool:
    """The step has a DockerRequirement and a container runtime other than ``none`` wraps it."""
    docker, _ = _docker_requirement(tool)
    return docker is not None and get_container_runtime().name != "none"


def run_expression_tool(tool: Process, job_order: dict[str, Any], run_dir: Path) -> dict:
    """Evaluate an ExpressionTool here, in the worker (no batch job)."""
    job, context, collected = build_job(tool, job_order, run_dir)
    try:
        job.run(context)
    except WorkflowException as exc:
        raise JobBuildError(str(exc)) from None
    if collected.get("status") != "success":
        raise JobBuildError("the expression failed")
    return collected.get("outputs") or {}


def prepare_command_job(tool: Process, job_order: dict[str, Any], run_dir: Path) -> JobSpec:
    """Stage the inputs into the run folder and describe the job script to write."""
    job, context, _ = build_job(tool, job_order, run_dir)
    if not isinstance(job, CommandLineJob):
        raise JobBuildError(f"unsupported job type {type(job).__name__}")
    os.makedirs(job.tmpdir, exist_ok=True)
    try:
        job._setup(context)
        mounts = _place_targets_outside(tool, job, Path(run_dir))
        wrapping = _container_wrapping(tool, job, Path(run_dir), mounts)
        stage_files(job.pathmapper, ignore_writable=True, symlink=True)
        if job.generatemapper is not None:
            stage_files(job.generatemapper, ignore_writable=job.inplace_update, symlink=True)
            relink_initialworkdir(
                job.generatemapper, job.outdir, job.builder.outdir, inplace_update=job.inplace_update
            )
    except WorkflowException as exc:
        raise JobBuildError(str(exc)) from None

    stdin = None
    if job.stdin is not None:
        mapped = job.pathmapper.reversemap(job.stdin)
        stdin = mapped[1] if mapped else job.stdin
    resources = job.builder.resources
    staged = [
        (entry.resolved, entry.target)
        for _, entry in job.pathmapper.items()
        if entry.staged and entry.type in ("File", "Directory")
    ]
    spec = JobSpec(
        job_name="",
        title="",
        run_dir=str(run_dir),
        workdir=job.outdir,
        command=[str(x) for x in job.command_line],
        environment=dict(job.environment),
        stdin=stdin,
        stdout=os.path.join(job.outdir, job.stdout) if job.stdout else None,
        stderr=os.path.join(job.outdir, job.stderr) if job.stderr else None,
        cores=int(resources.get("cores") or 1),
        ram_mib=int(resources.get("ram") or 0) or None,
        time_limit_seconds=job.timelimit or None,
        staged=staged,
    )
    if wrapping:
        spec.setup_lines = list(wrapping.setup_lines)
        spec.container_prefix = list(wrapping.prefix)
        spec.cleanup_lines = list(wrapping.cleanup_lines)
    return spec


def _place_targets_outside(tool: Process, job: CommandLineJob, run_dir: Path) -> list[tuple[str, str, bool]]:
    """InitialWorkDir entries at absolute paths: staged in the run folder, mounted there.

    CWL allows such entry names with a ``DockerRequirement``: they name places inside the
    container. The entry is staged under ``<run>/mounts/<its path>`` instead, and the runtime
    mounts it at its path inside; the returned ``(host, inside, is a directory)`` list says
    what to mount. Without a container (no requirement, or the runtime ``none``) they are
    refused: the host job would write outside its run folder.
    """
    if job.generatemapper is None:
        return []
    outdir = os.path.abspath(job.outdir)
    outside = [
        (key, entry)
        for key, entry in job.generatemapper.items()
        if os.path.commonpath([outdir, os.path.abspath(entry.target)]) != outdir
    ]
    if not outside:
        return []
    if not _runs_in_container(tool):
        raise JobBuildError(
            f"InitialWorkDirRequirement entry {outside[0][1].target!r} is outside the output directory: "
            "absolute entry names need a container (DockerRequirement)"
        )
    mounts_dir = Path(run_dir).resolve() / "mounts"
    mounts = []
    for key, entry in outside:
        inside = os.path.normpath(entry.target)
        host = str(mounts_dir / inside.lstrip("/"))
        job.generatemapper.update(key, entry.resolved, host, entry.type, entry.staged)
        mounts.append((host, inside, entry.type.endswith("Directory")))
        os.makedirs(os.path.dirname(host), exist_ok=True)
    return mounts


def _container_wrapping(
    tool: Process, job: CommandLineJob, run_dir: Path, mounts: list[tuple[str, str, bool]]
) -> Wrapping:
    """The container runtime's lines for this job; empty without a DockerRequirement."""
    docker, _ = _docker_requirement(tool)
    if docker is None:
        return Wrapping()
    runtime = get_container_runtime()
    image = ImageRequest.from_requirement(docker, base_dir=_document_dir(tool))
    binds, bind_files = _bind_paths(job, run_dir)
    container_job = ContainerJob(
        workdir=job.outdir,
        environment=_container_environment(tool, job),
        binds=binds,
        bind_files=bind_files,
        mounts=mounts,
    )
    try:
        return runtime.wrap(image, container_job)
    except ContainerError as exc:
        raise JobBuildError(str(exc)) from None


def _document_dir(tool: Process) -> str | None:
    parsed = urlparse(str(tool.tool.get("id", "")))
    return os.path.dirname(unquote(parsed.path)) if parsed.scheme == "file" else None


def _container_environment(tool: Process, job: CommandLineJob) -> dict[str, str]:
    """CWL's environment for a containerised command: the worker's PATH means nothing there.

    cwltool puts the host's PATH last for a host job (over an EnvVarRequirement's); in a
    container, as with cwltool's Docker jobs, the image's PATH applies unless the tool sets one.
    """
    environment = dict(job.environment)
    for name in ("PATH", "SYSTEMROOT", "QEMU_LD_PREFIX"):
        if name in environment and environment[name] == os.environ.get(name):
            del environment[name]
    env_var, _ = tool.get_requirement("EnvVarRequirement")
    for item in (env_var or {}).get("envDef", []):
        if item.get("envName") == "PATH":
            value = item.get("envValue", "")
            if "$(" in value or "${" in value:
                value = job.builder.do_eval(value)
            environment["PATH"] = str(value)
    return environment


def _bind_paths(job: CommandLineJob, run_dir: Path) -> tuple[list[str], list[str]]:
    """Host paths the command must see at the same place: (directories, single files).

    The whole runs folder (this run's outdir, tmp and stage, the workflow's ``src/``, other
    steps' outdirs: everything staged inputs link to), or this run's folder if it lies
    elsewhere, plus any staged input outside it (files bound alone, so that no directory of the
    image is hidden).
    """
    runs = Path(settings.APIARY_RUNS_DIR).resolve()
    run_dir = Path(run_dir).resolve()
    base = runs if run_dir.is_relative_to(runs) else run_dir
    dirs, files = [str(base)], []
    mappers = [m for m in (job.pathmapper, job.generatemapper) if m is not None]
    for mapper in mappers:
        for _, entry in mapper.items():
            if entry.type not in ("File", "Directory", "WritableFile", "WritableDirectory"):
                continue
            if not str(entry.resolved).startswith("/"):
                continue
            for path in dict.fromkeys([entry.resolved, os.path.realpath(entry.resolved)]):
                if any(Path(path).is_relative_to(d) for d in dirs):
                    continue
                if entry.type.endswith("Directory"):
                    dirs = [d for d in dirs if not Path(d).is_relative_to(path)] + [path]
                elif path not in files:
                    files.append(path)
    files = [f for f in files if not any(Path(f).is_relative_to(d) for d in dirs)]
    return dirs, files


def collect_outputs(
    tool: Process, job_order: dict[str, Any], run_dir: Path, exit_code: int
) -> tuple[bool, dict]:
    """After the job ended: (succeeded?, CWL output object) as cwltool computes them."""
    job, context, _ = build_job(tool, job_order, run_dir)
    ok_codes = set(job.successCodes or []) or {0}
    fail_codes = set(job.permanentFailCodes or []) | set(job.temporaryFailCodes or [])
    succeeded = exit_code in ok_codes or (exit_code == 0 and exit_code not in fail_codes)
    if exit_code in fail_codes:
        succeeded = False
    if not succeeded:
        return False, {}
    try:
        job._setup(context)
        if job.generatemapper is not None:
            relink_initialworkdir(
                job.generatemapper, job.outdir, job.builder.outdir, inplace_update=job.inplace_update
            )
        outputs = bytes2str_in_dicts(job.collect_outputs(job.outdir, exit_code))
    except WorkflowException as exc:
        raise JobBuildError(f"collecting outputs: {exc}") from None
    if _runs_in_container(tool):
        _refuse_links_into_the_container(outputs, *_bind_paths(job, Path(run_dir)))
    return True, outputs


def _refuse_links_into_the_container(outputs: dict, dirs: list[str], files: list[str]) -> None:
    """A containerised tool's output that is a symbolic link to an absolute path names a path
    *inside the container*; on the host (where outputs are collected) that path is another
    file, or none. Only links to what was bound in (at the same path) are kept."""
    from cwltool.utils import visit_class

    def visible(target: str) -> bool:
        return target in files or any(Path(target).is_relative_to(d) for d in dirs)

    def links(path: str):
        if os.path.islink(path):
            yield path
        if os.path.isdir(path) and not os.path.islink(path):
            for folder, subdirs, names in os.walk(path):
                for name in subdirs + names:
                    if os.path.islink(os.path.join(folder, name)):
                        yield os.path.join(folder, name)

    def check(obj: dict) -> None:
        location = obj.get("location", "")
        path = obj.get("path") or (unquote(urlparse(location).path) if location.startswith("file:") else "")
        for link in links(path) if path else ():
            target = os.readlink(link)
            if os.path.isabs(target) and not visible(os.path.realpath(link)):
                raise JobBuildError(
                    f"output {os.path.basename(link)!r} is a symbolic link to {target}, a path inside the "
                    "container that does not exist outside it"
                )

    visit_class(outputs, ("File", "Directory"), check)
