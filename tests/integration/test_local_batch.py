"""The local batch system with real processes (no services needed)."""

import time

import pytest

from tests.integration.conftest import wait_for
from workers.batch import base
from workers.batch.local import LocalBatchSystem

pytestmark = pytest.mark.integration


def _job(tmp_path, body):
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\n{body}\n")
    return script


def test_job_runs_detached_and_reports_its_exit_code(tmp_path):
    batch = LocalBatchSystem(tmp_path / "records")
    job_id = batch.submit(
        _job(tmp_path, "echo out; echo err >&2; exit 4"), job_name="apiary-t1", workdir=tmp_path
    )
    final = wait_for(lambda: (s := batch.query([job_id])[job_id]) and not s.active and s, what="job end")
    assert (final.state, final.exit_code) == (base.FAILED, 4)
    assert (tmp_path / "job.out").read_text() == "out\n"
    assert (tmp_path / "job.err").read_text() == "err\n"
    assert batch.find("apiary-t1") == job_id


def test_cancel_kills_the_whole_job(tmp_path):
    batch = LocalBatchSystem(tmp_path / "records")
    job_id = batch.submit(_job(tmp_path, "sleep 60; touch survived"), job_name="apiary-t2", workdir=tmp_path)
    assert batch.query([job_id])[job_id].state == base.RUNNING
    batch.cancel([job_id])
    final = wait_for(lambda: (s := batch.query([job_id])[job_id]) and not s.active and s, what="cancel")
    assert final.state == base.CANCELLED
    time.sleep(0.5)
    assert not (tmp_path / "survived").exists()
