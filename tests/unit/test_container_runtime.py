"""Containers: DockerRequirement steps wrapped by the Charliecloud runtime (no services needed)."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from workers import cwl_job
from workers.jobscript import render
from workers.runtimes import ContainerError, ImageRequest
from workers.runtimes.charliecloud import CharliecloudRuntime, store_candidates, store_name
from workflows import cwl

pytestmark = pytest.mark.unit
FIXTURES = REPO / "tests" / "fixtures" / "container"


@pytest.fixture
def store(tmp_path, settings):
    """An image store holding a (fake: only its existence is checked) apiary-busybox tarball."""
    store = tmp_path / "images"
    store.mkdir()
    (store / "apiary-busybox.tar.gz").write_bytes(b"")
    settings.APIARY_IMAGE_STORE = store
    settings.APIARY_RUNS_DIR = tmp_path / "runs"
    settings.APIARY_CONTAINER_RUNTIME = "charliecloud"
    return store


def _tool(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return cwl.load_process(path)


def _script(tool, job_order, run_dir):
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = cwl_job.prepare_command_job(tool, job_order, run_dir)
    spec.job_name, spec.title = "apiary-7", "test"
    return spec, render(spec)


def _greeting():
    return {"greeting": {"class": "File", "location": (FIXTURES / "greeting.txt").as_uri()}}


ECHO = """cwlVersion: v1.2
class: CommandLineTool
{requirements}inputs: []
baseCommand: [echo, hello]
stdout: out.txt
outputs:
  out: stdout
