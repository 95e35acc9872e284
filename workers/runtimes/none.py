"""No container: ``DockerRequirement`` is ignored and the command runs on the host.

Selected with ``APIARY_CONTAINER_RUNTIME=none``, for sites whose tools are installed on the
compute nodes. Like ``cwltool --no-container``, except that a ``DockerRequirement`` under
``requirements`` (not only ``hints``) is ignored too rather than refused: the site has decided.
"""

from __future__ import annotations

from workers.runtimes.base import ContainerJob, ContainerRuntime, ImageRequest, Wrapping


class NoContainerRuntime(ContainerRuntime):
    name = "none"

    def wrap(self, image: ImageRequest, job: ContainerJob) -> Wrapping:
        return Wrapping()
