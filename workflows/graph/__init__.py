"""Graph stores (DESIGN.md): the contract in ``base``, the SQL tables in ``sql``, Neo4j in ``neo4j``.

``get_graph_store()`` returns the store named by ``APIARY_GRAPH_STORE`` (``sql`` by default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:  # kept lazy: the CLI imports workflows.graph.formats without Django models
    from workflows.graph.base import GraphStore


def get_graph_store(name: str | None = None) -> GraphStore:
    name = name or settings.APIARY_GRAPH_STORE
    if name == "neo4j":
        from workflows.graph.neo4j import Neo4jGraphStore

        return Neo4jGraphStore()
    from workflows.graph.sql import SqlGraphStore

    return SqlGraphStore()
