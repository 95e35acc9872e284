"""The project's Slurm adapter against the real Slurm from scripts/services."""

import os
import subprocess

import pytest

from tests.integration.conftest import wait_for
from workers.batch import base
from workers.batch.slurm import SlurmBatchSystem

pytestmark = [pytest.mark.integration, pytest.mark.slurm]


def _script(tmp_path, body):
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\n#SBATCH --output={tmp_path}/job.out\n{body}\n")
    return script


def _in_squeue(job_id) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%i"], capture_output=True, text=True)
    return job_id in out.stdout.split()


def test_job_is_seen_in_squeue_then_its_end_read_from_sacct(tmp_path):
    slurm = SlurmBatchSystem()
    job_id = slurm.submit(
        _script(tmp_path, "sleep 3; exit 3"), job_name="apiary-test-adapter", workdir=tmp_path
    )
    assert job_id.isdigit()
    assert _in_squeue(job_id)
    status = slurm.query([job_id])[job_id]
    assert status.state in (base.PENDING, base.RUNNING)

    wait_for(lambda: not _in_squeue(job_id), timeout=60, what=f"job {job_id} to leave squeue")
    final = wait_for(
        lambda: (s := slurm.query([job_id]).get(job_id)) and not s.active and s,
        timeout=60,
        what=f"sacct to report job {job_id}",
    )
    assert final.state == base.FAILED
    assert final.exit_code == 3
    assert final.node
    assert final.ended_at is not None


def test_query_of_many_jobs_issues_at_most_two_commands(tmp_path):
    slurm = SlurmBatchSystem()
    ids = [
        slurm.submit(_script(tmp_path, "true"), job_name=f"apiary-test-batch-{i}", workdir=tmp_path)
        for i in range(5)
    ]
    slurm.commands_issued = 0
    result = slurm.query(ids)
    assert set(result) <= set(ids)
    assert slurm.commands_issued <= 2


def test_lost_submission_is_found_by_job_name(tmp_path):
    slurm = SlurmBatchSystem()
    job_id = slurm.submit(
        _script(tmp_path, "sleep 1"), job_name=f"apiary-test-findme-{os.getpid()}", workdir=tmp_path
    )
    assert slurm.find(f"apiary-test-findme-{os.getpid()}") == job_id


def test_cancel_touches_only_the_named_job(tmp_path):
    slurm = SlurmBatchSystem()
    keep = slurm.submit(_script(tmp_path, "sleep 20"), job_name="apiary-test-keep", workdir=tmp_path)
    kill = slurm.submit(_script(tmp_path, "sleep 20"), job_name="apiary-test-kill", workdir=tmp_path)
    slurm.cancel([kill])
    final = wait_for(
        lambda: (s := slurm.query([kill]).get(kill)) and not s.active and s, timeout=60, what="cancel"
    )
    assert final.state == base.CANCELLED
    assert slurm.query([keep])[keep].active
    slurm.cancel([keep])
