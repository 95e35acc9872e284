"""The container-runtime seam (after BEE's container-runtime drivers). Plain values, never models.

A runtime turns a step's ``DockerRequirement`` (an :class:`ImageRequest`) and the job's paths and
environment (a :class:`ContainerJob`) into a :class:`Wrapping`: the shell lines that prepare the
image, the argv prefix that runs the command inside it, and the lines that clean up afterwards.
The job script renders them around the command (``workers/jobscript.py``). An empty wrapping
means "run on the host", exactly as a tool without a container.

The command line itself stays cwltool's, with host paths: runtimes must make those paths visible
at the same place inside the container (bind mounts), so that cwltool collects the outputs in the
run folder afterwards as for any other job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from workers.jobscript import ShellWord  # an argument in shell syntax ("$IMG"), written unquoted


class ContainerError(Exception):
    """The step's container cannot be run (image not found, unsupported field); says which."""


# A line break inside a long command, for readability of the job script.
CONTINUE = ShellWord("\\\n   ")


@dataclass(frozen=True)
class ImageRequest:
    """What a ``DockerRequirement`` asks for, as plain values.

    ``base_dir`` is the folder of the CWL document, against which relative paths resolve.
    """

    docker_pull: str | None = None
    docker_image_id: str | None = None
    docker_load: str | None = None
    docker_import: str | None = None
    docker_file: bool = False
    output_directory: str | None = None
    base_dir: str | None = None

    @classmethod
    def from_requirement(cls, requirement: Mapping, base_dir: str | None = None) -> ImageRequest:
        def text(key: str) -> str | None:
            value = requirement.get(key)
            if value is None:
                return None
            return str(value).strip() or None

        return cls(
            docker_pull=text("dockerPull"),
            docker_image_id=text("dockerImageId"),
            docker_load=text("dockerLoad"),
            docker_import=text("dockerImport"),
            docker_file=bool(requirement.get("dockerFile")),
            output_directory=text("dockerOutputDirectory"),
            base_dir=base_dir,
        )


@dataclass(frozen=True)
class ContainerJob:
    """The job's side of the container: where it runs, what it sees, with which environment.

    ``binds`` are host paths (directories or files) that must appear at the same path inside;
    ``mounts`` are ``(host path, path inside, is a directory)`` for what must appear elsewhere
    (``InitialWorkDirRequirement`` entries at absolute paths); ``environment`` is exactly the
    environment the command gets (CWL's), nothing inherited.
    """

    workdir: str
    environment: Mapping[str, str]
    binds: Sequence[str] = ()
    bind_files: Sequence[str] = ()
    mounts: Sequence[tuple[str, str, bool]] = ()


@dataclass(frozen=True)
class Wrapping:
    setup_lines: Sequence[str] = field(default_factory=tuple)
    prefix: Sequence[str] = field(default_factory=tuple)
    cleanup_lines: Sequence[str] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return bool(self.setup_lines or self.prefix or self.cleanup_lines)


class ContainerRuntime(ABC):
    name: str = ""

    @abstractmethod
    def wrap(self, image: ImageRequest, job: ContainerJob) -> Wrapping:
        """How the job script runs this job in ``image``; raises ContainerError if it cannot.

        Called on the worker before the job is submitted, so a missing image fails the step
        at once, with no batch job.
        """
