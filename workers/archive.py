"""Packaging a finished workflow into an archive (BEE's archive milestone). Plain values in.

``package(spec, archive_dir)`` writes ``<archive_dir>/<workflow id>.tgz`` from an
:class:`ArchiveSpec` (what the service read from the database) and the run folder. The file is
written under a temporary name in the same folder and renamed by the caller
(:func:`install`), so a half-written archive is never visible under the final name.

Layout of the archive (every path relative to its top; no wrapping folder)::

    manifest.json              Apiary's own manifest (MANIFEST_FORMAT, version FORMAT_VERSION)
    ro-crate-metadata.json     RO-Crate 1.1, Workflow Run Crate profile 0.5
    src/...                    the CWL documents and data as submitted
    inputs.json                the job order; File locations relative to the archive
                               (``cwltool src/workflow.cwl inputs.json`` runs it again)
    outputs.json               the CWL output object; included files point into outputs/ (or
                               src/), the others keep their original file:// location
    outputs/<path in run>      the output files, while their total stays within the budget
    steps/<step>/metadata.json per step: kind, state history with times, runs with Slurm job
                               ids, node, exit code, container image and its sha256
    steps/<step>/<n>/          each run attempt's job.sh, job.out, job.err, exit_code, job.started

Paths of the run folder in metadata are made relative to it, so an archive names no site paths
except the locations of outputs kept by reference. :func:`validate_manifest` is the reader's
side: the checks an uploaded (untrusted) manifest must pass before re-execution.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import socket
import tarfile
import tempfile
import urllib.parse
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from workflows.bundles import ArchiveRuleError
from workflows.storage import safe_step_folder

MANIFEST_FORMAT = "apiary-archive"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
CRATE_NAME = "ro-crate-metadata.json"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
RUN_FILES = ("job.sh", "job.out", "job.err", "exit_code", "job.started")
# The job's own output, which can be any size: capped in an archive (head and tail kept).
LOG_FILES = ("job.out", "job.err")

CRATE_CONTEXT = [
    "https://w3id.org/ro/crate/1.1/context",
    {"sha256": "https://w3id.org/ro/terms/workflow-run#sha256"},
]
PROFILES = [
    ("https://w3id.org/ro/wfrun/process/0.5", "Process Run Crate", "0.5"),
    ("https://w3id.org/ro/wfrun/workflow/0.5", "Workflow Run Crate", "0.5"),
    ("https://w3id.org/workflowhub/workflow-ro-crate/1.0", "Workflow RO-Crate", "1.0"),
]
CWL_LANGUAGE = "https://w3id.org/workflowhub/workflow-ro-crate#cwl"


@dataclass
class RunInfo:
    attempt: int
    batch_system: str = ""
    batch_job_id: str = ""
    batch_state: str = ""
    batch_state_detail: str = ""
    node: str = ""
    exit_code: int | None = None
    submitted_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None


@dataclass
class StepInfo:
    name: str
    kind: str = "TOOL"
    tool_class: str = ""
    tool_path: list = field(default_factory=list)
    state: str = ""
    error: str = ""
    attempts: int = 0
    created_at: str | None = None
    ended_at: str | None = None
    depends_on: list = field(default_factory=list)
    job_order: Any = None
    outputs: Any = None
    events: list = field(default_factory=list)  # [{"old_state", "new_state", "reason", "at"}]
    runs: list[RunInfo] = field(default_factory=list)


@dataclass
class ArchiveSpec:
    """Everything about a finished workflow the archive records, as plain values."""

    workflow_id: str
    name: str
    owner: str
    run_dir: Path
    main_document: str  # relative to src/
    outcome: str  # COMPLETED, FAILED, PARTIAL_FAIL or CANCELLED
    cwl_version: str = ""
    process_class: str = ""
    error: str = ""
    inputs: dict = field(default_factory=dict)  # file:// locations under run_dir/src
    outputs: dict | None = None
    created_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    events: list = field(default_factory=list)
    steps: list[StepInfo] = field(default_factory=list)
    source_workflow_id: str | None = None
    source_archive_sha256: str = ""
    batch_system: str = ""
    apiary_version: str = ""
    site: str = field(default_factory=socket.getfqdn)


@dataclass
class Packaged:
    """A packaged archive under its temporary name; :func:`install` moves it into place."""

    temp_path: Path
    path: Path
    size: int
    sha256: str
    manifest: dict


# --- helpers ------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _tree_sha256(folder: Path) -> str:
    """A digest of a directory image: every relative path, link target and file content, sorted."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_symlink():
            digest.update(f"L {relative} -> {os.readlink(path)}\n".encode())
        elif path.is_file():
            digest.update(f"F {relative} {sha256_file(path)}\n".encode())
        elif path.is_dir():
            digest.update(f"D {relative}\n".encode())
    return digest.hexdigest()


