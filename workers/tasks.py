"""Celery tasks: thin wrappers that take ids and call the engines in ``workers/``.

Reliability comes from the app settings (acks late, reject on worker lost, prefetch 1) and from
the engines being idempotent, so a task that runs twice does no harm.
"""

from celery import shared_task

from workers import scheduler


@shared_task(name="workers.advance")
def advance(workflow_id: str) -> None:
    scheduler.advance(workflow_id)


@shared_task(name="workers.finalize_run")
def finalize_run(run_id: int, exit_code: int | None = None) -> None:
    scheduler.finalize_run(run_id, reported_exit_code=exit_code)


@shared_task(name="workers.reconcile")
def reconcile() -> dict:
    return scheduler.reconcile()


@shared_task(name="workers.cancel_jobs")
def cancel_jobs(workflow_id: str) -> None:
    scheduler.cancel_jobs(workflow_id)


# A just-cancelled workflow's jobs are still being closed: wait this many times this long.
ARCHIVE_WAIT_RETRIES, ARCHIVE_WAIT_SECONDS = 12, 5


@shared_task(
    name="workers.archive_workflow",
    bind=True,
    max_retries=ARCHIVE_WAIT_RETRIES + 3,
    autoretry_for=(OSError,),
    retry_backoff=10,
    time_limit=3600,
    soft_time_limit=3540,
)
def archive_workflow(self, workflow_id: str) -> str | None:
    """Package an ended workflow (``workers/archive.py``); idempotent, never blocks the scheduler."""
    from workflows import services

    waiting = services.workflow_archive_waiting(workflow_id=workflow_id)
    if waiting and self.request.retries < ARCHIVE_WAIT_RETRIES:
        raise self.retry(countdown=ARCHIVE_WAIT_SECONDS)
    archive = services.workflow_archive(workflow_id=workflow_id)
    return archive.sha256 if archive else None


@shared_task(name="workers.project_graph")
def project_graph() -> dict:
    """Drain the graph outbox into the configured projection (Neo4j); idempotent."""
    from workflows.graph.outbox import drain

    return drain()
