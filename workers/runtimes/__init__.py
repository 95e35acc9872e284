"""Container runtimes: how a step with a ``DockerRequirement`` runs. Plain values, never models.

``get_container_runtime()`` returns the configured one (``APIARY_CONTAINER_RUNTIME``:
``charliecloud``, the default, or ``none``).
"""

from django.conf import settings

from workers.runtimes.base import (
    ContainerError,
    ContainerJob,
    ContainerRuntime,
    ImageRequest,
    ShellWord,
    Wrapping,
)


def get_container_runtime(name: str | None = None) -> ContainerRuntime:
    name = name or settings.APIARY_CONTAINER_RUNTIME
    if name == "charliecloud":
        from workers.runtimes.charliecloud import CharliecloudRuntime

        return CharliecloudRuntime(settings.APIARY_IMAGE_STORE)
    if name == "none":
        from workers.runtimes.none import NoContainerRuntime

        return NoContainerRuntime()
    raise ContainerError(f"Unknown container runtime {name!r}")


__all__ = [
    "ContainerError",
    "ContainerJob",
    "ContainerRuntime",
    "ImageRequest",
    "ShellWord",
    "Wrapping",
    "get_container_runtime",
]
