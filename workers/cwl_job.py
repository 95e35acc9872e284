"""A CWL tool invocation as a batch job, with cwltool doing the CWL work.

cwltool builds the job (command line, environment, staging map, resources) exactly as it would
run it locally; instead of executing it we stage the inputs, render a job script and hand it to
the batch system. Outputs are collected afterwards by building the same job again: the job is a
deterministic function of the tool, the input object and the run folder's paths, which are
fixed (``outdir``, ``tmp``, ``stage`` inside the run folder). That keeps the job script free of
any Python and lets collection happen in a worker, where cwltool is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cwltool.context import RuntimeContext
from cwltool.errors import WorkflowException
from cwltool.job import CommandLineJob, relink_initialworkdir
from cwltool.process import Process, stage_files
from cwltool.utils import bytes2str_in_dicts

from workers.jobscript import JobSpec

RUNTIME_FIELDS = {"cores", "ram"}


class JobBuildError(Exception):
    """cwltool could not build the job (an expression failed, an input is missing…)."""


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
        }
    )


def build_job(tool: Process, job_order: dict[str, Any], run_dir: Path):
    """cwltool's job object for this invocation, not run."""
    context = runtime_context(run_dir)
    collected: dict[str, Any] = {}

    def callback(outputs, status):
        collected["outputs"], collected["status"] = outputs, status

    try:
        job = next(tool.job(json.loads(json.dumps(job_order)), callback, context))
    except StopIteration:
        raise JobBuildError("cwltool produced no job for this step") from None
    except WorkflowException as exc:
        raise JobBuildError(str(exc)) from None
    return job, context, collected


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
    return JobSpec(
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
    return True, outputs
