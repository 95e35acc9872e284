"""Batch systems: where a step's job script runs. They take plain values, never domain models.

``get_batch_system()`` returns the configured one (``APIARY_BATCH_SYSTEM``: ``local`` or
``slurm``).
"""

from django.conf import settings

from workers.batch.base import BatchError, BatchSystem, JobStatus


def get_batch_system(name: str | None = None) -> BatchSystem:
    name = name or settings.APIARY_BATCH_SYSTEM
    if name == "slurm":
        from workers.batch.slurm import SlurmBatchSystem

        return SlurmBatchSystem()
    if name == "local":
        from workers.batch.local import LocalBatchSystem

        return LocalBatchSystem(settings.VAR_DIR / "local-batch")
    raise BatchError(f"Unknown batch system {name!r}")


__all__ = ["BatchError", "BatchSystem", "JobStatus", "get_batch_system"]
