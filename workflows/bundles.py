"""Unpacking uploaded bundles (zip or tar) safely into a scratch folder.

An upload is untrusted: members with absolute paths, ``..``, links, devices or other special
files are refused, as are bundles with too many members or too many bytes once unpacked.
Uploaded Apiary archives (re-execution) go through :func:`unpack_archive`, which applies the
same rules and the archive limits, each refusal naming its rule (:data:`ARCHIVE_RULES`).
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from portal.errors import ApplicationError

MAX_MEMBERS = 10_000
MAX_TOTAL_BYTES = 2 * 1024**3


class BundleError(ApplicationError):
    pass


def is_bundle(name: str) -> bool:
    return name.endswith((".zip", ".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz"))


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or name.startswith("\\"):
        raise BundleError(f"Bundle member {name!r} has an absolute path or '..'; refused.")
    return path


def safe_relative(name: str) -> PurePosixPath:
    """A user-given file name as a relative path that stays inside its folder."""
    path = _safe_name(name.replace("\\", "/"))
    if not path.parts or path.parts == (".",):
        raise BundleError(f"File name {name!r} is empty.")
    return path


def extract(data: bytes, name: str, dest: Path) -> list[str]:
    """Unpack ``data`` into ``dest``; returns the member file names written."""
    written: list[str] = []
    total = 0
    if name.endswith(".zip"):
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile as exc:
            raise BundleError(f"{name} is not a valid zip file: {exc}") from None
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise BundleError(f"{name} has {len(members)} members; the limit is {MAX_MEMBERS}.")
        for info in members:
            path = _safe_name(info.filename)
            if info.is_dir():
                continue
            if (info.external_attr >> 16) & 0o170000 not in (0, 0o100000):
                raise BundleError(f"Bundle member {info.filename!r} is a link or special file; refused.")
            total += info.file_size
            if total > MAX_TOTAL_BYTES:
                raise BundleError(f"{name} unpacks to more than {MAX_TOTAL_BYTES} bytes; refused.")
            target = dest / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(info))
            written.append(str(path))
        return written
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except tarfile.TarError as exc:
        raise BundleError(f"{name} is not a valid tar file: {exc}") from None
    with archive:
        members = archive.getmembers()
        if len(members) > MAX_MEMBERS:
            raise BundleError(f"{name} has {len(members)} members; the limit is {MAX_MEMBERS}.")
        for member in members:
            path = _safe_name(member.name)
            if member.isdir():
                continue
            if not member.isfile():
                raise BundleError(f"Bundle member {member.name!r} is a link or special file; refused.")
            total += member.size
            if total > MAX_TOTAL_BYTES:
                raise BundleError(f"{name} unpacks to more than {MAX_TOTAL_BYTES} bytes; refused.")
            target = dest / path
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            target.write_bytes(source.read() if source else b"")
            written.append(str(path))
    return written


# --- untrusted archives (re-execution) ----------------------------------------------------------

# The rules an uploaded archive must follow; each refusal names its rule (README: "Untrusted
# archives"). The message is what the API answers with 400; ``extra.rule`` carries the name.
ARCHIVE_RULES = {
    "not-a-tgz": "the file must be a gzip-compressed tar archive",
    "max-bytes": "the archive, compressed and unpacked, must stay within APIARY_ARCHIVE_MAX_BYTES",
    "compression-ratio": "the unpacked/compressed ratio must stay within APIARY_ARCHIVE_MAX_RATIO",
    "max-members": "the archive must have at most APIARY_ARCHIVE_MAX_MEMBERS members",
    "absolute-path": "no member may have an absolute path",
    "parent-reference": "no member path may contain '..'",
    "link": "no member may be a symbolic or hard link",
    "special-file": "no member may be a device, FIFO or other special file",
    "manifest-missing": "the archive must hold Apiary's manifest.json at its top",
    "manifest-malformed": "manifest.json must be a valid Apiary archive manifest",
}
# Below this many unpacked bytes the ratio rule does not apply: a small archive is no bomb.
RATIO_FLOOR_BYTES = 1024 * 1024
_CHUNK = 1024 * 1024


class ArchiveRuleError(BundleError):
    """An uploaded archive broke one of :data:`ARCHIVE_RULES`."""

    def __init__(self, rule: str, detail: str, **extra):
        super().__init__(f"Archive refused, rule {rule!r} ({ARCHIVE_RULES[rule]}): {detail}", extra)
        self.rule = rule
        self.extra = {"rule": rule, **extra}


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int
    max_bytes: int
    max_ratio: int


def _check_member(member: tarfile.TarInfo) -> PurePosixPath | None:
    """The member's relative path (None for the archive's root folder); raises on a broken rule."""
    name = member.name
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        raise ArchiveRuleError("absolute-path", f"member {name!r} has an absolute path.", member=name)
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveRuleError("parent-reference", f"member {name!r} contains '..'.", member=name)
    if member.issym() or member.islnk():
        raise ArchiveRuleError(
            "link", f"member {name!r} is a link (to {member.linkname!r}); links are refused.", member=name
        )
    if not (member.isfile() or member.isdir()):
        raise ArchiveRuleError(
            "special-file", f"member {name!r} is a device, FIFO or other special file.", member=name
        )
    return PurePosixPath(*parts) if parts else None


def _check_stream(source: Path, limits: ArchiveLimits) -> None:
    """Decompress once, counting, before any tar parsing: bombs and oversize archives stop early."""
    compressed = source.stat().st_size
    if compressed > limits.max_bytes:
        raise ArchiveRuleError(
            "max-bytes",
            f"the archive is {compressed} bytes; the limit is {limits.max_bytes}.",
            size=compressed,
        )
    with open(source, "rb") as fh:
        magic = fh.read(2)
    if magic != b"\x1f\x8b":
        raise ArchiveRuleError("not-a-tgz", "the file is not gzip-compressed (expected a .tgz).")
    unpacked = 0
    try:
        with gzip.open(source, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                unpacked += len(chunk)
                if unpacked > limits.max_bytes:
                    raise ArchiveRuleError(
                        "max-bytes",
                        f"it unpacks to more than {limits.max_bytes} bytes.",
                        limit=limits.max_bytes,
                    )
                if unpacked > RATIO_FLOOR_BYTES and unpacked > limits.max_ratio * max(compressed, 1):
                    raise ArchiveRuleError(
                        "compression-ratio",
                        f"{compressed} compressed bytes unpack to more than {unpacked} "
                        f"(over {limits.max_ratio}:1), as a decompression bomb does.",
                        limit=limits.max_ratio,
                    )
    except (OSError, EOFError, zlib.error) as exc:
        raise ArchiveRuleError("not-a-tgz", f"the gzip stream is corrupt: {exc}") from None


def unpack_archive(
    source: Path,
    dest: Path,
    *,
    limits: ArchiveLimits | None,
    wanted=lambda path: True,
) -> list[str]:
    """Check an archive against :data:`ARCHIVE_RULES`, then unpack the ``wanted`` members into ``dest``.

    ``dest`` must be a fresh scratch folder that the caller removes afterwards. Every member is
    checked before anything is written, so a refused archive leaves ``dest`` empty. Nothing is
    written outside ``dest``: no link is ever created, paths are relative without ``..``, and
    files are opened with ``O_NOFOLLOW``. ``limits`` None (an archive Apiary wrote itself) skips
    the size, member-count and ratio limits, never the path and file-type rules.
    Returns the relative paths of the files written.
    """
    if limits is not None:
        _check_stream(source, limits)
    try:
        archive = tarfile.open(source, mode="r:*")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ArchiveRuleError("not-a-tgz", f"not a valid tar archive: {exc}") from None
    with archive:
        try:
            members = []
            for member in archive:
                members.append(member)
                if limits is not None and len(members) > limits.max_members:
                    raise ArchiveRuleError(
                        "max-members",
                        f"it has more than {limits.max_members} members.",
                        limit=limits.max_members,
                    )
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise ArchiveRuleError("not-a-tgz", f"the tar archive is corrupt: {exc}") from None
        checked = [(member, _check_member(member)) for member in members]
        if limits is not None:
            total = sum(member.size for member, _ in checked if member.isfile())
            if total > limits.max_bytes:
                raise ArchiveRuleError(
                    "max-bytes", f"its files hold {total} bytes; the limit is {limits.max_bytes}.", size=total
                )
        root = dest.resolve()
        written = []
        for member, path in checked:
            if path is None or not member.isfile() or not wanted(path):
                continue
            target = root / path
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.parent.resolve().is_relative_to(root):
                    raise ArchiveRuleError("parent-reference", f"member {member.name!r} leaves the archive.")
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                fd = os.open(target, flags, 0o755 if member.mode & 0o111 else 0o644)
                with os.fdopen(fd, "wb") as out, archive.extractfile(member) as data:
                    remaining = member.size
                    while remaining > 0 and (chunk := data.read(min(_CHUNK, remaining))):
                        out.write(chunk)
                        remaining -= len(chunk)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                raise BundleError(
                    f"Member {member.name!r} of the archive cannot be unpacked: {exc}"
                ) from None
            written.append(str(path))
    return written
