"""The graph export as GraphML and graphviz dot. Pure functions (no Django): the CLI uses them too."""

from __future__ import annotations

import json
from xml.sax.saxutils import escape, quoteattr


def to_graphml(data: dict) -> str:
    """The export as GraphML (nodes carry kind and state, the graph the workflow's id and name)."""
    wf = data["workflow"]
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">',
        '  <key id="kind" for="node" attr.name="kind" attr.type="string"/>',
        '  <key id="state" for="node" attr.name="state" attr.type="string"/>',
        '  <key id="name" for="graph" attr.name="name" attr.type="string"/>',
        '  <key id="wstate" for="graph" attr.name="state" attr.type="string"/>',
        f'  <graph id={quoteattr(str(wf["id"]))} edgedefault="directed">',
        f'    <data key="name">{escape(wf.get("name") or "")}</data>',
        f'    <data key="wstate">{escape(wf.get("state") or "")}</data>',
    ]
    for node in data["nodes"]:
        lines += [
            f"    <node id={quoteattr(node['id'])}>",
            f'      <data key="kind">{escape(node.get("kind") or "")}</data>',
            f'      <data key="state">{escape(node.get("state") or "")}</data>',
            "    </node>",
        ]
    for i, edge in enumerate(data["edges"]):
        lines.append(
            f'    <edge id="e{i}" source={quoteattr(edge["source"])} target={quoteattr(edge["target"])}/>'
        )
    lines += ["  </graph>", "</graphml>", ""]
    return "\n".join(lines)


STATE_COLOURS = {
    "COMPLETED": "palegreen",
    "RUNNING": "lightskyblue",
    "FAILED": "salmon",
    "DEP_FAIL": "lightpink",
    "CANCELLED": "lightgrey",
}


def to_dot(data: dict) -> str:
    """The export in graphviz's dot language (for ``dot -Tpng``)."""
    lines = [
        f"digraph {json.dumps(str(data['workflow']['id']))} {{",
        "  rankdir=LR; node [shape=box, style=filled];",
    ]
    for node in data["nodes"]:
        colour = STATE_COLOURS.get(node.get("state") or "", "white")
        label = json.dumps(f"{node['id']}\n{node.get('state') or ''}")  # dot reads \n as a line break
        lines.append(f"  {json.dumps(node['id'])} [label={label}, fillcolor={colour}];")
    for edge in data["edges"]:
        lines.append(f"  {json.dumps(edge['source'])} -> {json.dumps(edge['target'])};")
    lines.append("}")
    return "\n".join(lines) + "\n"
