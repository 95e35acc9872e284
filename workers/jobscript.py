"""Rendering a step's job script: plain bash a user can read and rerun (DESIGN.md principle 5).

The script has an ``#SBATCH`` header, the (already staged) working directory, the command line
with its environment, exit-code capture and the completion notice. The local batch system runs
the very same script with bash, ignoring the ``#SBATCH`` comments.

A containerised step (``workers/runtimes/``) adds the runtime's ``setup_lines`` (preparing the
image) before the command, runs the command under ``container_prefix`` (``ch-run … --``), which
sets the environment itself instead of ``env -i``, and adds ``cleanup_lines`` after it. Without a
container the script is exactly as before.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field


class ShellWord(str):
    """An argument already in shell syntax (e.g. ``"$IMG"``): written as is, not quoted."""


@dataclass
class JobSpec:
    job_name: str
    title: str
    run_dir: str
    workdir: str
    command: list[str]
    environment: dict[str, str]
    stdin: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    cores: int | None = None
    ram_mib: int | None = None
    time_limit_seconds: int | None = None
    sbatch_options: list[str] = field(default_factory=list)
    # Set by a container runtime: image preparation, the argv wrapping the command (it sets the
    # command's environment itself), and the cleanup after it.
    setup_lines: list[str] = field(default_factory=list)
    container_prefix: list[str] = field(default_factory=list)
    cleanup_lines: list[str] = field(default_factory=list)
    callback_url: str = ""
    callback_token: str = ""
    staged: list[tuple[str, str]] = field(default_factory=list)


# What coreutils' `timeout` gives a command it stopped, and the grace before SIGKILL.
TIMED_OUT = 124
KILL_AFTER_SECONDS = 10


def sbatch_header(spec: JobSpec) -> list[str]:
    lines = [
        f"#SBATCH --job-name={spec.job_name}",
        f"#SBATCH --output={spec.run_dir}/job.out",
        f"#SBATCH --error={spec.run_dir}/job.err",
    ]
    if spec.cores:
        lines.append(f"#SBATCH --cpus-per-task={max(1, math.ceil(spec.cores))}")
    if spec.ram_mib:
        lines.append(f"#SBATCH --mem={max(1, math.ceil(spec.ram_mib))}M")
    if spec.time_limit_seconds:
        # The command's own limit is enforced to the second by `timeout` in the script; Slurm's
        # (whole minutes) is the outer bound, with a minute for staging and image set-up.
        lines.append(f"#SBATCH --time={math.ceil(spec.time_limit_seconds / 60) + 1}")
    lines += [f"#SBATCH {opt}" for opt in spec.sbatch_options]
    return lines


def _word(part: str) -> str:
    return str(part) if isinstance(part, ShellWord) else shlex.quote(part)


def render(spec: JobSpec) -> str:
    q = shlex.quote
    env = " ".join(f"{k}={q(v)}" for k, v in sorted(spec.environment.items()))
    command = " ".join(q(part) for part in spec.command)
    redirects = ""
    if spec.stdin:
        redirects += f" < {q(spec.stdin)}"
    if spec.stdout:
        redirects += f" > {q(spec.stdout)}"
    if spec.stderr:
        redirects += f" 2> {q(spec.stderr)}"
    staged = [f"#   {q(src)} -> {q(dst)}" for src, dst in spec.staged] or ["#   (none)"]
    lines = [
        "#!/bin/bash",
        *sbatch_header(spec),
        "#",
        f"# {spec.title}",
        "# Written by Apiary. Inputs were staged (linked) into place before submission:",
        *staged,
        "",
        "set -u",
        f"RUN_DIR={q(spec.run_dir)}",
        'echo "node=$(hostname -s) started=$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$RUN_DIR/job.started"',
        f"cd {q(spec.workdir)} || exit 70",
        "",
    ]
    if spec.setup_lines:
        lines += [*spec.setup_lines, ""]
    limit = spec.time_limit_seconds
    timeout = f"timeout --kill-after={KILL_AFTER_SECONDS} {limit} " if limit else ""
    if limit:
        lines.append(f"# ToolTimeLimit: the command is stopped after {limit} s (exit code {TIMED_OUT}).")
    if spec.container_prefix:
        prefix = " ".join(_word(part) for part in spec.container_prefix)
        lines += [
            "# The command, in the container, with exactly the environment CWL defines for it.",
            f"{timeout}{prefix} {command}{redirects}",
        ]
    else:
        lines += [
            "# The command, with exactly the environment CWL defines for it.",
            f"{timeout}env -i {env} \\\n  {command}{redirects}",
        ]
    lines += ["rc=$?"]
    if limit:
        lines.append(
            f'[ "$rc" = {TIMED_OUT} ] && echo "apiary: the command ran past its time limit of {limit} s '
            '(ToolTimeLimit) and was stopped" >&2'
        )
    lines.append("")
    if spec.cleanup_lines:
        lines += [*spec.cleanup_lines, ""]
    lines += [
        "# Record the exit code next to the outputs, then tell Apiary at once; if the notice is",
        "# lost, Apiary's periodic reconcile finds the job's end in the batch system.",
        'echo "$rc" > "$RUN_DIR/exit_code.tmp" && mv "$RUN_DIR/exit_code.tmp" "$RUN_DIR/exit_code"',
    ]
    if spec.callback_url:
        lines.append(
            f"curl -fsS -m 10 -X POST -H {q('X-Apiary-Run-Token: ' + spec.callback_token)} "
            f'--data "exit_code=$rc&node=$(hostname -s)" {q(spec.callback_url)} '
            ">/dev/null 2>&1 || true"
        )
    lines += ['exit "$rc"', ""]
    return "\n".join(lines)