"""
DOCKER = "requirements:\n  DockerRequirement: {dockerPull: apiary-busybox}\n"


def test_docker_step_script_prepares_image_runs_command_in_it_and_cleans_up(tmp_path, store, settings):
    tool = cwl.load_process(FIXTURES / "image-name.cwl")
    run_dir = settings.APIARY_RUNS_DIR / "wf" / "steps" / "inside" / "1"
    spec, text = _script(tool, _greeting(), run_dir)

    tarball = str(store / "apiary-busybox.tar.gz")
    runs = str(settings.APIARY_RUNS_DIR.resolve())
    greeting = str(FIXTURES / "greeting.txt")  # an input outside the runs folder: bound alone
    expected_in_order = [
        "# Container (Charliecloud): image apiary-busybox (dockerPull, from the site image store).",
        "trap 'rm -rf \"$IMG_DIR\"' EXIT",
        f'ch-convert -i tar -o dir {tarball} "$IMG" || exit 71',
        f'mkdir -p "$IMG"/ch "$IMG"{runs} && touch "$IMG/ch/environment" || exit 71',
        f'touch "$IMG"{greeting} || exit 71',
        'if [ -f "$IMG/ch/entrypoint" ]; then mapfile -t ENTRYPOINT <"$IMG/ch/entrypoint"; fi',
        f'ch-run --private-tmp "$IMG" -b {runs}:{runs} -b {greeting}:{greeting} -c {spec.workdir}',
        "'--unset-env=*'",
        f"--set-env=HOME={spec.workdir}",
        f'-- "${{ENTRYPOINT[@]}}" cat /etc/apiary-image {run_dir}/stage/',
        f"> {spec.workdir}/image.txt",
        "rc=$?",
        '\nrm -rf "$IMG_DIR"\n',  # the cleanup line, after the command
        'echo "$rc" > "$RUN_DIR/exit_code.tmp"',
    ]
    positions = [text.find(piece) for piece in expected_in_order]
    assert -1 not in positions, [p for p, i in zip(expected_in_order, positions, strict=True) if i < 0]
    assert positions == sorted(positions)
    assert "env -i" not in text
    # The worker's PATH means nothing inside the image: the image's (or Docker's default) applies.
    assert f"--set-env=PATH={os.environ['PATH']}" not in text
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0


def test_container_environment_keeps_a_path_the_tool_sets(tmp_path, store):
    tool = _tool(
        tmp_path,
        "env.cwl",
        ECHO.format(
            requirements=DOCKER + "  EnvVarRequirement: {envDef: {PATH: /opt/tool/bin:/bin, LANG: C}}\n"
        ),
    )
    _, text = _script(tool, {}, tmp_path / "runs" / "env" / "1")
    assert "--set-env=PATH=/opt/tool/bin:/bin" in text
    assert "--set-env=LANG=C" in text


def test_docker_requirement_as_hint_is_wrapped_too(tmp_path, store):
    tool = _tool(tmp_path, "hint.cwl", ECHO.format(requirements=DOCKER.replace("requirements", "hints")))
    _, text = _script(tool, {}, tmp_path / "runs" / "hint" / "1")
    assert 'ch-run --private-tmp "$IMG"' in text


@pytest.mark.parametrize(
    ("reference", "name"),
    [
        ("debian:stable-slim", "debian+stable-slim"),
        ("bash:4.4", "bash+4.4"),
        ("apiary-busybox", "apiary-busybox"),
        ("quay.io/org/tool:1.0", "quay.io%org%tool+1.0"),
    ],
)
def test_docker_pull_names_map_to_store_names(reference, name):
    assert store_name(reference) == name


def test_store_lookup_tries_latest_and_the_docker_hub_prefixes():
    assert store_candidates("alpine") == ["alpine", "alpine+latest"]
    assert store_candidates("alpine:latest") == ["alpine+latest", "alpine"]
    assert "debian+12" in store_candidates("docker.io/library/debian:12")


def test_store_finds_tarballs_and_directories(tmp_path):
    (tmp_path / "debian+stable-slim.tar.gz").write_bytes(b"")
    (tmp_path / "tool+1.0").mkdir()
    runtime = CharliecloudRuntime(tmp_path)
    found = runtime.locate(ImageRequest(docker_pull="debian:stable-slim"))
    assert (found.kind, found.path) == ("tar", str(tmp_path / "debian+stable-slim.tar.gz"))
    found = runtime.locate(ImageRequest(docker_pull="tool:1.0"))
    assert (found.kind, found.path) == ("dir", str(tmp_path / "tool+1.0"))


def test_image_names_cannot_leave_the_store(tmp_path):
    with pytest.raises(ContainerError, match="not a valid image reference"):
        CharliecloudRuntime(tmp_path).locate(ImageRequest(docker_pull=".."))


def test_missing_image_fails_the_job_build_naming_image_and_store(tmp_path, store):
    tool = cwl.load_process(FIXTURES / "no-such-image.cwl")
    run_dir = tmp_path / "runs" / "ghost" / "1"
    run_dir.mkdir(parents=True)
    with pytest.raises(cwl_job.JobBuildError) as err:
        cwl_job.prepare_command_job(tool, {}, run_dir)
    assert "no-such-image:1.0" in str(err.value)
    assert str(store) in str(err.value)
    assert "no-such-image+1.0.tar.gz" in str(err.value)


def test_docker_image_id_path_is_used_the_bee_way(tmp_path, store):
    tarball = tmp_path / "toss-tiny.tar"
    tarball.write_bytes(b"")
    tool = _tool(
        tmp_path,
        "bee.cwl",
        ECHO.format(requirements=f"hints:\n  DockerRequirement: {{dockerImageId: {tarball}}}\n"),
    )
    _, text = _script(tool, {}, tmp_path / "runs" / "bee" / "1")
    assert f'ch-convert -i tar -o dir {tarball} "$IMG"' in text


def test_directory_image_is_copied_not_modified(tmp_path, store):
    (store / "tool+2").mkdir()
    tool = _tool(tmp_path, "dir.cwl", ECHO.format(requirements=DOCKER.replace("apiary-busybox", "tool:2")))
    _, text = _script(tool, {}, tmp_path / "runs" / "dir" / "1")
    assert f'mkdir "$IMG" && cp -a {store}/tool+2/. "$IMG"/' in text


def test_docker_output_directory_binds_the_outdir_there_and_starts_in_it(tmp_path, store):
    requirement = (
        "requirements:\n  DockerRequirement: {dockerPull: apiary-busybox, dockerOutputDirectory: /out}\n"
    )
    tool = _tool(tmp_path, "outdir.cwl", ECHO.format(requirements=requirement))
    spec, text = _script(tool, {}, tmp_path / "runs" / "o")
    assert '"$IMG"/out && touch "$IMG/ch/environment"' in text  # the mount point, made in the copy
    assert f"-b {spec.workdir}:/out -c /out" in text


@pytest.mark.parametrize("requested", ["relative/out", "/", "/a:b"])
def test_unusable_docker_output_directory_is_refused_with_the_reason(tmp_path, store, requested):
    requirement = (
        "requirements:\n  DockerRequirement:\n    dockerPull: apiary-busybox\n"
        f"    dockerOutputDirectory: '{requested}'\n"
    )
    tool = _tool(tmp_path, "outdir.cwl", ECHO.format(requirements=requirement))
    (tmp_path / "runs" / "o").mkdir(parents=True)
    with pytest.raises(cwl_job.JobBuildError, match="dockerOutputDirectory .* must be an absolute path"):
        cwl_job.prepare_command_job(tool, {}, tmp_path / "runs" / "o")


def test_input_path_with_a_colon_is_bound_through_its_folder(tmp_path, store):
    data = tmp_path / "data"
    data.mkdir()
    (data / "A:B.txt").write_text("x\n")
    tool = _tool(
        tmp_path,
        "colon.cwl",
        "cwlVersion: v1.2\nclass: CommandLineTool\n"
        + DOCKER
        + "inputs:\n  f: {type: File, inputBinding: {}}\nbaseCommand: cat\noutputs: []\n",
    )
    job = {"f": {"class": "File", "location": (data / "A:B.txt").as_uri()}}
    _, text = _script(tool, job, tmp_path / "runs" / "c" / "1")
    assert f"-b {data}:{data} " in text
    assert "A:B.txt:" not in text
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0


def test_absolute_initial_workdir_entries_are_staged_in_the_run_folder_and_mounted(tmp_path, store):
    target = tmp_path / "outside" / "evil.txt"
    requirement = DOCKER + (
        f"  InitialWorkDirRequirement:\n    listing:\n      - {{entryname: {target}, entry: x}}\n"
    )
    tool = _tool(tmp_path, "iwd.cwl", ECHO.format(requirements=requirement))
    run_dir = tmp_path / "runs" / "i"
    _, text = _script(tool, {}, run_dir)
    assert not target.exists()  # never written on the host at that path
    staged = run_dir.resolve() / "mounts" / str(target).lstrip("/")
    assert staged.read_text() == "x"
    assert f'touch "$IMG"{target} || exit 71' in text
    assert f"-b {staged}:{target}" in text


def test_absolute_initial_workdir_entries_without_a_container_are_refused(tmp_path, store, settings):
    target = tmp_path / "outside" / "evil.txt"
    requirement = DOCKER + (
        f"  InitialWorkDirRequirement:\n    listing:\n      - {{entryname: {target}, entry: x}}\n"
    )
    tool = _tool(tmp_path, "iwd.cwl", ECHO.format(requirements=requirement))
    (tmp_path / "runs" / "i").mkdir(parents=True)
    settings.APIARY_CONTAINER_RUNTIME = "none"
    with pytest.raises(cwl_job.JobBuildError, match="absolute entry names need a container"):
        cwl_job.prepare_command_job(tool, {}, tmp_path / "runs" / "i")
    assert not target.exists()


def test_runtime_none_runs_on_the_host_exactly_as_without_container(tmp_path, store, settings):
    settings.APIARY_CONTAINER_RUNTIME = "none"
    run_dir = tmp_path / "runs" / "same" / "1"
    _, with_docker = _script(_tool(tmp_path, "docker.cwl", ECHO.format(requirements=DOCKER)), {}, run_dir)
    _, plain = _script(_tool(tmp_path, "plain.cwl", ECHO.format(requirements="")), {}, run_dir)
    assert with_docker == plain
    assert "ch-run" not in with_docker and "env -i" in with_docker


def test_collect_outputs_works_for_a_docker_step(tmp_path, store):
    tool = _tool(tmp_path, "collect.cwl", ECHO.format(requirements=DOCKER))
    run_dir = tmp_path / "runs" / "c" / "1"
    spec, _ = _script(tool, {}, run_dir)
    Path(spec.stdout).write_text("hello\n")  # as the job would have
    ok, outputs = cwl_job.collect_outputs(tool, {}, run_dir, 0)
    assert ok and outputs["out"]["size"] == 6


LINK_TOOL = """cwlVersion: v1.2
class: CommandLineTool
requirements:
  DockerRequirement: {dockerPull: apiary-busybox}
