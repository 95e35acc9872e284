"""Site hints in CWL documents turned into ``#SBATCH`` options.

Accepted, as hints or requirements, on a tool or inherited from its workflow:

``apiary:SlurmRequirement`` / ``beeflow:SlurmRequirement`` (BEE's name, so BEE workflows run
unchanged)
    ``partition``, ``account``, ``qos``, ``reservation``, ``timeLimit`` (minutes, or
    ``[D-]HH:MM:SS`` as sbatch takes it), ``nodes``, ``ntasks``, ``extra`` (more sbatch options:
    a list, or one string split on whitespace).
``beeflow:MPIRequirement``
    ``nodes``, ``ntasks``.

A class is recognised by its name after the namespace, whatever URI the document binds the
prefix to (``$namespaces: {apiary: "urn:apiary:cwl#", beeflow: "https://github.com/lanl/bee/"}``),
except cwltool's own ``http://commonwl.org/cwltool#MPIRequirement``, which has other fields.
Values are checked: a malformed hint fails the step before anything is submitted.
"""

from __future__ import annotations

import re

from workers.cwl_job import JobBuildError

_FIELDS = {
    "partition": "--partition",
    "account": "--account",
    "qos": "--qos",
    "reservation": "--reservation",
    "timeLimit": "--time",
    "nodes": "--nodes",
    "ntasks": "--ntasks",
}
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:,@+=/-]+$")


def _class_name(entry: dict) -> str:
    cls = str(entry.get("class", ""))
    return re.split(r"[#/:]", cls)[-1]


def _is_ours(entry: dict) -> bool:
    cls = str(entry.get("class", ""))
    return _class_name(entry) in ("SlurmRequirement", "MPIRequirement") and "commonwl.org" not in cls


def sbatch_options(process) -> list[str]:
    """``#SBATCH`` options from the process's site hints (requirements override hints)."""
    options: dict[str, str] = {}
    extra: list[str] = []
    for entry in [*process.hints, *process.requirements]:
        if not isinstance(entry, dict) or not _is_ours(entry):
            continue
        allowed = (
            _FIELDS
            if _class_name(entry) == "SlurmRequirement"
            else {"nodes": "--nodes", "ntasks": "--ntasks"}
        )
        for key, value in entry.items():
            if key == "class":
                continue
            if key == "extra" and _class_name(entry) == "SlurmRequirement":
                items = value.split() if isinstance(value, str) else list(value or [])
                for item in items:
                    if not isinstance(item, str) or not item.startswith("--") or "\n" in item:
                        raise JobBuildError(
                            f"SlurmRequirement extra option {item!r} must look like --name=value"
                        )
                    extra.append(item)
                continue
            if key not in allowed:
                raise JobBuildError(
                    f"{_class_name(entry)} has no field {key!r}; use {', '.join(sorted(allowed))}"
                    + (" or extra" if _class_name(entry) == "SlurmRequirement" else "")
                )
            text = str(value)
            if not _SAFE_VALUE.match(text):
                raise JobBuildError(f"{_class_name(entry)}.{key} value {text!r} is not valid")
            options[allowed[key]] = text
    return [f"{flag}={value}" for flag, value in options.items()] + extra
