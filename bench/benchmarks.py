"""Apiary against raw Slurm, in the same run on the same machine (see bench/run).

chain      N dependent trivial steps through Apiary  vs  N jobs chained with sbatch --dependency=afterok
fanout     a W-element scatter of a trivial step     vs  a loop of W sbatch calls, and one W-task job array
reconcile  Slurm commands issued by one reconcile cycle with W active jobs

Times are wall-clock from the first submission to the moment the last job is seen finished; both
sides are observed by polling every 0.2 s, so the polling granularity cancels out in the ratios.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

POLL = 0.2
SERVER = os.environ["APIARY_SERVER"]
HEADERS = {"Authorization": f"Bearer {os.environ['APIARY_TOKEN']}"}

STEP_TOOL = """cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'echo x', sh]
inputs:
  prev: {type: File?, inputBinding: {position: 1}}
  n: {type: int?, inputBinding: {position: 2}}
stdout: out.txt
outputs:
  out: {type: stdout}
"""


def chain_workflow(n: int) -> str:
    steps = []
    for i in range(n):
        prev = f"s{i - 1}/out" if i else "first"
        steps.append(f"  s{i}:\n    run: step.cwl\n    in: {{prev: {prev}}}\n    out: [out]\n")
    return (
        "cwlVersion: v1.2\nclass: Workflow\ninputs:\n  first: File?\n"
        f"outputs:\n  last: {{type: File, outputSource: s{n - 1}/out}}\nsteps:\n" + "".join(steps)
    )


def fanout_workflow() -> str:
    return (
        "cwlVersion: v1.2\nclass: Workflow\nrequirements: {ScatterFeatureRequirement: {}}\n"
        "inputs:\n  ns: int[]\noutputs:\n  outs: {type: 'File[]', outputSource: s/out}\n"
        "steps:\n  s:\n    run: step.cwl\n    scatter: n\n    in: {n: ns}\n    out: [out]\n"
    )


def bundle(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def run_apiary(workflow: str, inputs: str) -> float:
    with httpx.Client(base_url=SERVER, headers=HEADERS, timeout=60) as client:
        payload = bundle({"workflow.cwl": workflow, "step.cwl": STEP_TOOL})
        start = time.monotonic()
        response = client.post(
            "/api/v1/workflows/",
            files={"files": ("wf.tar.gz", payload)},
            data={"main": "workflow.cwl", "inputs_text": inputs},
        )
        response.raise_for_status()
        workflow_id = response.json()["id"]
        while True:
            detail = client.get(f"/api/v1/workflows/{workflow_id}/").json()
            state = detail["state"]
            if state not in ("SUBMITTED", "RUNNING"):
                elapsed = time.monotonic() - start
                state = detail.get("outcome") or state  # ARCHIVED keeps how it ended
                break
            time.sleep(POLL)
        if state != "COMPLETED":
            sys.exit(f"benchmark workflow ended {state}")
        return elapsed


# The same resources Apiary asks for a tool without ResourceRequirement (cwltool's defaults).
SAME_RESOURCES = ["--cpus-per-task=1", "--mem=256M"]


def sbatch(*args: str) -> str:
    out = subprocess.run(
        ["sbatch", "--parsable", *SAME_RESOURCES, *args], capture_output=True, text=True, check=True
    )
    return out.stdout.strip().split(";")[0]


def wait_slurm(job_ids: list[str]) -> None:
    """Until sacct shows every job (or array task) finished."""
    pending = set(job_ids)
    while pending:
        out = subprocess.run(
            ["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(pending)],
            capture_output=True,
            text=True,
        ).stdout
        states: dict[str, list[str]] = {}
        for line in out.splitlines():
            job, state = line.split("|")[:2]
            states.setdefault(job.split("_")[0], []).append(state)
        for job in list(pending):
            got = states.get(job, [])
            if got and all(s.split()[0] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for s in got):
                if any("[" in s for s in got):
                    continue
                pending.discard(job)
        if pending:
            time.sleep(POLL)


def raw_chain(n: int, workdir: Path) -> float:
    start = time.monotonic()
    prev = None
    ids = []
    for i in range(n):
        args = [f"--chdir={workdir}", f"--output={workdir}/raw-{i}.out", "--wrap", "echo x"]
        if prev:
            args.insert(0, f"--dependency=afterok:{prev}")
        prev = sbatch(*args)
        ids.append(prev)
    wait_slurm([ids[-1]])
    return time.monotonic() - start


def raw_loop(width: int, workdir: Path) -> float:
    start = time.monotonic()
    ids = [
        sbatch(f"--chdir={workdir}", f"--output={workdir}/loop-{i}.out", "--wrap", "echo x")
        for i in range(width)
    ]
    wait_slurm(ids)
    return time.monotonic() - start


def raw_array(width: int, workdir: Path) -> float:
    start = time.monotonic()
    job = sbatch(
        f"--chdir={workdir}", f"--array=0-{width - 1}", f"--output={workdir}/array-%a.out", "--wrap", "echo x"
    )
    wait_slurm([job])
    return time.monotonic() - start


def reconcile_commands(width: int, workdir: Path) -> tuple[int, int]:
    """Slurm commands of one reconcile over `width` active jobs (held so they stay active)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from workers.batch.slurm import SlurmBatchSystem

    ids = [
        sbatch("--hold", f"--chdir={workdir}", "--output=/dev/null", "--wrap", "true") for _ in range(width)
    ]
    try:
        slurm = SlurmBatchSystem()
        slurm.commands_issued = 0
        statuses = slurm.query(ids)
        return slurm.commands_issued, sum(1 for s in statuses.values() if s.active)
    finally:
        subprocess.run(["scancel", *ids], check=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", nargs="?", default="all", choices=["all", "chain", "fanout", "reconcile"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--width", type=int, default=200)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="apiary-bench-"))
    print(f"# Apiary benchmarks ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores)\n")
    print("| benchmark | Apiary (s) | baseline | baseline (s) | ratio | target |")
    print("|---|---|---|---|---|---|")
    if args.which in ("all", "chain"):
        base = raw_chain(args.steps, workdir)
        ours = run_apiary(chain_workflow(args.steps), "{}")
        print(
            f"| chain of {args.steps} | {ours:.2f} | sbatch --dependency=afterok chain | {base:.2f} "
            f"| {ours / base:.2f}x | <= 1.1x |",
            flush=True,
        )
    if args.which in ("all", "fanout"):
        loop = raw_loop(args.width, workdir)
        array = raw_array(args.width, workdir)
        ours = run_apiary(fanout_workflow(), json.dumps({"ns": list(range(args.width))}))
        print(
            f"| scatter of {args.width} | {ours:.2f} | loop of {args.width} sbatch | {loop:.2f} "
            f"| {ours / loop:.2f}x | <= 1.2x |"
        )
        print(
            f"| scatter of {args.width} | {ours:.2f} | one {args.width}-task job array | {array:.2f} "
            f"| {ours / array:.2f}x | – |",
            flush=True,
        )
    if args.which in ("all", "reconcile"):
        commands, active = reconcile_commands(args.width, workdir)
        print(f"| reconcile of {active} active jobs | {commands} Slurm commands | – | – | – | <= 2 |")


if __name__ == "__main__":
    main()