inputs: []
baseCommand: "true"
outputs:
  out: {type: File, outputBinding: {glob: link.txt}}
"""


def test_an_output_linking_to_a_path_inside_the_container_is_refused(tmp_path, store):
    tool = _tool(tmp_path, "link.cwl", LINK_TOOL)
    run_dir = tmp_path / "runs" / "l" / "1"
    spec, _ = _script(tool, {}, run_dir)
    host_file = tmp_path / "host-only.txt"  # exists on the host, not in the container
    host_file.write_text("not the container's\n")
    os.symlink(host_file, Path(spec.workdir) / "link.txt")  # as `ln -s /abs/path link.txt` inside
    with pytest.raises(cwl_job.JobBuildError, match="symbolic link to .*inside the container"):
        cwl_job.collect_outputs(tool, {}, run_dir, 0)


def test_an_output_linking_within_the_run_folder_is_kept(tmp_path, store):
    tool = _tool(tmp_path, "link.cwl", LINK_TOOL)
    run_dir = tmp_path / "runs" / "l" / "1"
    spec, _ = _script(tool, {}, run_dir)
    (Path(spec.workdir) / "real.txt").write_text("made by the tool\n")
    os.symlink(Path(spec.workdir) / "real.txt", Path(spec.workdir) / "link.txt")
    ok, outputs = cwl_job.collect_outputs(tool, {}, run_dir, 0)
    assert ok and outputs["out"]["size"] == len("made by the tool\n")
