"""Where a workflow's files live on the shared filesystem.

``<APIARY_RUNS_DIR>/<workflow id>/``
    ``src/``                  the documents and input files as submitted
    ``steps/<step>/<n>/``     one folder per run attempt: ``job.sh``, ``job.out``, ``job.err``,
                              ``exit_code``, ``outdir/`` (the tool's working/output directory),
                              ``tmp/``, ``stage/`` (staged inputs)
"""

from pathlib import Path

from django.conf import settings


def workflow_dir(workflow_id) -> Path:
    return Path(settings.APIARY_RUNS_DIR) / str(workflow_id)


def source_dir(workflow_id) -> Path:
    return workflow_dir(workflow_id) / "src"


def safe_step_folder(step_name: str) -> str:
    """A folder name for a step: ``outer/inner`` -> ``outer__inner``, ``square[3]`` -> ``square@3``.

    No glob metacharacters may appear in run paths: cwltool globs outputs inside them.
    """
    return step_name.replace("/", "__").replace("[", "@").replace("]", "")


def step_dir(workflow_id, step_name: str) -> Path:
    return workflow_dir(workflow_id) / "steps" / safe_step_folder(step_name)


def run_dir(run) -> Path:
    return step_dir(run.step.workflow_id, run.step.name) / str(run.attempt)
