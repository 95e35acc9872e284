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
