"""Summarise a cwltest JUnit XML report: ``summary.md``, ``failing.txt``, ``unsupported.txt``.

Used by ``scripts/conformance``::

    python scripts/conformance_report.py OUT_DIR [--command TEXT] [--batch-system B] [--seconds N]

cwltest writes one ``<testcase>`` per test: ``file`` is the test id, ``class`` its tags
(comma-separated), a ``<failure>`` child marks a failure and a ``<skipped>`` child a test the
runner answered "unsupported feature" (exit code 33) for; anything else passed.

cwltest 2.7 leaves one kind of failure out of the XML: a ``should_fail`` test whose runner
succeeded ("Returned zero but it should be non-zero"). ``cwltest.log`` names every failure
(``Test N failed: …``, N as numbered in its ``Test [N/M] ID: …`` lines), so the failures are
taken from both.

With ``cwltest -s ID,…`` (``scripts/conformance --select``) cwltest 2.7 labels the i-th result
with the i-th test *of the suite*, not of the selection; ``--selected ID,…`` relabels the
results in selection order with each test's own id and tags, read from the suite.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

PASS, FAIL, UNSUPPORTED = "pass", "fail", "unsupported"


def read_results(xml_path: Path) -> list[dict]:
    """One dict per test: id, tags, outcome, seconds, message."""
    results = []
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = FAIL
        elif case.find("skipped") is not None:
            outcome = UNSUPPORTED
        else:
            outcome = PASS
        failure = case.find("failure")
        tags = [t.strip() for t in (case.get("class") or "required").split(",") if t.strip()]
        results.append(
            {
                "id": case.get("file") or case.get("name", "?"),
                "tags": tags,
                "outcome": outcome,
                "seconds": float(case.get("time") or 0),
                "message": (failure.text or "") if failure is not None else "",
            }
        )
    return results


LOG_TEST = re.compile(r"^Test \[(\d+)/\d+\] ([^:\s]+):", re.MULTILINE)
LOG_FAILED = re.compile(r"^Test (\d+) failed:", re.MULTILINE)


def failed_in_log(log_path: Path) -> set[str]:
    """The ids of the tests ``cwltest.log`` reports as failed."""
    if not log_path.is_file():
        return set()
    text = log_path.read_text(errors="replace")
    ids = {int(number): test_id for number, test_id in LOG_TEST.findall(text)}
    return {ids.get(int(number), f"test {number}") for number in LOG_FAILED.findall(text)}


def relabel_selected(results: list[dict], selected: list[str], suite: str | None) -> list[dict]:
    """Give the results of a ``-s`` run their real ids and tags (see the module docstring)."""
    tags_by_id: dict[str, list[str]] = {}
    if suite:
        from cwltest.utils import load_and_validate_tests

        tests, _ = load_and_validate_tests(str(Path(suite) / "conformance_tests.yaml"))
        for test in tests:
            test_id = str(test.get("id") or test.get("label") or "").rsplit("#", 1)[-1]
            tags_by_id[test_id] = list(test.get("tags") or [])
    for result, test_id in zip(results, selected, strict=False):
        result["id"] = test_id
        result["tags"] = tags_by_id.get(test_id, result["tags"])
    return results


def per_tag(results: list[dict]) -> dict[str, Counter]:
    counts: dict[str, Counter] = defaultdict(Counter)
    for result in results:
        for tag in [*result["tags"], "all"]:
            counts[tag][result["outcome"]] += 1
    return counts


def table(counts: dict[str, Counter]) -> list[str]:
    lines = ["| tag | tests | pass | fail | unsupported |", "|---|---:|---:|---:|---:|"]
    order = sorted(t for t in counts if t not in ("all", "required"))
    order = [t for t in ("required",) if t in counts] + order + ["all"]
    for tag in order:
        c = counts[tag]
        total = c[PASS] + c[FAIL] + c[UNSUPPORTED]
        name = f"**{tag}**" if tag in ("required", "all") else tag
        lines.append(f"| {name} | {total} | {c[PASS]} | {c[FAIL]} | {c[UNSUPPORTED]} |")
    return lines


def _suite_commit(suite: str | None) -> str:
    if not suite:
        return ""
    source = Path(suite) / "SOURCE.md"
    if source.is_file():
        for word in source.read_text().split():
            if len(word) == 40 and all(ch in "0123456789abcdef" for ch in word):
                return word
    return ""


def _cwltest_version() -> str:
    try:
        out = subprocess.run(["cwltest", "--version"], capture_output=True, text=True, check=False)
        return (out.stdout or out.stderr).strip().split()[-1]
    except (OSError, IndexError):
        return "?"


def write_report(
    out_dir: Path,
    command: str,
    batch: str,
    seconds: int | None,
    suite: str | None,
    selected: list[str] | None = None,
) -> str:
    results = read_results(out_dir / "results.xml")
    if selected:
        results = relabel_selected(results, selected, suite)
    for test_id in failed_in_log(out_dir / "cwltest.log"):
        matching = [r for r in results if r["id"] == test_id]
        for result in matching:
            result["outcome"] = FAIL
        if not matching:
            results.append({"id": test_id, "tags": ["unknown"], "outcome": FAIL, "seconds": 0, "message": ""})
    counts = per_tag(results)
    failing = [r["id"] for r in results if r["outcome"] == FAIL]
    unsupported = [r["id"] for r in results if r["outcome"] == UNSUPPORTED]
    (out_dir / "failing.txt").write_text("".join(f"{i}\n" for i in failing))
    (out_dir / "unsupported.txt").write_text("".join(f"{i}\n" for i in unsupported))
    total = counts["all"]
    lines = [
        f"# CWL v1.2 conformance of apiary-cwl-runner ({batch} batch system)",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}"
        + (f", {seconds} s wall time" if seconds is not None else ""),
        f"- suite: common-workflow-language/cwl-v1.2 {_suite_commit(suite)[:12]}; "
        f"cwltest {_cwltest_version()}",
        f"- result: {total[PASS]} passed, {total[FAIL]} failed, {total[UNSUPPORTED]} unsupported "
        f"of {len(results)} tests",
        "",
        *table(counts),
        "",
        f"Failing tests ({len(failing)}): `failing.txt`; unsupported ({len(unsupported)}): "
        "`unsupported.txt`; details (the runner's stderr per test): `results.xml`, `cwltest.log`.",
        "",
    ]
    text = "\n".join(lines)
    (out_dir / "summary.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--command", default="")
    parser.add_argument("--batch-system", default="local")
    parser.add_argument("--seconds", type=int, default=None)
    parser.add_argument("--suite", default=None)
    parser.add_argument("--selected", default="", help="the ids given to cwltest -s, comma-separated")
    args = parser.parse_args(argv)
    if not (args.out_dir / "results.xml").is_file():
        print(f"no results.xml in {args.out_dir}: see {args.out_dir / 'cwltest.log'}")
        return 1
    print(write_report(args.out_dir, args.command, args.batch_system, args.seconds, args.suite,
                       [i for i in args.selected.split(",") if i]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
