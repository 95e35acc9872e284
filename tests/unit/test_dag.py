"""The DAG drawn on the workflow page (workflows.dag): layered layout, nesting, edges."""

from dataclasses import dataclass

import pytest

from workflows import dag

pytestmark = pytest.mark.unit


@dataclass
class S:
    id: int
    name: str
    state: str = "WAITING"
    kind: str = "TOOL"
    parent_id: int | None = None


def _by_name(graph):
    return {n.name: n for n in graph.nodes}


def test_a_chain_is_laid_out_left_to_right_with_one_edge():
    graph = dag.layout([S(1, "grep", "COMPLETED"), S(2, "wc", "RUNNING")], [(1, 2)])
    nodes = _by_name(graph)
    assert nodes["grep"].x < nodes["wc"].x
    assert nodes["grep"].y == nodes["wc"].y
    assert len(graph.edges) == 1 and graph.edges[0].state == "COMPLETED"
    assert graph.width >= nodes["wc"].x + nodes["wc"].w
    assert graph.edges[0].d.startswith(f"M{nodes['grep'].x + nodes['grep'].w:.1f},")


def test_columns_are_topological_depth_and_siblings_stack():
    steps = [S(1, "a"), S(2, "b"), S(3, "c"), S(4, "d")]
    graph = dag.layout(steps, [(1, 2), (1, 3), (2, 4), (3, 4)])
    n = _by_name(graph)
    assert n["a"].x < n["b"].x == n["c"].x < n["d"].x
    assert n["b"].y != n["c"].y
    assert len(graph.edges) == 4


def test_a_step_with_no_edges_starts_in_the_first_column():
    graph = dag.layout([S(1, "a"), S(2, "b"), S(3, "lonely")], [(1, 2)])
    n = _by_name(graph)
    assert n["lonely"].x == n["a"].x


def test_nested_children_are_drawn_inside_their_parent():
    steps = [
        S(1, "outer", "RUNNING", kind="WORKFLOW"),
        S(2, "outer/grep", "COMPLETED", parent_id=1),
        S(3, "outer/wc", "RUNNING", parent_id=1),
        S(4, "after"),
    ]
    graph = dag.layout(steps, [(2, 3), (1, 4)])
    n = _by_name(graph)
    outer = n["outer"]
    assert outer.compound and outer.label == "outer"
    assert n["outer/grep"].label == "grep"
    for child in ("outer/grep", "outer/wc"):
        c = n[child]
        assert outer.x < c.x and c.x + c.w < outer.x + outer.w
        assert outer.y < c.y and c.y + c.h < outer.y + outer.h
    assert n["outer/grep"].x < n["outer/wc"].x
    assert n["after"].x > outer.x + outer.w
    assert [x.name for x in graph.nodes].index("outer") < [x.name for x in graph.nodes].index("outer/grep")
    assert len(graph.edges) == 2


def test_a_big_scatter_shows_some_elements_and_counts_the_rest():
    steps = [S(1, "square", "RUNNING", kind="SCATTER")]
    steps += [S(10 + i, f"square[{i}]", "COMPLETED" if i < 30 else "RUNNING", parent_id=1) for i in range(40)]
    graph = dag.layout(steps, [])
    square = _by_name(graph)["square"]
    assert len(square.children) == dag.MAX_CHILDREN
    summary = square.children[-1]
    assert summary.summary and summary.label == f"+ {40 - dag.MAX_CHILDREN + 1} more"
    assert "19 completed" in summary.name and "10 running" in summary.name
    assert _by_name(graph)["square[0]"].label == "[0]"


def test_long_names_are_shortened_for_the_box():
    graph = dag.layout([S(1, "a_very_long_step_name_that_does_not_fit")], [])
    label = graph.nodes[0].label
    assert len(label) == dag.LABEL_CHARS and label.endswith("…")


def test_nested_levels_stay_inside_each_other_whatever_their_order():
    steps = [
        S(1, "loud", "SKIPPED"),
        S(2, "per", "COMPLETED", kind="SCATTER"),
        S(3, "per[0]", "COMPLETED", kind="WORKFLOW", parent_id=2),
        S(4, "per[1]", "COMPLETED", kind="WORKFLOW", parent_id=2),
        S(5, "per[0]/grep", parent_id=3),
        S(6, "per[0]/wc", parent_id=3),
        S(7, "per[1]/grep", parent_id=4),
        S(8, "per[1]/wc", parent_id=4),
    ]
    graph = dag.layout(steps, [(5, 6), (7, 8)])
    n = _by_name(graph)

    def inside(a, b):
        return b.x < a.x and a.x + a.w < b.x + b.w and b.y < a.y and a.y + a.h < b.y + b.h

    def apart(a, b):
        return a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y

    for i in (0, 1):
        assert inside(n[f"per[{i}]"], n["per"])
        assert inside(n[f"per[{i}]/grep"], n[f"per[{i}]"])
        assert inside(n[f"per[{i}]/wc"], n[f"per[{i}]"])
    assert apart(n["per[0]"], n["per[1]"]) and apart(n["loud"], n["per"])
    assert all(0 <= x.x and x.x + x.w <= graph.width and x.y + x.h <= graph.height for x in graph.nodes)
