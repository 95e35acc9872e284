"""A workflow's DAG laid out for drawing as SVG on the workflow page (no JavaScript needed).

Layered layout, left to right: a step's column is its depth (the longest chain of upstream
steps before it); within a column steps are ordered by the mean position of their upstream
steps, which keeps chains straight. A nested workflow or a scatter is drawn as a box holding its
children, laid out the same way inside it; a scatter with many elements shows the first
:data:`MAX_CHILDREN` and one summary node counting the rest by state.

:func:`layout` takes plain step values (anything with ``id``, ``parent_id``, ``name``,
``state``, ``kind``) and the sibling edges as ``(upstream id, downstream id)`` pairs, and gives
absolute boxes and edge paths in pixels.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

NODE_W, NODE_H = 156, 46
GAP_X, GAP_Y = 44, 14
PAD, HEADER = 10, 44
MARGIN = 8
MAX_CHILDREN = 12
LABEL_CHARS = 20


@dataclass
class Node:
    id: object
    name: str  # the full step name
    label: str  # the name among its siblings, shortened to fit
    state: str
    kind: str
    compound: bool = False
    summary: bool = False  # stands for elements not drawn
    x: float = 0
    y: float = 0
    w: float = NODE_W
    h: float = NODE_H
    children: list[Node] = field(default_factory=list)
    edges: list[tuple[object, object]] = field(default_factory=list)

    # Where the template writes the name and the state (SVG text baselines).
    @property
    def label_x(self) -> float:
        return self.x + 10

    @property
    def label_y(self) -> float:
        return self.y + 20

    @property
    def state_x(self) -> float:
        return self.x + 10

    @property
    def state_y(self) -> float:
        return self.y + (35 if self.compound else 37)


@dataclass
class Edge:
    d: str  # the SVG path
    state: str  # the upstream step's state


@dataclass
class Graph:
    width: float
    height: float
    nodes: list[Node]  # every node, parents before their children (drawing order)
    edges: list[Edge]


def _label(name: str, parent_name: str | None) -> str:
    label = name[len(parent_name) :].lstrip("/") if parent_name and name.startswith(parent_name) else name
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _depths(ids: list, ups: dict) -> dict:
    depth: dict = {}

    def visit(node, trail=()):
        if node in depth:
            return depth[node]
        if node in trail:  # a cycle cannot be stored, but never loop on one
            return 0
        parents = [u for u in ups.get(node, ()) if u in ids_set]
        depth[node] = 1 + max((visit(u, (*trail, node)) for u in parents), default=-1)
        return depth[node]

    ids_set = set(ids)
    for node in ids:
        visit(node)
    return depth


def _arrange(nodes: list[Node], edges: list[tuple]) -> tuple[float, float]:
    """Place sibling ``nodes`` (sizes known) relative to (0, 0); returns the group's size."""
    if not nodes:
        return 0, 0
    ups: dict = defaultdict(list)
    for up, down in edges:
        ups[down].append(up)
    depth = _depths([n.id for n in nodes], ups)
    columns: dict[int, list[Node]] = defaultdict(list)
    for node in nodes:
        columns[depth[node.id]].append(node)
    rank: dict = {}
    x = 0.0
    heights = []
    for col in sorted(columns):
        members = columns[col]
        if col:
            members.sort(
                key=lambda n: (
                    sum(rank.get(u, 0) for u in ups[n.id]) / max(1, len(ups[n.id])),
                    str(n.name),
                )
            )
        width = max(n.w for n in members)
        y = 0.0
        for i, node in enumerate(members):
            _shift(node, x + (width - node.w) / 2 - node.x, y - node.y)  # children move along
            rank[node.id] = i
            y += node.h + GAP_Y
        heights.append(y - GAP_Y)
        x += width + GAP_X
    total_h = max(heights)
    for col, h in zip(sorted(columns), heights, strict=True):
        for node in columns[col]:
            _shift(node, 0, (total_h - h) / 2)
    return x - GAP_X, total_h


def _build(node: Node, children_of: dict, edges_of: dict) -> None:
    """Size ``node`` (recursively) and place its children relative to it."""
    kids = children_of.get(node.id, [])
    if not kids:
        return
    node.compound = True
    shown = kids
    if len(kids) > MAX_CHILDREN:
        shown = kids[: MAX_CHILDREN - 1]
        rest = Counter(k.state for k in kids[MAX_CHILDREN - 1 :])
        text = ", ".join(f"{n} {s.lower()}" for s, n in rest.most_common())
        shown.append(
            Node(
                id=("more", node.id),
                name=f"{len(kids) - len(shown)} more: {text}",
                label=f"+ {len(kids) - len(shown)} more",
                state=rest.most_common(1)[0][0],
                kind="SUMMARY",
                summary=True,
            )
        )
    for kid in shown:
        _build(kid, children_of, edges_of)
    ids = {k.id for k in shown}
    edges = [(u, d) for u, d in edges_of.get(node.id, []) if u in ids and d in ids]
    inner_w, inner_h = _arrange(shown, edges)
    node.children, node.edges = shown, edges
    node.w = max(NODE_W, inner_w + 2 * PAD)
    node.h = HEADER + inner_h + PAD
    offset_x = (node.w - inner_w) / 2
    for kid in shown:
        _shift(kid, offset_x, HEADER)


def _shift(node: Node, dx: float, dy: float) -> None:
    node.x += dx
    node.y += dy
    for kid in node.children:
        _shift(kid, dx, dy)


def _edge_path(a: Node, b: Node) -> str:
    x1, y1 = a.x + a.w, a.y + a.h / 2
    x2, y2 = b.x - 2, b.y + b.h / 2
    mid = (x1 + x2) / 2
    return f"M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"


def layout(steps, edges) -> Graph:
    """Lay out ``steps`` (see module doc) with sibling ``edges`` ``(upstream_id, downstream_id)``."""
    names = {s.id: s.name for s in steps}
    nodes = {
        s.id: Node(
            id=s.id,
            name=s.name,
            label=_label(s.name, names.get(s.parent_id)),
            state=s.state,
            kind=s.kind,
        )
        for s in steps
    }
    parent_of = {s.id: s.parent_id for s in steps}
    children_of: dict = defaultdict(list)
    for s in steps:
        children_of[s.parent_id if s.parent_id in nodes else None].append(nodes[s.id])
    edges_of: dict = defaultdict(list)
    for up, down in edges:
        if up in nodes and down in nodes and parent_of[up] == parent_of[down]:
            scope = parent_of[up] if parent_of[up] in nodes else None
            edges_of[scope].append((up, down))
    top = children_of.get(None, [])
    for node in top:
        _build(node, children_of, edges_of)
    top_edges = edges_of.get(None, [])
    width, height = _arrange(top, top_edges)
    for node in top:
        _shift(node, MARGIN, MARGIN)

    flat: list[Node] = []
    paths: list[Edge] = []

    def collect(group: list[Node], group_edges: list[tuple]) -> None:
        by_id = {n.id: n for n in group}
        for up, down in group_edges:
            paths.append(Edge(_edge_path(by_id[up], by_id[down]), by_id[up].state))
        for node in group:
            flat.append(node)
            collect(node.children, node.edges)

    collect(top, top_edges)
    return Graph(width=width + 2 * MARGIN, height=height + 2 * MARGIN, nodes=flat, edges=paths)
