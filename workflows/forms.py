"""The submit page's inputs form, generated from a CWL process's input schema.

:func:`input_specs` reads the inputs of a loaded cwltool process (``process.tool["inputs"]``)
into plain :class:`InputSpec` values; :class:`InputsForm` is a Django form with one field per
input; :meth:`InputsForm.job_order` turns its cleaned values into a CWL job order.

What each CWL type becomes:

======================================  ==========================================================
``string``                              a text field
``int``, ``long`` / ``float``, ``double``  a number field
``boolean``                             a checkbox (a yes/no/unset choice when optional)
enum                                    a choice of its symbols
``File``                                a file upload, or a choice among the uploaded data files
``Directory``                           a choice among the uploaded folders
arrays of the above scalars and enums   a text area, one value per line
``File[]``                              several uploads and/or uploaded data files
anything else (records, unions, Any)    a text area taking the value as YAML
======================================  ==========================================================

An optional input (``T?``) or one with a ``default`` may be left empty: it is then left out of
the job order and CWL applies its default.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile
from ruamel.yaml import YAML

PREFIX = "in_"
EXISTING = "__existing"

SCALAR_KINDS = {"string": "string", "int": "int", "long": "int", "float": "float", "double": "float"}


@dataclass
class InputSpec:
    """One workflow input as the form sees it."""

    name: str
    kind: str  # string, int, float, boolean, enum, File, Directory, array, yaml
    optional: bool = False
    default: Any = None
    has_default: bool = False
    label: str = ""
    doc: str = ""
    symbols: list[str] = field(default_factory=list)  # enum, or array of enum
    item_kind: str = ""  # for arrays: string, int, float, boolean, enum, File

    @property
    def required(self) -> bool:
        return not (self.optional or self.has_default)

    @property
    def field_name(self) -> str:
        return PREFIX + self.name

    @property
    def type_text(self) -> str:
        """The type in CWL's short notation, for the page (``string``, ``File?``, ``int[]``)."""
        if self.kind == "array":
            base = f"{self.item_kind if self.item_kind != 'enum' else 'enum'}[]"
        elif self.kind == "yaml":
            base = "YAML"
        else:
            base = self.kind
        return base + ("?" if self.optional else "")


def _short(identifier: str) -> str:
    """``file:///x/wf.cwl#pattern`` -> ``pattern``; ``…#e/a`` (an enum symbol) -> ``a``."""
    return identifier.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


def _classify(cwl_type) -> tuple[str, bool, dict]:
    """(kind, optional, extra) for a CWL type as cwltool normalises it."""
    optional = False
    if isinstance(cwl_type, list):
        rest = [t for t in cwl_type if t != "null"]
        optional = len(rest) < len(cwl_type)
        if len(rest) != 1:
            return "yaml", optional, {}
        cwl_type = rest[0]
    if isinstance(cwl_type, str):
        if cwl_type in SCALAR_KINDS:
            return SCALAR_KINDS[cwl_type], optional, {}
        if cwl_type in ("boolean", "File", "Directory"):
            return cwl_type, optional, {}
        return "yaml", optional, {}
    if isinstance(cwl_type, dict):
        if cwl_type.get("type") == "enum":
            return "enum", optional, {"symbols": [_short(s) for s in cwl_type.get("symbols", [])]}
        if cwl_type.get("type") == "array":
            item_kind, item_optional, extra = _classify(cwl_type.get("items"))
            if item_optional or item_kind not in ("string", "int", "float", "boolean", "enum", "File"):
                return "yaml", optional, {}
            return "array", optional, {"item_kind": item_kind, **extra}
    return "yaml", optional, {}


def _document_order(path: Path | None) -> list[str]:
    """Input names in the order the document lists them (cwltool sorts them by name)."""
    if path is None:
        return []
    try:
        doc = YAML(typ="safe", pure=True).load(Path(path).read_text())
    except Exception:
        return []
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if isinstance(inputs, dict):
        return [str(k) for k in inputs]
    if isinstance(inputs, list):
        return [str(i.get("id", "")).lstrip("#") for i in inputs if isinstance(i, dict)]
    return []


def input_specs(process, document: Path | None = None) -> list[InputSpec]:
    """The inputs of a loaded cwltool process, in the document's order when it can be read."""
    specs = []
    for inp in process.tool.get("inputs", []):
        kind, optional, extra = _classify(inp.get("type"))
        doc = inp.get("doc") or ""
        specs.append(
            InputSpec(
                name=_short(inp["id"]),
                kind=kind,
                optional=optional,
                default=inp.get("default"),
                has_default="default" in inp and inp.get("default") is not None,
                label=str(inp.get("label") or ""),
                doc="\n".join(doc) if isinstance(doc, list) else str(doc),
                **extra,
            )
        )
    order = {name: i for i, name in enumerate(_document_order(document))}
    specs.sort(key=lambda s: order.get(s.name, len(order)))
    return specs