def _uri_path(uri: str) -> Path | None:
    if not isinstance(uri, str) or not uri.startswith("file://"):
        return None
    return Path(urllib.parse.unquote(uri[len("file://") :]))


def _walk(value: Any):
    """Every dict in a CWL value (File and Directory objects, nested)."""
    if isinstance(value, list):
        for item in value:
            yield from _walk(item)
    elif isinstance(value, dict):
        yield value
        for key, item in value.items():
            if key != "contents":
                yield from _walk(item)


def _relocate(value: Any, mapping) -> Any:
    """A copy of a CWL value whose ``location`` strings are passed through ``mapping``; no ``path``."""
    if isinstance(value, list):
        return [_relocate(v, mapping) for v in value]
    if isinstance(value, dict):
        out = {k: _relocate(v, mapping) for k, v in value.items() if k not in ("path", "dirname")}
        if isinstance(out.get("location"), str):
            out["location"] = mapping(out["location"])
        return out
    return value


def _relative_to_run(run_dir: Path):
    """A mapping for :func:`_relocate`: locations inside the run folder become relative to it."""
    prefix = run_dir.resolve().as_uri() + "/"
    raw_prefix = run_dir.as_uri() + "/"

    def mapping(location: str) -> str:
        for known in (prefix, raw_prefix):
            if location.startswith(known):
                return urllib.parse.unquote(location[len(known) :])
        return location

    return mapping


def container_of(script: str, cache: dict[str, str] | None = None) -> dict | None:
    """The container a job script ran in (see ``workers/runtimes``): runtime, image, its sha256."""
    match = re.search(r"^# Container \(([^)]*)\): image (.*)\.$", script, re.MULTILINE)
    if not match:
        return None
    info: dict[str, Any] = {"runtime": match.group(1), "image": match.group(2), "image_path": None}
    info["image_sha256"] = None
    source = re.search(r'^ch-convert -i tar -o dir (.+?) "\$IMG"', script, re.MULTILINE)
    copied = re.search(r'^mkdir "\$IMG" && cp -a (.+?) "\$IMG"/', script, re.MULTILINE)
    try:
        if source:
            info["image_path"] = shlex.split(source.group(1))[0]
        elif copied:
            info["image_path"] = shlex.split(copied.group(1))[0].removesuffix("/.")
    except ValueError:
        pass
    path = info["image_path"]
    if path:
        cache = {} if cache is None else cache
        if path not in cache:
            image = Path(path)
            if image.is_file():
                cache[path] = sha256_file(image)
            elif image.is_dir():
                cache[path] = "tree:" + _tree_sha256(image)
            else:
                cache[path] = None
        info["image_sha256"] = cache[path]
    return info


# --- packaging ----------------------------------------------------------------------------------


