"""Charliecloud (``ch-run``), the BEE way: unpack the image on the node, run in it, remove it.

Where the image comes from (first found wins, all looked up on the worker before submission, so
a missing image fails the step with no batch job):

1. ``dockerLoad`` / ``dockerImport``: a Charliecloud image — a flat-filesystem tarball
   (``.tar.gz``, ``.tar``, e.g. written by ``ch-convert``; not a ``docker save`` archive) or an
   image directory — by path or ``file://`` URL, relative to the CWL document's folder.
2. ``dockerImageId`` that is a path (absolute, ``file://``, or ending ``.tar``/``.tar.gz``/
   ``.tgz``): the same, as in BEE's job scripts (``dockerImageId: /projects/x/toss.tar``).
3. ``dockerPull``, then a ``dockerImageId`` that is a name: the image in the site image store
   ``APIARY_IMAGE_STORE`` (there is no registry access on compute nodes: a site puts its images
   there, e.g. with ``ch-image pull`` + ``ch-convert`` on a machine that has the network).

Store naming rule — Charliecloud's own (``ch-image`` names its storage folders the same way):
``:`` becomes ``+`` and ``/`` becomes ``%``; the name is then looked up as ``<store>/<name>.tar.gz``,
``<store>/<name>.tar`` or the directory ``<store>/<name>``. So ``debian:stable-slim`` is
``debian+stable-slim.tar.gz`` and ``quay.io/org/tool:1.0`` is ``quay.io%org%tool+1.0.tar.gz``.
An untagged name also matches ``<name>+latest`` (and ``name:latest`` also matches ``name``); a
leading ``docker.io/`` and ``library/`` are optional (``docker.io/library/debian:12`` also
matches ``debian+12``). Names that could leave the store (``..``, a leading ``.``) are refused.

How the job script runs it:

* the image is unpacked (tarball: ``ch-convert -i tar -o dir``) or copied (directory: ``cp -a``)
  into a private, node-local folder (``mktemp -d ${TMPDIR:-/tmp}/apiary-img.XXXXXX``; the job
  name is not known yet when the job is built, and a fresh folder also keeps two runs of the same
  script apart), removed at the end and by an EXIT trap. Directory images are copied rather than
  used in place because ``ch-run -b`` needs each bind target to exist in the image and 0.31 has
  no ``--write-fake``: creating the mount points in a shared image is not ours to do.
* ``ch-run --private-tmp "$IMG" -b P:P … -c <outdir> --unset-env='*' --set-env=… -- <command>``:
  the run folder tree (``APIARY_RUNS_DIR``: the step's outdir, tmp and stage, the workflow's ``src/``, other
  steps' outdirs) and any input outside it are bound at the same paths, so cwltool's command line
  keeps host paths and its output collection works unchanged. The environment is exactly CWL's
  (``--unset-env='*'``) over the image's own (``/ch/environment``, if the image has one) and a
  Docker-like default ``PATH``.
* ``--private-tmp``: ``ch-run`` otherwise shows the host's ``$TMPDIR`` as ``/tmp``, which hides
  a run folder under ``/tmp`` and cannot take mount points; the container's ``/tmp`` is a
  private tmpfs instead (in memory: CWL tools write temporary data to ``$TMPDIR``, which is the
  step's ``tmp`` folder in the run folder).
* ``ch-run -b SRC:DST`` cannot escape a ``:``: a path containing one is bound through the
  nearest folder above it without one (``/data/A:B`` → ``/data``).
* ``dockerOutputDirectory``: the step's outdir is also bound there, and the command starts in
  it (cwltool's command line keeps naming host paths, which are bound too).
* Entrypoint: Charliecloud 0.31 keeps no ``ENTRYPOINT`` of a Docker image. Apiary's convention:
  an image may hold ``/ch/entrypoint``, a text file with one word of the exec-form entrypoint
  per line; the command is then passed to it, as Docker does (``scripts/build-test-image
  --conformance`` writes one for the ``bash:4.4`` stand-in).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from workers.runtimes.base import (
    CONTINUE,
    ContainerError,
    ContainerJob,
    ContainerRuntime,
    ImageRequest,
    ShellWord,
    Wrapping,
)

TARBALL_SUFFIXES = (".tar.gz", ".tar")
PATH_LIKE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
# What Docker gives a container whose image sets no PATH.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# A failed image preparation ends the job with this code (like ``cd … || exit 70``).
SETUP_FAILED = 71
# Apiary's convention for an image's ENTRYPOINT (Charliecloud 0.31 keeps none): a text file in
# the image, one word of the exec-form entrypoint per line, put there by whoever adds the image.
ENTRYPOINT_FILE = "/ch/entrypoint"


@dataclass(frozen=True)
class Image:
    path: str
    kind: str  # "tar" or "dir"
    label: str  # how the CWL named it, e.g. "apiary-busybox (dockerPull, from the image store)"


def store_name(reference: str) -> str:
    """The file-system name of an image reference: ``:`` → ``+``, ``/`` → ``%`` (as ch-image)."""
    name = reference.strip().replace("/", "%").replace(":", "+")
    if not name or name.startswith(".") or any(c.isspace() or ord(c) < 32 for c in name):
        raise ContainerError(f"container image name {reference!r} is not a valid image reference")
    return name


def store_candidates(reference: str) -> list[str]:
    """Every store name ``reference`` may be stored under, most specific first."""
    refs = [reference.strip()]
    for prefix in ("docker.io/", "library/"):
        if refs[-1].startswith(prefix):
            refs.append(refs[-1][len(prefix) :])
    names: list[str] = []
    for ref in refs:
        last = ref.rsplit("/", 1)[-1]
        variants = [ref]
        if ":" not in last and "@" not in last:
            variants.append(f"{ref}:latest")
        elif last.endswith(":latest"):
            variants.append(ref[: -len(":latest")])
        for variant in variants:
            name = store_name(variant)
            if name not in names:
                names.append(name)
    return names


class CharliecloudRuntime(ContainerRuntime):
    name = "charliecloud"

    def __init__(self, image_store: str | os.PathLike):
        self.store = Path(image_store)

    # --- finding the image -------------------------------------------------------------------

    def locate(self, image: ImageRequest) -> Image:
        problems: list[str] = []
        for field, value in (("dockerLoad", image.docker_load), ("dockerImport", image.docker_import)):
            if value:
                found = self._by_path(value, field, image.base_dir, problems)
                if found:
                    return found
        image_id = image.docker_image_id
        id_is_path = bool(image_id) and _looks_like_path(image_id)
        if id_is_path:
            found = self._by_path(image_id, "dockerImageId", image.base_dir, problems)
            if found:
                return found
        for field, value in (("dockerPull", image.docker_pull), ("dockerImageId", image_id)):
            if value and not (field == "dockerImageId" and id_is_path):
                found = self._in_store(value, field, problems)
                if found:
                    return found
        if image.docker_file:
            problems.append(
                "dockerFile is not supported: images are not built on the cluster; build it "
                f"elsewhere and put it in the image store {self.store}"
            )
        if not problems:
            raise ContainerError("DockerRequirement names no image (dockerPull, dockerImageId, dockerLoad)")
        raise ContainerError("; ".join(problems))

    def _in_store(self, reference: str, field: str, problems: list[str]) -> Image | None:
        names = store_candidates(reference)
        for name in names:
            for suffix in TARBALL_SUFFIXES:
                path = self.store / f"{name}{suffix}"
                if path.is_file():
                    return Image(str(path), "tar", f"{reference} ({field}, from the site image store)")
            path = self.store / name
            if path.is_dir():
                return Image(str(path), "dir", f"{reference} ({field}, from the site image store)")
        looked = ", ".join(f"{n}.tar.gz, {n}.tar, {n}/" for n in names)
        problems.append(
            f"container image {reference!r} ({field}) is not in the image store {self.store} "
            f"(looked for {looked})"
        )
        return None

    def _by_path(self, value: str, field: str, base_dir: str | None, problems: list[str]) -> Image | None:
        parsed = urlparse(value)
        if parsed.scheme and parsed.scheme != "file" and len(parsed.scheme) > 1:
            problems.append(
                f"container image {value!r} ({field}): only local paths and file:// URLs are "
                f"supported (no downloads on the cluster); put the image in the image store {self.store}"
            )
            return None
        raw = unquote(parsed.path) if parsed.scheme == "file" else value
        path = Path(raw)
        if not path.is_absolute():
            if not base_dir:
                problems.append(f"container image {value!r} ({field}): a relative path needs a document")
                return None
            path = Path(base_dir) / path
        if path.is_dir():
            return Image(str(path), "dir", f"{value} ({field})")
        if path.is_file():
            return Image(str(path), "tar", f"{value} ({field})")
        problems.append(f"container image {value!r} ({field}) not found: no file or directory {path}")
        return None

    # --- the job script ----------------------------------------------------------------------

    def wrap(self, image: ImageRequest, job: ContainerJob) -> Wrapping:
        found = self.locate(image)
        output_dir = _output_directory(image.output_directory, job.workdir)
        binds, bind_files = _bindable(job.binds, job.bind_files)
        q = shlex.quote
        img = '"$IMG"'
        if found.kind == "tar":
            unpack = f"ch-convert -i tar -o dir {q(found.path)} {img}"
        else:
            unpack = f"mkdir {img} && cp -a {q(found.path.rstrip('/') + '/.')} {img}/"
        mount_points = ["/ch", *binds, *([output_dir] if output_dir else [])]
        targets = " ".join(f"{img}{q(p)}" for p in mount_points)
        setup = [
            f"# Container (Charliecloud): image {found.label}.",
            "# A private copy is unpacked on this node for this job only, and removed when it ends.",
            'export USER="${USER:-$(id -un)}"  # ch-run needs it',
            f'IMG_DIR=$(mktemp -d "${{TMPDIR:-/tmp}}/apiary-img.XXXXXX") || exit {SETUP_FAILED}',
            "trap 'rm -rf \"$IMG_DIR\"' EXIT",
            'IMG="$IMG_DIR/img"',
            f"{unpack} || exit {SETUP_FAILED}",
            "# ch-run binds host paths at the same paths inside: create the mount points in the",
            "# copy, and the /ch/environment that --set-env reads (the image's own variables).",
            f'mkdir -p {targets} && touch "$IMG/ch/environment" || exit {SETUP_FAILED}',
        ]
        for path in bind_files:
            parent = os.path.dirname(path)
            setup.append(f"mkdir -p {img}{q(parent)} && touch {img}{q(path)} || exit {SETUP_FAILED}")
        mounts = _mounts(job.mounts)
        for _, inside, is_dir in mounts:
            make = f"mkdir -p {img}{q(inside)}" if is_dir else (
                f"mkdir -p {img}{q(os.path.dirname(inside))} && touch {img}{q(inside)}"
            )
            setup.append(f"{make} || exit {SETUP_FAILED}")
        setup += [
            "# The image's entrypoint, if it declares one (/ch/entrypoint: one word per line).",
            "ENTRYPOINT=()",
            f'if [ -f "$IMG{ENTRYPOINT_FILE}" ]; then mapfile -t ENTRYPOINT <"$IMG{ENTRYPOINT_FILE}"; fi',
        ]

        # --private-tmp: by default ch-run shares the host's $TMPDIR as /tmp, which hides any
        # bound path under /tmp and leaks between jobs; a container gets its own, as in Docker.
        prefix: list[str] = ["ch-run", "--private-tmp", ShellWord(img)]
        for path in [*binds, *bind_files]:
            prefix += ["-b", f"{path}:{path}"]
        for host, inside, _ in mounts:
            prefix += ["-b", f"{host}:{inside}"]
        if output_dir:
            prefix += ["-b", f"{job.workdir}:{output_dir}"]
        prefix += [
            "-c",
            output_dir or job.workdir,
            CONTINUE,
            "--unset-env=*",
            f"--set-env=PATH={DEFAULT_PATH}",
            "--set-env",
        ]
        if job.environment:
            prefix += [CONTINUE, "--env-no-expand"]
            prefix += [f"--set-env={k}={_set_env_value(v)}" for k, v in sorted(job.environment.items())]
        prefix += [CONTINUE, "--", ShellWord('"${ENTRYPOINT[@]}"')]

        cleanup = [
            "# Remove this job's copy of the image (the EXIT trap covers an early end).",
            'rm -rf "$IMG_DIR"',
        ]
        return Wrapping(setup_lines=setup, prefix=prefix, cleanup_lines=cleanup)


def _mounts(mounts) -> list[tuple[str, str, bool]]:
    """Host paths bound elsewhere inside (``-b HOST:INSIDE``): neither side may hold ``:``."""
    for host, inside, _ in mounts:
        for path in (host, inside):
            if ":" in path or not path.startswith("/") or os.path.normpath(path) == "/":
                raise ContainerError(f"cannot mount {path!r} in the container (an absolute path, no ':')")
    mounts = [(host, os.path.normpath(inside), is_dir) for host, inside, is_dir in mounts]
    folders = [inside for _, inside, is_dir in mounts if is_dir]
    # What lies inside a mounted folder comes with it.
    return [m for m in mounts if not any(m[1] != f and _inside(m[1], f) for f in folders)]


def _output_directory(requested: str | None, workdir: str) -> str | None:
    """``dockerOutputDirectory``: where the command sees (and starts in) its output folder."""
    if not requested or os.path.normpath(requested) == os.path.normpath(workdir):
        return None
    path = os.path.normpath(requested)
    if not path.startswith("/") or path == "/" or ":" in path:
        raise ContainerError(
            f"DockerRequirement.dockerOutputDirectory {requested!r} must be an absolute path other "
            "than / and without ':'"
        )
    return path


def _bindable(dirs: list[str], files: list[str]) -> tuple[list[str], list[str]]:
    """The binds ``ch-run -b SRC:DST`` can express: a path with ``:`` is bound through the
    nearest folder above it that has none (``ch-run`` has no way to escape the separator)."""
    out_dirs: list[str] = []
    out_files: list[str] = []
    for path in [*dirs, *files]:
        if not path.startswith("/") or path == "/":
            raise ContainerError(f"cannot bind {path!r} into the container (needs an absolute path)")
    for path, is_dir in [*((d, True) for d in dirs), *((f, False) for f in files)]:
        if ":" in path:
            folder = path.split(":", 1)[0].rsplit("/", 1)[0]
            if not folder:
                raise ContainerError(f"cannot bind {path!r} into the container: ':' in its top folder")
            path, is_dir = folder, True
        (out_dirs if is_dir else out_files).append(path)
    out_dirs = [d for d in dict.fromkeys(out_dirs) if not any(_inside(d, o) for o in out_dirs if o != d)]
    out_files = [f for f in dict.fromkeys(out_files) if not any(_inside(f, d) for d in out_dirs)]
    return out_dirs, out_files


def _inside(path: str, folder: str) -> bool:
    return Path(path).is_relative_to(folder)


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", "file://", "./", "../")) or value.endswith(PATH_LIKE_SUFFIXES)


def _set_env_value(value: str) -> str:
    """``--set-env`` strips one pair of single quotes around a value: keep such a value intact."""
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return f"'{value}'"
    return value