# --- the form -------------------------------------------------------------------------------


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(d, initial) for d in data if d]
        return [single(data, initial)] if data else []


def _to_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a whole number") from None


def _to_float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a number") from None


def _to_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"{text.strip()!r} is not true or false")


def _yaml_text(value) -> str:
    stream = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(value, stream)
    text = stream.getvalue()
    return text[:-5] if text.endswith("\n...\n") else text


def _file_path(value) -> str | None:
    """The ``path``/``location`` of a File or Directory value from an inputs file."""
    if isinstance(value, dict):
        ref = value.get("path") or value.get("location")
        if isinstance(ref, str) and "://" not in ref:
            return ref
    return None


class InputsForm(forms.Form):
    """One field per workflow input (plus ``<field>__existing`` choices for File inputs).

    ``data_files`` and ``folders`` are the paths of the uploaded data files and folders (relative
    to the upload), offered for File and Directory inputs.
    """

    def __init__(
        self,
        *args,
        specs: list[InputSpec],
        data_files: list[str] = (),
        folders: list[str] = (),
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.specs = specs
        file_choices = [(p, p) for p in data_files]
        folder_choices = [(p, p) for p in folders]
        for spec in specs:
            self._add_fields(spec, file_choices, folder_choices)

    def _add_fields(self, spec: InputSpec, file_choices, folder_choices) -> None:
        name = spec.field_name
        label = spec.label or spec.name
        common = {"label": label, "help_text": spec.doc, "required": spec.required}
        initial = spec.default if spec.has_default else None
        kind = spec.kind
        if kind == "string":
            self.fields[name] = forms.CharField(strip=False, initial=initial, **common)
        elif kind == "int":
            self.fields[name] = forms.IntegerField(initial=initial, **common)
        elif kind == "float":
            self.fields[name] = forms.FloatField(initial=initial, **common)
        elif kind == "boolean":
            if spec.optional and not spec.has_default:
                choices = [("", "not set"), ("true", "yes"), ("false", "no")]
                self.fields[name] = forms.TypedChoiceField(
                    choices=choices, coerce=lambda v: v == "true", empty_value=None, **common
                )
            else:
                common["required"] = False  # an unticked box is false
                self.fields[name] = forms.BooleanField(initial=bool(initial), **common)
        elif kind == "enum":
            choices = [(s, s) for s in spec.symbols]
            if not spec.required:
                choices.insert(0, ("", "default" if spec.has_default else "not set"))
            self.fields[name] = forms.ChoiceField(choices=choices, initial=initial, **common)
        elif kind == "File":
            common["required"] = False  # either an upload or an uploaded file: checked in clean()
            self.fields[name] = forms.FileField(**common)
            self.fields[name + EXISTING] = forms.ChoiceField(
                choices=[("", "— upload a file —"), *file_choices],
                required=False,
                label=f"{label}: a file from the upload",
                initial=_file_path(initial),
            )
        elif kind == "Directory":
            self.fields[name] = forms.ChoiceField(
                choices=[("", "— choose a folder —" if spec.required else "not set"), *folder_choices],
                initial=_file_path(initial),
                **common,
            )
        elif kind == "array" and spec.item_kind == "File":
            common["required"] = False
            self.fields[name] = MultipleFileField(**common)
            self.fields[name + EXISTING] = forms.MultipleChoiceField(
                choices=file_choices,
                required=False,
                label=f"{label}: files from the upload",
                widget=forms.CheckboxSelectMultiple,
                initial=[p for p in (_file_path(v) for v in (initial or [])) if p],
            )
        elif kind == "array":
            hint = "One value per line."
            if spec.item_kind == "enum":
                hint += f" Each one of: {', '.join(spec.symbols)}."
            common["help_text"] = f"{spec.doc} {hint}".strip()
            self.fields[name] = forms.CharField(
                widget=forms.Textarea(attrs={"rows": 4}),
                strip=False,
                initial="\n".join(str(v) for v in initial) if isinstance(initial, list) else None,
                **common,
            )
        else:
            common["help_text"] = f"{spec.doc} The value as YAML.".strip()
            self.fields[name] = forms.CharField(
                widget=forms.Textarea(attrs={"rows": 4, "class": "mono"}),
                strip=False,
                initial=_yaml_text(initial) if initial is not None else None,
                **common,
            )

    # -- prefilling from an inputs file --

    def prefill(self, job_order: dict, base: str = "") -> None:
        """Use the values of an inputs file (``base``: its folder in the upload) as initial values."""
        for spec in self.specs:
            if spec.name not in job_order or job_order[spec.name] is None:
                continue
            value = job_order[spec.name]
            name = spec.field_name
            if spec.kind in ("File", "Directory"):
                path = _file_path(value)
                target = name + EXISTING if spec.kind == "File" else name
                if path:
                    self.initial[target] = posixpath.normpath(posixpath.join(base, path))
            elif spec.kind == "array" and spec.item_kind == "File" and isinstance(value, list):
                paths = [_file_path(v) for v in value]
                self.initial[name + EXISTING] = [
                    posixpath.normpath(posixpath.join(base, p)) for p in paths if p
                ]
            elif spec.kind == "array" and isinstance(value, list):
                self.initial[name] = "\n".join(
                    str(v).lower() if isinstance(v, bool) else str(v) for v in value
                )
            elif spec.kind == "yaml":
                self.initial[name] = _yaml_text(value)
            elif spec.kind == "boolean" and spec.optional and not spec.has_default:
                self.initial[name] = "true" if value else "false"
            else:
                self.initial[name] = value

    # -- validation --

    def clean(self):
        cleaned = super().clean()
        for spec in self.specs:
            name = spec.field_name
            if name in self.errors:
                continue
            try:
                if spec.kind == "File":
                    if spec.required and not cleaned.get(name) and not cleaned.get(name + EXISTING):
                        raise forms.ValidationError("Upload a file or choose one from the upload.")
                elif spec.kind == "array" and spec.item_kind == "File":
                    if spec.required and not cleaned.get(name) and not cleaned.get(name + EXISTING):
                        raise forms.ValidationError("Upload files or choose some from the upload.")
                elif spec.kind == "array":
                    cleaned[name] = self._clean_lines(spec, cleaned.get(name))
                elif spec.kind == "yaml":
                    cleaned[name] = self._clean_yaml(cleaned.get(name))
            except forms.ValidationError as exc:
                self.add_error(name, exc)
        return cleaned

    @staticmethod
    def _clean_lines(spec: InputSpec, text: str | None) -> list | None:
        lines = [line for line in (text or "").splitlines() if line.strip()]
        if not lines:
            if spec.required:
                raise forms.ValidationError("Give at least one value, one per line.")
            return None
        convert: Callable[[str], Any] = {
            "int": _to_int,
            "float": _to_float,
            "boolean": _to_bool,
        }.get(spec.item_kind, lambda s: s)
        values, problems = [], []
        for number, line in enumerate(lines, 1):
            try:
                value = convert(line)
            except ValueError as exc:
                problems.append(f"line {number}: {exc}")
                continue
            if spec.item_kind == "enum" and value not in spec.symbols:
                problems.append(f"line {number}: {value!r} is not one of {', '.join(spec.symbols)}")
                continue
            values.append(value)
        if problems:
            raise forms.ValidationError("; ".join(problems) + ".")
        return values

    @staticmethod
    def _clean_yaml(text: str | None):
        if not (text or "").strip():
            return None
        try:
            return YAML(typ="safe", pure=True).load(io.StringIO(text))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise forms.ValidationError(f"This is not valid YAML: {first}") from None

    # -- the result --

    def uploads(self) -> dict[str, list[UploadedFile]]:
        """The files uploaded in the form, per input name (valid form only)."""
        out = {}
        for spec in self.specs:
            value = self.cleaned_data.get(spec.field_name)
            if spec.kind == "File" and value:
                out[spec.name] = [value]
            elif spec.kind == "array" and spec.item_kind == "File" and value:
                out[spec.name] = list(value)
        return out

    def job_order(self, *, saved: dict[str, list[str]] | None = None, base: str = "") -> dict:
        """The CWL job order. File/Directory values are ``{"class", "path"}`` relative to ``base``.

        ``saved`` maps an input name to where :meth:`uploads` were stored (paths relative to
        the upload, as the ``__existing`` choices are); ``base`` is the main document's folder.
        """
        saved = saved or {}

        def ref(cls: str, path: str) -> dict:
            return {"class": cls, "path": posixpath.relpath(path, base or ".")}

        order: dict[str, Any] = {}
        for spec in self.specs:
            value = self.cleaned_data.get(spec.field_name)
            existing = self.cleaned_data.get(spec.field_name + EXISTING)
            if spec.kind == "File":
                path = (saved.get(spec.name) or [None])[0] or existing
                if path:
                    order[spec.name] = ref("File", path)
            elif spec.kind == "Directory":
                if value:
                    order[spec.name] = ref("Directory", value)
            elif spec.kind == "array" and spec.item_kind == "File":
                paths = list(existing or []) + list(saved.get(spec.name, []))
                if paths or spec.required:
                    order[spec.name] = [ref("File", p) for p in paths]
            elif value is None or (value == "" and not spec.required):
                continue
            else:
                order[spec.name] = value
        return order

    def field_groups(self) -> list[tuple[InputSpec, list[forms.BoundField]]]:
        """Each input with its bound fields (the upload and the choice for File inputs)."""
        groups = []
        for spec in self.specs:
            names = [spec.field_name]
            if spec.field_name + EXISTING in self.fields:
                names.append(spec.field_name + EXISTING)
            groups.append((spec, [self[n] for n in names]))
        return groups
