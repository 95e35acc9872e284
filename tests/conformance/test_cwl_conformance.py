"""The CWL v1.2 conformance suite's ``required`` tests through ``apiary-cwl-runner``.

``scripts/conformance`` runs ``cwltest`` on the suite kept outside the repository
(``../shared/cwl-v1.2/``, or ``APIARY_CWL_SUITE``) against the runner, which runs each document
through Apiary's engine — on the local batch system and on the real Slurm cluster of
``scripts/services``, with DockerRequirement steps in Charliecloud (the suite's images are the
Debian-built stand-ins of ``scripts/build-test-image --conformance``). The whole suite (378
tests, ~11 min on 2 cores) is run by hand with ``scripts/conformance``; its latest figures are
in the README.
"""

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.conformance
SUITE = Path(os.environ.get("APIARY_CWL_SUITE") or REPO.parent / "shared" / "cwl-v1.2")


@pytest.fixture(scope="module")
def suite():
    if not (SUITE / "conformance_tests.yaml").is_file():
        pytest.skip(f"the CWL v1.2 suite is not at {SUITE} (set APIARY_CWL_SUITE)")
    return SUITE


@pytest.mark.parametrize("batch_system", ["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def test_every_required_conformance_test_passes(suite, batch_system, tmp_path):
    out = tmp_path / batch_system
    result = subprocess.run(
        [str(REPO / "scripts" / "conformance"), "--batch-system", batch_system, "--tags", "required"]
        + ["-j", "2", "--out", str(out)],
        env={**os.environ, "APIARY_CWL_SUITE": str(suite)},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    summary = _read(out / "summary.md")
    failing, unsupported = _read(out / "failing.txt").split(), _read(out / "unsupported.txt").split()
    assert summary, f"no results: {result.stderr[-3000:]}"
    assert failing == [], f"failing: {failing}\n{summary}\n{result.stderr[-3000:]}"
    assert unsupported == [], f"answered 'unsupported': {unsupported}\n{summary}"
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| **required** | 84 | 84 | 0 | 0 |" in summary, summary


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""
