"""``GET /healthz``: each component ok/down with a reason; 200 only if all required are ok."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import JsonResponse


def _database() -> tuple[bool, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return True, f"{connection.vendor} {connection.settings_dict.get('NAME')}"


def _broker() -> tuple[bool, str]:
    from kombu import Connection

    with Connection(
        settings.CELERY_BROKER_URL,
        transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        connect_timeout=3,
    ) as conn:
        conn.ensure_connection(max_retries=1, timeout=3)
        return True, conn.as_uri()


def _batch_system() -> tuple[bool, str]:
    from workers.batch import get_batch_system

    return True, get_batch_system().version()


def _graph_store() -> tuple[bool, str]:
    from workflows.graph import get_graph_store

    return True, get_graph_store().ping()  # for neo4j a Bolt round-trip


CHECKS = {
    "database": _database,
    "broker": _broker,
    "batch_system": _batch_system,
    "graph_store": _graph_store,
}


def component_health() -> dict[str, dict]:
    report = {}
    for name, check in CHECKS.items():
        try:
            ok, detail = check()
        except Exception as exc:  # a health check reports every failure, whatever its type
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        report[name] = {"status": "ok" if ok else "down", "detail": detail}
    return report


def healthz(request):
    report = component_health()
    healthy = all(c["status"] == "ok" for c in report.values())
    return JsonResponse(
        {"status": "ok" if healthy else "down", "components": report}, status=200 if healthy else 503
    )
