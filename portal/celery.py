"""The Celery app. Workers run the engines in ``workers/``; beat only reconciles.

Reliability settings follow DESIGN.md principle 3: tasks are acknowledged late and rejected
when the worker dies, so a task interrupted by a crash runs again; every task re-reads state and
is idempotent.
"""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("apiary")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_process_init.connect
def _warm_up_cwl(**kwargs) -> None:
    from workflows.cwl import warm_up

    warm_up()
