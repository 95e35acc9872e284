"""Uploads waiting for their inputs form: the first stage of the submit page's two-stage path.

The submit page can take the CWL documents first, show a form generated from the workflow's
input schema, and submit once the form is filled. Between the two requests the upload is kept in
a *draft* folder of its owner's, ``<APIARY_RUNS_DIR>/.drafts/<user id>/<draft id>/``:

``src/``        the uploaded files (bundles unpacked, with the rules of ``workflows.bundles``)
``draft.json``  the main document (relative to ``src/``), the name, whether to start

Files uploaded in the form itself go to ``src/_inputs/<input>/``. Submitting a draft sends all of
``src/`` to :func:`workflows.services.workflow_submit` as one tar bundle (so data files that are
archives themselves stay files) and removes the draft. Drafts older than a day are removed.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from django.conf import settings

from portal.errors import ApplicationError, NotFound
from workflows import cwl, services
from workflows.bundles import extract, is_bundle, safe_relative

DRAFT_LIFETIME_SECONDS = 24 * 3600
FORM_UPLOADS = "_inputs"
_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def _root(user) -> Path:
    return Path(settings.APIARY_RUNS_DIR) / ".drafts" / str(user.pk)


@dataclass
class Draft:
    id: str
    path: Path
    main: str
    name: str = ""
    start: bool = True

    @property
    def src(self) -> Path:
        return self.path / "src"

    @property
    def main_path(self) -> Path:
        return self.src / self.main

    @property
    def main_folder(self) -> str:
        """The main document's folder relative to ``src/`` ('' at the top)."""
        parent = str(PurePosixPath(self.main).parent)
        return "" if parent == "." else parent

    def process(self):
        return cwl.load_process(self.main_path)

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.src)) for p in self.src.rglob("*") if p.is_file())

    def data_files(self) -> list[str]:
        """Uploaded files that are not CWL documents: candidates for File inputs."""
        return [f for f in self.files() if not f.endswith(".cwl")]

    def folders(self) -> list[str]:
        return sorted(str(p.relative_to(self.src)) for p in self.src.rglob("*") if p.is_dir())

    def save_upload(self, input_name: str, upload) -> str:
        """Store a file uploaded in the form for ``input_name``; its path relative to ``src/``."""
        folder = PurePosixPath(FORM_UPLOADS) / safe_relative(input_name).name
        relative = folder / safe_relative(upload.name).name
        target = self.src / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as fh:
            for chunk in upload.chunks():
                fh.write(chunk)
        return str(relative)

    def bundle(self) -> bytes:
        """All of ``src/`` as one uncompressed tar archive."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for relative in self.files():
                tar.add(self.src / relative, arcname=relative, recursive=False)
        return buffer.getvalue()

    @property
    def prefill(self) -> str:
        """The inputs file given with the upload, whose values fill in the form ('' if none)."""
        path = self.path / "prefill.yml"
        return path.read_text(errors="replace") if path.is_file() else ""

    def _save(self) -> None:
        meta = {"main": self.main, "name": self.name, "start": self.start}
        (self.path / "draft.json").write_text(json.dumps(meta))

    def delete(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _prune(root: Path) -> None:
    if not root.is_dir():
        return
    horizon = time.time() - DRAFT_LIFETIME_SECONDS
    for folder in root.iterdir():
        try:
            if folder.stat().st_mtime < horizon:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def _find_main(src: Path, main: str | None) -> str:
    """The main document relative to ``src``, chosen as a submission chooses it."""
    return str(services.find_main_document(src, main).relative_to(src.resolve()))


def draft_create(
    *,
    user,
    files: dict[str, bytes],
    main: str | None = None,
    name: str = "",
    start: bool = True,
    prefill: str | None = None,
) -> Draft:
    """Store an upload as a draft after loading its main document with cwltool.

    ``prefill``: the text of an inputs file whose values fill in the form.

    Raises :class:`ApplicationError` (invalid CWL, bundle or size) and leaves nothing behind.
    """
    total = sum(len(data) for data in files.values())
    if total > settings.APIARY_MAX_UPLOAD_BYTES:
        raise ApplicationError(
            f"The upload is {total} bytes; the limit is {settings.APIARY_MAX_UPLOAD_BYTES}."
        )
    root = _root(user)
    _prune(root)
    draft_id = secrets.token_urlsafe(18)
    path = root / draft_id
    (path / "src").mkdir(parents=True)
    try:
        for file_name, data in files.items():
            if is_bundle(file_name):
                extract(data, file_name, path / "src")
            else:
                target = path / "src" / safe_relative(file_name)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        draft = Draft(draft_id, path, _find_main(path / "src", main), name=name, start=bool(start))
        try:
            draft.process()
        except cwl.CwlError as exc:
            exc.message = exc.message.replace(str(draft.src.resolve()) + "/", "")
            raise
        draft._save()
        if prefill:
            (path / "prefill.yml").write_text(prefill)
        return draft
    except Exception:
        shutil.rmtree(path, ignore_errors=True)
        raise


def draft_get(*, user, draft_id: str) -> Draft:
    """The user's draft, or NotFound (another user's draft id is simply unknown)."""
    path = _root(user) / draft_id
    if not _ID.match(draft_id or "") or not (path / "draft.json").is_file():
        raise NotFound("This upload has expired or does not exist; upload the workflow again.")
    meta = json.loads((path / "draft.json").read_text())
    return Draft(draft_id, path, meta["main"], name=meta.get("name", ""), start=meta.get("start", True))


def draft_submit(*, user, draft: Draft, job_order: dict, name: str = "", start: bool = True):
    """Submit the draft with ``job_order`` (File paths relative to the main document's folder)."""
    workflow = services.workflow_submit(
        owner=user,
        files={"upload.tar": draft.bundle()},
        main=draft.main,
        inputs_text=json.dumps(job_order),
        name=name,
        start=start,
    )
    draft.delete()
    return workflow
