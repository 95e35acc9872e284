"""The graph outbox: projection events written in the transaction of the change they describe.

``graph_changed`` adds a ``GraphOutbox`` row (only when the configured store is a projection, i.e.
Neo4j) and enqueues ``workers.project_graph`` on commit. ``drain`` projects every workflow with
unprocessed rows (a full, idempotent ``MERGE`` of its current graph) and marks those rows
processed; if the store is unreachable it logs, keeps the rows and returns, so the periodic
reconcile catches up later. Scheduling never waits on it.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

log = logging.getLogger(__name__)


def projection_enabled() -> bool:
    return settings.APIARY_GRAPH_STORE != "sql"


def graph_changed(workflow_id, event: str) -> None:
    if not projection_enabled():
        return
    from workflows.models import GraphOutbox

    GraphOutbox.objects.create(workflow_id=workflow_id, event=event[:40])
    connection = transaction.get_connection()
    if any(func is _enqueue_projection for _, func, _ in connection.run_on_commit):
        return  # one projection task per transaction is enough: it drains every row
    transaction.on_commit(_enqueue_projection, robust=True)


def _enqueue_projection() -> None:
    from workers.tasks import project_graph

    project_graph.delay()


def kick() -> int:
    """Enqueue a drain if rows wait (the reconcile's catch-up); returns how many wait."""
    if not projection_enabled():
        return 0
    from workflows.models import GraphOutbox

    waiting = GraphOutbox.objects.filter(processed_at__isnull=True).count()
    if waiting:
        _enqueue_projection()
    return waiting


def drain(limit: int = 200) -> dict:
    """Project the workflows with unprocessed outbox rows; returns counts."""
    from workflows.graph import get_graph_store
    from workflows.models import GraphOutbox

    summary = {"workflows": 0, "rows": 0, "error": ""}
    if not projection_enabled():
        return summary
    pending = (
        GraphOutbox.objects.filter(processed_at__isnull=True)
        .values("workflow_id")
        .annotate(last=Max("id"))
        .order_by("last")[:limit]
    )
    store = get_graph_store()
    for row in list(pending):
        try:
            with transaction.atomic():
                _lock_projection(row["workflow_id"])
                store.load_workflow(row["workflow_id"])
                summary["rows"] += GraphOutbox.objects.filter(
                    workflow_id=row["workflow_id"], id__lte=row["last"], processed_at__isnull=True
                ).update(processed_at=timezone.now())
        except Exception as exc:  # Neo4j away: keep the rows, the next drain retries
            summary["error"] = f"{type(exc).__name__}: {exc}"
            log.warning("graph projection of %s deferred: %s", row["workflow_id"], summary["error"])
            break
        summary["workflows"] += 1
    return summary


# pg_advisory_xact_lock(class, key): the class keeps Apiary's locks apart from anyone else's.
PROJECTION_LOCK_CLASS = 0x41504752  # "APGR"


def _lock_projection(workflow_id) -> None:
    """One projection of a workflow at a time (until the transaction ends).

    Two drains (the task enqueued on commit, the reconcile's catch-up, several workers) may
    pick the same workflow; Neo4j's ``MERGE`` is not atomic without a uniqueness constraint,
    so two at once can create a task twice. The second waits here, then projects the newer
    snapshot. A PostgreSQL advisory lock: scheduling, which locks workflow rows, never waits
    on it. Other databases (SQLite in development) serialise writers anyway.
    """
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [PROJECTION_LOCK_CLASS, str(workflow_id)]
            )