class _Writer:
    """Adds members to the tar stream and remembers what each one is, for the RO-Crate."""

    def __init__(self, tar: tarfile.TarFile):
        self.tar = tar
        self.entries: dict[str, dict] = {}  # archive path -> {"size", "sha256"}

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        info.mtime = int(datetime.now(UTC).timestamp())
        self.tar.addfile(info, io.BytesIO(data))
        self.entries[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def add_file(self, name: str, path: Path, sha256: str | None = None) -> None:
        """A regular file's contents (a symbolic link is followed; the caller checked where to)."""
        with open(path, "rb") as fh:
            stat = os.fstat(fh.fileno())
            info = tarfile.TarInfo(name)
            info.size = stat.st_size
            info.mode = 0o755 if stat.st_mode & 0o111 else 0o644
            info.mtime = int(stat.st_mtime)
            self.tar.addfile(info, fh)
        self.entries[name] = {"size": stat.st_size, "sha256": sha256 or sha256_file(path)}

    def add_log(self, name: str, path: Path, max_bytes: int) -> dict | None:
        """A job log, whole if within ``max_bytes``, else its first and last ``max_bytes / 2``
        around a line saying what was left out; then returns the whole file's size and sha256."""
        size = path.stat().st_size
        if size <= max_bytes:
            self.add_file(name, path)
            return None
        half = max_bytes // 2
        with open(path, "rb") as fh:
            head = fh.read(half)
            fh.seek(size - half)
            tail = fh.read(half)
        whole = sha256_file(path)
        marker = (
            f"\n[apiary: {size - 2 * half} bytes of this {size}-byte log (sha256 {whole}) are left "
            f"out of the archive: over APIARY_ARCHIVE_MAX_LOG_BYTES]\n"
        ).encode()
        self.add_bytes(name, head + marker + tail)
        return {"size": size, "sha256": whole, "kept_bytes": 2 * half}

    def add_json(self, name: str, value: Any) -> None:
        self.add_bytes(name, (json.dumps(value, indent=2, sort_keys=False, default=str) + "\n").encode())


def _source_files(src: Path) -> list[tuple[str, Path]]:
    """The submitted files (``src`` may itself be a link, for local submissions)."""
    root = src.resolve()
    found = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            real = path.resolve()
            if real.is_file() and real.is_relative_to(root):
                found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def _output_files(spec: ArchiveSpec) -> list[dict]:
    """Every file the output object names (Directory contents included), once each."""
    seen: dict[Path, dict] = {}
    for item in _walk(spec.outputs or {}):
        if item.get("class") not in ("File", "Directory"):
            continue
        path = _uri_path(item.get("location"))
        if path is None:
            continue
        candidates = [path] if item["class"] == "File" else sorted(p for p in path.rglob("*") if p.is_file())
        for candidate in candidates:
            if candidate not in seen and candidate.is_file():
                seen[candidate] = {"file": candidate, "location": candidate.as_uri()}
    return list(seen.values())


def _plan_outputs(spec: ArchiveSpec, max_output_bytes: int) -> list[dict]:
    """Where each output file goes: ``src/…`` (already there), ``outputs/…``, or by reference."""
    run_root = spec.run_dir.resolve()
    src_root = (spec.run_dir / "src").resolve()
    planned = []
    for entry in _output_files(spec):
        real = entry["file"].resolve()
        entry["size"] = real.stat().st_size
        entry["sha256"] = sha256_file(real)
        if real.is_relative_to(src_root):
            entry["path"] = "src/" + real.relative_to(src_root).as_posix()
            entry["included"] = True
        elif real.is_relative_to(run_root):
            entry["path"] = "outputs/" + real.relative_to(run_root).as_posix()
            entry["included"] = None  # decided below, within the budget
        else:
            entry["path"], entry["included"] = None, False
        planned.append(entry)
    budget = max_output_bytes
    for entry in sorted((e for e in planned if e["included"] is None), key=lambda e: (e["size"], e["path"])):
        entry["included"] = entry["size"] <= budget
        if entry["included"]:
            budget -= entry["size"]
        else:
            entry["path"] = None
    return planned


def _now() -> str:
    return datetime.now(UTC).isoformat()


def build_manifest(spec: ArchiveSpec, inputs: dict, planned: list[dict], archived_at: str) -> dict:
    return {
        "format": MANIFEST_FORMAT,
        "format_version": FORMAT_VERSION,
        "workflow_id": spec.workflow_id,
        "name": spec.name,
        "owner": spec.owner,
        "cwl_version": spec.cwl_version,
        "process_class": spec.process_class,
        "state": spec.outcome,
        "error": spec.error,
        "main_document": spec.main_document,
        "inputs": inputs,
        "created_at": spec.created_at,
        "started_at": spec.started_at,
        "ended_at": spec.ended_at,
        "archived_at": archived_at,
        "events": spec.events,
        "steps": [
            {"name": s.name, "state": s.state, "metadata": f"steps/{safe_step_folder(s.name)}/metadata.json"}
            for s in spec.steps
        ],
        "output_files": [
            {
                "path": e["path"],
                "location": e["location"] if not e["included"] else None,
                "size": e["size"],
                "sha256": e["sha256"],
                "included": e["included"],
            }
            for e in planned
        ],
        "provenance": {
            "apiary_version": spec.apiary_version,
            "site": spec.site,
            "batch_system": spec.batch_system,
            "source_workflow_id": spec.source_workflow_id,
            "source_archive_sha256": spec.source_archive_sha256 or None,
        },
    }


def package(
    spec: ArchiveSpec, archive_dir: Path, *, max_output_bytes: int, max_log_bytes: int = 16 * 1024**2
) -> Packaged:
    """Write the archive under a temporary name in ``archive_dir``; see :func:`install`.

    Output files enter it while their total is within ``max_output_bytes``; each job log
    (``job.out``, ``job.err``) is cut to ``max_log_bytes`` (head and tail, see ``add_log``).
    """
    archive_dir = Path(archive_dir)
    archive_dir.mkdir(parents=True, exist_ok=True)
    final = archive_dir / f"{spec.workflow_id}.tgz"
    fd, temp_name = tempfile.mkstemp(dir=archive_dir, prefix=f".{spec.workflow_id}.", suffix=".tgz.part")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
            manifest = _write_members(_Writer(tar), spec, max_output_bytes, max_log_bytes)
            raw.flush()
        with open(temp, "rb") as fh:
            os.fsync(fh.fileno())
        return Packaged(temp, final, temp.stat().st_size, sha256_file(temp), manifest)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def install(packaged: Packaged) -> Path:
    """Rename the finished archive into place (atomic on one filesystem)."""
    os.replace(packaged.temp_path, packaged.path)
    return packaged.path


def discard(packaged: Packaged) -> None:
    packaged.temp_path.unlink(missing_ok=True)


def _write_members(writer: _Writer, spec: ArchiveSpec, max_output_bytes: int, max_log_bytes: int) -> dict:
    run_dir = spec.run_dir
    to_run = _relative_to_run(run_dir)
    archived_at = _now()

    sources = _source_files(run_dir / "src")
    for relative, path in sources:
        writer.add_file(f"src/{relative}", path)

    inputs = _relocate(spec.inputs or {}, to_run)
    writer.add_json("inputs.json", inputs)

    planned = _plan_outputs(spec, max_output_bytes)
    by_location = {e["location"]: e for e in planned}
    for entry in planned:
        if entry["included"] and entry["path"].startswith("outputs/"):
            writer.add_file(entry["path"], entry["file"], sha256=entry["sha256"])

    def output_location(location: str) -> str:
        path = _uri_path(location)
        entry = by_location.get(path.as_uri()) if path else None
        if entry is not None:
            return entry["path"] if entry["included"] else entry["location"]
        if path is not None and path.is_dir():
            relative = to_run(location)
            return f"outputs/{relative}" if relative != location else location
        return to_run(location)

    outputs = _relocate(spec.outputs, output_location) if spec.outputs is not None else None
    writer.add_json("outputs.json", outputs)

    image_hashes: dict[str, str] = {}
    step_files: dict[str, list[str]] = {}
    for step in spec.steps:
        folder = f"steps/{safe_step_folder(step.name)}"
        runs = []
        for run in step.runs:
            run_folder = run_dir / folder / str(run.attempt)
            files, cut = {}, {}
            for name in RUN_FILES:
                path = run_folder / name
                if path.is_file() and not path.is_symlink():
                    member = f"{folder}/{run.attempt}/{name}"
                    if name in LOG_FILES:
                        if (whole := writer.add_log(member, path, max_log_bytes)) is not None:
                            cut[name] = whole
                    else:
                        writer.add_file(member, path)
                    files[name] = member
            script = run_folder / "job.sh"
            container = None
            if script.is_file():
                container = container_of(script.read_text(errors="replace"), image_hashes)
            run_record = {**run.__dict__, "files": files, "container": container}
            if cut:
                run_record["truncated_logs"] = cut  # name -> the whole log's size and sha256
            runs.append(run_record)
            step_files.setdefault(step.name, []).extend(files.values())
        metadata = {
            "name": step.name,
            "kind": step.kind,
            "tool_class": step.tool_class,
            "tool_path": step.tool_path,
            "state": step.state,
            "error": step.error,
            "attempts": step.attempts,
            "created_at": step.created_at,
            "ended_at": step.ended_at,
            "depends_on": step.depends_on,
            "job_order": _relocate(step.job_order, to_run),
            "outputs": _relocate(step.outputs, to_run),
            "events": step.events,
            "runs": runs,
        }
        writer.add_json(f"{folder}/metadata.json", metadata)

    manifest = build_manifest(spec, inputs, planned, archived_at)
    writer.add_json(MANIFEST_NAME, manifest)
    crate = build_crate(spec, manifest, writer.entries, outputs, archived_at)
    writer.add_json(CRATE_NAME, crate)
    return manifest


# --- RO-Crate -----------------------------------------------------------------------------------


def _ref(identifier: str) -> dict:
    return {"@id": identifier}


def _main_file(spec: ArchiveSpec) -> str:
    """The main document's file under ``src/``: ``packed.cwl#main`` names a process in
    ``packed.cwl`` (a file whose name really holds ``#`` is taken as it is)."""
    name = spec.main_document
    if "#" in name and not (Path(spec.run_dir) / "src" / name).exists():
        return name.partition("#")[0]
    return name


def _crate_id(archive_path: str) -> str:
    return urllib.parse.quote(archive_path)


def _additional_type(value: Any) -> str:
    if isinstance(value, dict) and value.get("class") == "File":
        return "File"
    if isinstance(value, dict) and value.get("class") == "Directory":
        return "Dataset"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "Text"
    if isinstance(value, list):
        return "Collection"
    return "PropertyValue"


def build_crate(
    spec: ArchiveSpec, manifest: dict, entries: dict[str, dict], outputs: dict | None, archived_at: str
) -> dict:
    """The ``ro-crate-metadata.json`` of the archive (RO-Crate 1.1, Workflow Run Crate 0.5).

    The main workflow is ``src/<main document>`` (a ComputationalWorkflow); the run is one
    CreateAction with it as ``instrument``, the job order as ``object`` (Files in ``src/``,
    other values as PropertyValues), the output object as ``result`` and the run's times and
    outcome. Job scripts, logs and step metadata are engine traces ``about`` the run.
    """
    run_id = f"#run-{spec.workflow_id}"
    main_file = _main_file(spec)
    main_id = _crate_id(f"src/{main_file}")
    graph: list[dict] = []
    graph.append(
        {
            "@id": CRATE_NAME,
            "@type": "CreativeWork",
            "about": _ref("./"),
            "conformsTo": [_ref("https://w3id.org/ro/crate/1.1"), _ref(PROFILES[2][0])],
        }
    )
    files: dict[str, dict] = {}
    for path, info in sorted(entries.items()):
        entity = {
            "@id": _crate_id(path),
            "@type": "File",
            "name": PurePosixPath(path).name,
            "contentSize": str(info["size"]),
            "sha256": info["sha256"],
        }
        if path.startswith("steps/") or path in (MANIFEST_NAME, "inputs.json", "outputs.json"):
            entity["about"] = _ref(run_id)
        files[entity["@id"]] = entity
    parameters: list[dict] = []
    objects: list[dict] = []
    results: list[dict] = []
    values: list[dict] = []

    def realize(direction: str, key: str, value: Any, target: list[dict]) -> None:
        param_id = f"#param-{direction}-{key}"
        parameters.append(
            {
                "@id": param_id,
                "@type": "FormalParameter",
                "name": key,
                "additionalType": _additional_type(value),
                "conformsTo": _ref("https://bioschemas.org/profiles/FormalParameter/1.0-RELEASE"),
            }
        )
        location = value.get("location") if isinstance(value, dict) else None
        if isinstance(location, str) and value.get("class") in ("File", "Directory"):
            entity_id = location if "://" in location else _crate_id(location)
            if value["class"] == "Directory" and "://" not in location:
                entity_id = entity_id.rstrip("/") + "/"
            entity = files.get(entity_id)
            if entity is None:  # kept by reference, or a Directory
                entity = {
                    "@id": entity_id,
                    "@type": "File" if value["class"] == "File" else "Dataset",
                    "name": value.get("basename") or PurePosixPath(location).name,
                }
                for item in manifest["output_files"]:
                    if item["location"] and item["location"] == location:
                        entity.update(contentSize=str(item["size"]), sha256=item["sha256"])
                files[entity_id] = entity
            entity["exampleOfWork"] = _ref(param_id)
            target.append(_ref(entity_id))
        else:
            pv_id = f"#pv-{direction}-{key}"
            values.append(
                {
                    "@id": pv_id,
                    "@type": "PropertyValue",
                    "name": key,
                    "value": value if isinstance(value, str | int | float | bool) else json.dumps(value),
                    "exampleOfWork": _ref(param_id),
                }
            )
            target.append(_ref(pv_id))

    for key, value in (manifest["inputs"] or {}).items():
        realize("input", key, value, objects)
    for key, value in (outputs or {}).items():
        realize("output", key, value, results)

    main = files.get(main_id) or {"@id": main_id, "name": PurePosixPath(main_file).name}
    main.update(
        {
            "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow"],
            "name": main["name"],
            "programmingLanguage": _ref(CWL_LANGUAGE),
            "input": [_ref(p["@id"]) for p in parameters if p["@id"].startswith("#param-input-")],
            "output": [_ref(p["@id"]) for p in parameters if p["@id"].startswith("#param-output-")],
        }
    )
    files[main_id] = main

    root = {
        "@id": "./",
        "@type": "Dataset",
        "name": f"Apiary workflow run {spec.name}",
        "description": (
            f"Archive of the workflow run {spec.workflow_id} ({spec.outcome}) made by Apiary: "
            "the CWL documents as submitted, the inputs, every step's job script and output, "
            "per-step metadata and the outputs."
        ),
        "datePublished": archived_at,
        "conformsTo": [_ref(url) for url, _, _ in PROFILES],
        "mainEntity": _ref(main_id),
        "hasPart": [_ref(i) for i in sorted(files) if "://" not in i and not i.endswith("/")],
        "mentions": [_ref(run_id)],
    }
    graph.append(root)
    graph.extend(
        {"@id": url, "@type": "CreativeWork", "name": name, "version": v} for url, name, v in PROFILES
    )
    graph.append(
        {
            "@id": CWL_LANGUAGE,
            "@type": "ComputerLanguage",
            "name": "Common Workflow Language",
            "alternateName": "CWL",
            "identifier": _ref("https://w3id.org/cwl/"),
            "url": _ref("https://www.commonwl.org/"),
            **({"version": spec.cwl_version.lstrip("v")} if spec.cwl_version else {}),
        }
    )
    agent_id = f"#user-{urllib.parse.quote(spec.owner)}"
    action = {
        "@id": run_id,
        "@type": "CreateAction",
        "name": f"Run of {spec.name} ({spec.workflow_id})",
        "description": f"Workflow {spec.workflow_id} run by Apiary on {spec.site} ({spec.batch_system})",
        "instrument": _ref(main_id),
        "agent": _ref(agent_id),
        "object": objects,
        "result": results,
        "actionStatus": _ref(
            "http://schema.org/CompletedActionStatus"
            if spec.outcome == "COMPLETED"
            else "http://schema.org/FailedActionStatus"
        ),
    }
    if spec.started_at:
        action["startTime"] = spec.started_at
    if spec.ended_at:
        action["endTime"] = spec.ended_at
    if spec.outcome != "COMPLETED":
        action["error"] = spec.error or f"the workflow ended {spec.outcome}"
    if spec.source_workflow_id:
        action["isBasedOn"] = _ref(f"urn:uuid:{spec.source_workflow_id}")
    graph.append(action)
    graph.append({"@id": agent_id, "@type": "Person", "name": spec.owner})
    graph.extend(files[i] for i in sorted(files))
    graph.extend(parameters)
    graph.extend(values)
    return {"@context": CRATE_CONTEXT, "@graph": graph}


