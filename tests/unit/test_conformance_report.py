"""scripts/conformance_report.py: the per-tag table must count every failure cwltest saw."""

import importlib.util

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit

SCRIPT = REPO / "scripts" / "conformance_report.py"
spec = importlib.util.spec_from_file_location("conformance_report", SCRIPT)
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)

XML = """<?xml version="1.0" ?>
<testsuites><testsuite name="conformance_tests">
<testcase name="a" class="required, command_line_tool" file="first_test"/>
<testcase name="b" class="workflow" file="second_test"><failure>bad output</failure></testcase>
<testcase name="c" class="docker" file="third_test"><skipped>unsupported</skipped></testcase>
<testcase name="d" class="required, workflow" file="should_fail_test"/>
</testsuite></testsuites>
"""
LOG = """Test [1/4] first_test: one

Test [4/4] should_fail_test: a should_fail test

Test [2/4] second_test: two

Test 4 failed: apiary-cwl-runner --quiet x.cwl y.json
a should_fail test
Returned zero but it should be non-zero
Test 2 failed: apiary-cwl-runner --quiet z.cwl
"""


def test_failures_missing_from_the_xml_are_taken_from_the_log(tmp_path):
    (tmp_path / "results.xml").write_text(XML)
    (tmp_path / "cwltest.log").write_text(LOG)
    text = report.write_report(tmp_path, "cmd", "local", 1, None)
    assert (tmp_path / "failing.txt").read_text().split() == ["second_test", "should_fail_test"]
    assert (tmp_path / "unsupported.txt").read_text().split() == ["third_test"]
    assert "| **required** | 2 | 1 | 1 | 0 |" in text
    assert "1 passed, 2 failed, 1 unsupported of 4 tests" in text
