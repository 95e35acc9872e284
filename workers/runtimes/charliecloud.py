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
* ``ch-run "$IMG" -b P:P … -c <outdir> --unset-env='*' --set-env=… -- <command>``: the run folder
  tree (``APIARY_RUNS_DIR``: the step's outdir, tmp and stage, the workflow's ``src/``, other
  steps' outdirs) and any input outside it are bound at the same paths, so cwltool's command line
  keeps host paths and its output collection works unchanged. The environment is exactly CWL's
  (``--unset-env='*'``) over the image's own (``/ch/environment``, if the image has one) and a
  Docker-like default ``PATH``.
* ``dockerOutputDirectory`` is refused: outputs are collected from the run folder's outdir,
  which the command sees at its host path, not at a directory of the image's choosing.
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
        if image.output_directory:
            raise ContainerError(
                f"DockerRequirement.dockerOutputDirectory ({image.output_directory}) is not supported: "
                "Apiary runs the command in the step's output folder, bound at its own path"
            )
        found = self.locate(image)
        for path in [*job.binds, *job.bind_files, job.workdir]:
            if ":" in path or not path.startswith("/") or path == "/":
                raise ContainerError(
                    f"cannot bind {path!r} into the container (needs an absolute path, no ':')"
                )
        q = shlex.quote
        img = '"$IMG"'
        if found.kind == "tar":
            unpack = f"ch-convert -i tar -o dir {q(found.path)} {img}"
        else:
            unpack = f"mkdir {img} && cp -a {q(found.path.rstrip('/') + '/.')} {img}/"
        targets = " ".join(f"{img}{q(p)}" for p in ["/ch", *job.binds])
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
        for path in job.bind_files:
            parent = os.path.dirname(path)
            setup.append(f"mkdir -p {img}{q(parent)} && touch {img}{q(path)} || exit {SETUP_FAILED}")

        prefix: list[str] = ["ch-run", ShellWord(img)]
        for path in [*job.binds, *job.bind_files]:
            prefix += ["-b", f"{path}:{path}"]
        prefix += [
            "-c",
            job.workdir,
            CONTINUE,
            "--unset-env=*",
            f"--set-env=PATH={DEFAULT_PATH}",
            "--set-env",
        ]
        if job.environment:
            prefix += [CONTINUE, "--env-no-expand"]
            prefix += [f"--set-env={k}={_set_env_value(v)}" for k, v in sorted(job.environment.items())]
        prefix += [CONTINUE, "--"]

        cleanup = [
            "# Remove this job's copy of the image (the EXIT trap covers an early end).",
            'rm -rf "$IMG_DIR"',
        ]
        return Wrapping(setup_lines=setup, prefix=prefix, cleanup_lines=cleanup)


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", "file://", "./", "../")) or value.endswith(PATH_LIKE_SUFFIXES)


def _set_env_value(value: str) -> str:
    """``--set-env`` strips one pair of single quotes around a value: keep such a value intact."""
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return f"'{value}'"
    return value
