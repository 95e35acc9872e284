"""Uploaded archives are hostile: one test per rule of ``workflows.bundles.ARCHIVE_RULES``.

Each hostile archive is posted to ``POST /api/v1/workflows/reexecute`` and must be refused with
a 400 whose message names the rule (and ``extra.rule``), with no workflow created, nothing left
in the scratch folder and nothing written outside it.
"""

import gzip
import io
import json
import os
import tarfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import EXAMPLES
from workflows.bundles import ARCHIVE_RULES, ArchiveLimits, ArchiveRuleError, unpack_archive
from workflows.models import Workflow

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

WORKFLOW_ID = "6b0f3c5e-1d7a-4c53-9a9e-5d3f0d1e2a10"


def manifest(**changes) -> dict:
    data = {
        "format": "apiary-archive",
        "format_version": 1,
        "workflow_id": WORKFLOW_ID,
        "name": "grep-wc",
        "cwl_version": "v1.2",
        "state": "COMPLETED",
        "main_document": "workflow.cwl",
        "inputs": {"pattern": "integer", "infile": {"class": "File", "location": "src/lorem.txt"}},
        "provenance": {},
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def member(name: str, data: bytes = b"x", **attrs) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, (data if info.isfile() else None)


def grep_wc_members(manifest_data: dict | bytes | None = None) -> list:
    members = []
    if manifest_data is not None:
        raw = manifest_data if isinstance(manifest_data, bytes) else json.dumps(manifest_data).encode()
        members.append(member("manifest.json", raw))
    for name in ("workflow.cwl", "grep.cwl", "wc.cwl", "lorem.txt"):
        members.append(member(f"src/{name}", (EXAMPLES / "grep-wc" / name).read_bytes()))
    return members


def tgz(members) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


@pytest.fixture
def post(api, settings):
    def send(data: bytes, name="run.tgz", **fields):
        upload = SimpleUploadedFile(name, data, content_type="application/gzip")
        return api.post("/api/v1/workflows/reexecute", {"archive": upload, "start": "false", **fields})

    return send


def assert_refused(response, rule: str, settings):
    assert response.status_code == 400, response.content
    body = response.json()
    assert rule in body["message"], body
    assert body["extra"]["rule"] == rule
    assert not Workflow.objects.exists()
    scratch = settings.APIARY_RUNS_DIR / ".scratch"
    assert not scratch.exists() or not any(scratch.iterdir()), "the scratch folder was not removed"


def test_a_sound_archive_is_accepted(post, settings):
    response = post(tgz(grep_wc_members(manifest())), name="grep-wc.tgz")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["source_workflow_id"] == WORKFLOW_ID
    assert len(body["source_archive_sha256"]) == 64
    assert not any((settings.APIARY_RUNS_DIR / ".scratch").iterdir())


PACKED = b"""cwlVersion: v1.2
$graph:
  - id: hello
    class: CommandLineTool
    inputs: []
    outputs: []
    baseCommand: [echo, hello]
  - id: main
    class: CommandLineTool
    inputs: []
    outputs: []
    baseCommand: [echo, main]
"""


def test_an_archive_of_a_packed_documents_process_is_accepted(post):
    data = manifest(main_document="packed.cwl#hello", inputs={})
    members = [member("manifest.json", json.dumps(data).encode()), member("src/packed.cwl", PACKED)]
    response = post(tgz(members), name="packed.tgz")
    assert response.status_code == 201, response.content
    assert Workflow.objects.get(pk=response.json()["id"]).main_document == "packed.cwl#hello"


def test_every_rule_has_a_test():
    tested = {
        "not-a-tgz",
        "max-bytes",
        "compression-ratio",
        "max-members",
        "absolute-path",
        "parent-reference",
        "link",
        "special-file",
        "manifest-missing",
        "manifest-malformed",
    }
    assert set(ARCHIVE_RULES) == tested


def test_rule_not_a_tgz(post, settings):
    assert_refused(post(b"this is not an archive"), "not-a-tgz", settings)
    assert_refused(post(gzip.compress(b"gzip, but no tar inside" * 40)), "not-a-tgz", settings)


def test_rule_absolute_path(post, settings, tmp_path):
    target = tmp_path / "planted.txt"
    members = [*grep_wc_members(manifest()), member(str(target), b"owned")]
    assert_refused(post(tgz(members)), "absolute-path", settings)
    assert not target.exists()


def test_rule_parent_reference(post, settings):
    escape = "src/../../../escaped.txt"
    members = [*grep_wc_members(manifest()), member(escape, b"owned")]
    assert_refused(post(tgz(members)), "parent-reference", settings)
    assert not (settings.APIARY_RUNS_DIR / "escaped.txt").exists()
    assert not (settings.APIARY_RUNS_DIR.parent / "escaped.txt").exists()


@pytest.mark.parametrize(
    ("kind", "target"),
    [(tarfile.SYMTYPE, "/etc/passwd"), (tarfile.SYMTYPE, "lorem.txt"), (tarfile.LNKTYPE, "src/lorem.txt")],
    ids=["symlink-out", "symlink-inside", "hardlink"],
)
def test_rule_link(post, settings, kind, target):
    link = member("src/data.txt", b"", type=kind, linkname=target)
    assert_refused(post(tgz([*grep_wc_members(manifest()), link])), "link", settings)


@pytest.mark.parametrize(
    "kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE], ids=["chr", "blk", "fifo"]
)
def test_rule_special_file(post, settings, kind):
    device = member("src/null", b"", type=kind, devmajor=1, devminor=3)
    assert_refused(post(tgz([*grep_wc_members(manifest()), device])), "special-file", settings)


def test_rule_max_members(post, settings):
    settings.APIARY_ARCHIVE_MAX_MEMBERS = 10
    members = grep_wc_members(manifest()) + [member(f"src/extra/{i}.txt") for i in range(10)]
    assert_refused(post(tgz(members)), "max-members", settings)


def test_rule_max_bytes_unpacked(post, settings):
    settings.APIARY_ARCHIVE_MAX_BYTES = 64 * 1024
    incompressible = os.urandom(48 * 1024)  # the upload itself stays under the limit
    members = [
        *grep_wc_members(manifest()),
        member("src/a.bin", incompressible),
        member("src/b.bin", incompressible),
    ]
    data = tgz(members)
    assert len(data) < settings.APIARY_ARCHIVE_MAX_BYTES * 2
    assert_refused(post(data), "max-bytes", settings)


def test_rule_max_bytes_compressed(post, settings):
    settings.APIARY_ARCHIVE_MAX_BYTES = 16 * 1024
    members = [*grep_wc_members(manifest()), member("src/noise.bin", os.urandom(32 * 1024))]
    assert_refused(post(tgz(members)), "max-bytes", settings)


def test_rule_compression_ratio(post, settings):
    bomb = member("src/zeros.bin", bytes(8 * 1024 * 1024))  # 8 MiB of zeros: about 8 KiB of gzip
    data = tgz([*grep_wc_members(manifest()), bomb])
    assert len(data) * settings.APIARY_ARCHIVE_MAX_RATIO < 8 * 1024 * 1024
    assert_refused(post(data), "compression-ratio", settings)


def test_rule_manifest_missing(post, settings):
    assert_refused(post(tgz(grep_wc_members(None))), "manifest-missing", settings)


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        json.dumps(["a", "list"]).encode(),
        json.dumps(manifest(format="bee-archive")).encode(),
        json.dumps(manifest(format_version=99)).encode(),
        json.dumps(manifest(inputs=None)).encode(),
        json.dumps(manifest(workflow_id="not-a-uuid")).encode(),
        json.dumps(manifest(main_document="../../etc/passwd")).encode(),
        json.dumps(manifest(main_document="missing.cwl")).encode(),
    ],
    ids=[
        "json",
        "not-object",
        "format",
        "version",
        "no-inputs",
        "workflow-id",
        "main-escapes",
        "main-absent",
    ],
)
def test_rule_manifest_malformed(post, settings, raw):
    assert_refused(post(tgz(grep_wc_members(raw))), "manifest-malformed", settings)


def test_refused_archive_writes_nothing_into_dest(tmp_path):
    """Every member is checked before anything is unpacked."""
    archive = tmp_path / "a.tgz"
    archive.write_bytes(tgz([member("src/ok.txt", b"fine"), member("/abs.txt", b"bad")]))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ArchiveRuleError) as err:
        unpack_archive(archive, dest, limits=ArchiveLimits(max_members=10, max_bytes=10**6, max_ratio=100))
    assert err.value.rule == "absolute-path"
    assert list(dest.iterdir()) == []


def test_own_archive_skips_size_limits_but_not_path_rules(tmp_path):
    archive = tmp_path / "a.tgz"
    archive.write_bytes(tgz([member("src/zeros.bin", bytes(4 * 1024 * 1024))]))
    dest = tmp_path / "dest"
    dest.mkdir()
    assert unpack_archive(archive, dest, limits=None) == ["src/zeros.bin"]
    archive.write_bytes(tgz([member("src/../x", b"bad")]))
    with pytest.raises(ArchiveRuleError, match="parent-reference"):
        unpack_archive(archive, tmp_path / "dest", limits=None)