# --- reading (untrusted) ------------------------------------------------------------------------

_REQUIRED = {
    "format": str,
    "format_version": int,
    "workflow_id": str,
    "name": str,
    "state": str,
    "main_document": str,
    "inputs": dict,
}


def validate_manifest(raw: bytes) -> dict:
    """An uploaded archive's manifest, checked; raises ArchiveRuleError('manifest-malformed')."""

    def malformed(detail: str) -> ArchiveRuleError:
        return ArchiveRuleError("manifest-malformed", detail)

    if len(raw) > MAX_MANIFEST_BYTES:
        raise malformed(f"manifest.json is larger than {MAX_MANIFEST_BYTES} bytes.")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise malformed(f"manifest.json is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise malformed("manifest.json must hold a JSON object.")
    for key, kind in _REQUIRED.items():
        if key not in data:
            raise malformed(f"manifest.json has no {key!r}.")
        if not isinstance(data[key], kind) or (kind is int and isinstance(data[key], bool)):
            raise malformed(f"manifest.json: {key!r} must be a {kind.__name__}.")
    if data["format"] != MANIFEST_FORMAT:
        raise malformed(f"manifest.json: format is {data['format']!r}, not {MANIFEST_FORMAT!r}.")
    if not 1 <= data["format_version"] <= FORMAT_VERSION:
        raise malformed(
            f"manifest.json: format_version {data['format_version']} is not supported "
            f"(this Apiary reads 1 to {FORMAT_VERSION})."
        )
    try:
        uuid.UUID(data["workflow_id"])
    except ValueError:
        raise malformed(f"manifest.json: workflow_id {data['workflow_id']!r} is not a UUID.") from None
    main = PurePosixPath(data["main_document"])
    if not data["main_document"] or main.is_absolute() or ".." in main.parts or "\\" in data["main_document"]:
        raise malformed(f"manifest.json: main_document {data['main_document']!r} is not a path inside src/.")
    provenance = data.get("provenance", {})
    if not isinstance(provenance, dict):
        raise malformed("manifest.json: provenance must be an object.")
    return data
