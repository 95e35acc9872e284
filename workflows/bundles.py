"""Unpacking uploaded bundles (zip or tar) safely into a scratch folder.

An upload is untrusted: members with absolute paths, ``..``, links, devices or other special
files are refused, as are bundles with too many members or too many bytes once unpacked.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

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
