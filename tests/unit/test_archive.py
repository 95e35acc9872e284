"""Archives: packaging, the manifest and RO-Crate, the service that records them, download and
re-execution by id. The run is fabricated (documents submitted for real, jobs written by hand),
so nothing here needs Slurm or a worker; tests/integration/test_archive_slurm.py runs it for real.
"""

import hashlib
import io
import json
import tarfile
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import example_files
from workers import archive as engine
from workflows import services
from workflows.models import Archive, StepRun, Workflow
from workflows.states import StepState, WorkflowState

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

CONTAINER_SCRIPT = """#!/bin/bash
#SBATCH --job-name=apiary-1
# Container (Charliecloud): image apiary-busybox (dockerPull, from the site image store).
# A private copy is unpacked on this node for this job only, and removed when it ends.
IMG="$IMG_DIR/img"
ch-convert -i tar -o dir {image} "$IMG" || exit 71
ch-run --private-tmp "$IMG" -- grep integer lorem.txt
"""


@pytest.fixture
def archiving(settings, tmp_path):
    settings.APIARY_ARCHIVE_DIR = tmp_path / "archives"
    return settings


def _walk_steps(workflow, image):
    """Give each step of a submitted grep-wc one finished run with its files, as Slurm would."""
    started = timezone.now() - timedelta(seconds=30)
    for number, step in enumerate(workflow.steps.order_by("id"), start=1):
        for new in (StepState.READY, StepState.SUBMITTED, StepState.RUNNING):
            services.step_transition(step=step, new=new, reason=f"to {new}")
        run = StepRun.objects.create(
            step=step,
            attempt=1,
            batch_system="slurm",
            batch_job_id=str(4200 + number),
            batch_state=StepRun.BatchState.ENDED,
            node="node-a",
            exit_code=0,
            submitted_at=started,
            started_at=started + timedelta(seconds=2),
            ended_at=started + timedelta(seconds=5),
            finalized=True,
        )
        folder = run.run_dir
        (folder / "outdir").mkdir(parents=True)
        script = CONTAINER_SCRIPT.format(image=image) if step.name == "grep" else "#!/bin/bash\nwc -l\n"
        (folder / "job.sh").write_text(script)
        (folder / "job.out").write_text(f"{step.name} says hello\n")
        (folder / "job.err").write_text("")
        (folder / "exit_code").write_text("0\n")
        services.step_transition(step=step, new=StepState.COMPLETED, reason="exit code 0")
    return started


@pytest.fixture
def finished(user, archiving, tmp_path):
    """A grep-wc run that COMPLETED, with a small output and a large one."""
    image = tmp_path / "apiary-busybox.tar.gz"
    image.write_bytes(b"pretend image bytes")
    workflow = services.workflow_submit(
        owner=user, files=example_files("grep-wc"), main="workflow.cwl", inputs="inputs.yml", start=False
    )
    services.workflow_start(workflow=workflow)
    _walk_steps(workflow, image)
    outdir = workflow.run_dir / "steps" / "wc" / "1" / "outdir"
    (outdir / "counts.txt").write_text("87\n")
    (outdir / "big.bin").write_bytes(b"B" * 4096)
    outputs = {
        "counts": {"class": "File", "location": (outdir / "counts.txt").as_uri(), "basename": "counts.txt"},
        "big": {"class": "File", "location": (outdir / "big.bin").as_uri(), "basename": "big.bin"},
        "lines": 87,
    }
    services.workflow_transition(
        workflow=workflow, new=WorkflowState.COMPLETED, reason="done", outputs=outputs
    )
    archiving.APIARY_ARCHIVE_MAX_OUTPUT_BYTES = 1024  # counts.txt fits, big.bin goes by reference
    workflow.image = image
    return workflow


def members(path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_archive_is_written_recorded_and_the_workflow_archived(finished, archiving):
    archive = services.workflow_archive(workflow_id=finished.id)
    path = archiving.APIARY_ARCHIVE_DIR / f"{finished.id}.tgz"
    assert archive.path == str(path)
    data = path.read_bytes()
    assert archive.size == len(data)
    assert archive.sha256 == hashlib.sha256(data).hexdigest()
    workflow = Workflow.objects.get(pk=finished.id)
    assert (workflow.state, workflow.outcome) == ("ARCHIVED", "COMPLETED")
    assert workflow.events.last().new_state == "ARCHIVED"
    assert [p.name for p in archiving.APIARY_ARCHIVE_DIR.iterdir()] == [path.name]  # no temp file left

    files = members(path)
    for name in (
        "manifest.json",
        "ro-crate-metadata.json",
        "inputs.json",
        "outputs.json",
        "src/workflow.cwl",
        "src/grep.cwl",
        "src/wc.cwl",
        "src/lorem.txt",
        "src/inputs.yml",
        "steps/grep/metadata.json",
        "steps/grep/1/job.sh",
        "steps/grep/1/job.out",
        "steps/grep/1/job.err",
        "steps/grep/1/exit_code",
        "steps/wc/metadata.json",
        "steps/wc/1/job.sh",
        "outputs/steps/wc/1/outdir/counts.txt",
    ):
        assert name in files, name
    assert files["src/workflow.cwl"] == example_files("grep-wc")["workflow.cwl"]
    assert files["outputs/steps/wc/1/outdir/counts.txt"] == b"87\n"
    assert "outputs/steps/wc/1/outdir/big.bin" not in files
    assert files["steps/grep/1/job.out"] == b"grep says hello\n"
    assert not any(str(finished.run_dir) in name for name in files)


def test_inputs_and_outputs_point_into_the_archive_or_keep_a_reference(finished, archiving):
    files = members(services.workflow_archive(workflow_id=finished.id).path)
    inputs = json.loads(files["inputs.json"])
    assert inputs["pattern"] == "integer"
    assert (inputs["infile"]["class"], inputs["infile"]["location"]) == ("File", "src/lorem.txt")
    assert "path" not in inputs["infile"]
    outputs = json.loads(files["outputs.json"])
    assert outputs["counts"]["location"] == "outputs/steps/wc/1/outdir/counts.txt"
    big = finished.run_dir / "steps" / "wc" / "1" / "outdir" / "big.bin"
    assert outputs["big"]["location"] == big.as_uri()
    assert outputs["lines"] == 87
    listed = {e["sha256"]: e for e in json.loads(files["manifest.json"])["output_files"]}
    by_reference = listed[hashlib.sha256(b"B" * 4096).hexdigest()]
    assert by_reference == {
        "path": None,
        "location": big.as_uri(),
        "size": 4096,
        "sha256": hashlib.sha256(b"B" * 4096).hexdigest(),
        "included": False,
    }
    included = listed[hashlib.sha256(b"87\n").hexdigest()]
    assert included["included"] and included["path"] == "outputs/steps/wc/1/outdir/counts.txt"


def test_manifest_names_the_run_and_its_provenance(finished):
    manifest = json.loads(members(services.workflow_archive(workflow_id=finished.id).path)["manifest.json"])
    assert manifest["format"] == "apiary-archive" and manifest["format_version"] == 1
    assert manifest["workflow_id"] == str(finished.id)
    assert manifest["name"] == finished.name
    assert manifest["cwl_version"] == "v1.2"
    assert manifest["state"] == "COMPLETED"
    assert manifest["main_document"] == "workflow.cwl"
    assert manifest["inputs"]["infile"]["location"] == "src/lorem.txt"
    assert [e["new_state"] for e in manifest["events"]] == ["SUBMITTED", "RUNNING", "COMPLETED"]
    assert manifest["provenance"]["source_workflow_id"] is None
    assert manifest["provenance"]["batch_system"]
    assert engine.validate_manifest(json.dumps(manifest).encode())["workflow_id"] == str(finished.id)


def test_step_metadata_has_history_jobs_and_container(finished):
    files = members(services.workflow_archive(workflow_id=finished.id).path)
    grep = json.loads(files["steps/grep/metadata.json"])
    assert grep["state"] == "COMPLETED"
    assert [e["new_state"] for e in grep["events"]] == ["READY", "SUBMITTED", "RUNNING", "COMPLETED"]
    assert all(e["at"] for e in grep["events"])
    (run,) = grep["runs"]
    assert run["batch_job_id"] == "4201" and run["node"] == "node-a" and run["exit_code"] == 0
    assert run["started_at"] and run["ended_at"]
    assert run["files"]["job.sh"] == "steps/grep/1/job.sh"
    assert run["container"] == {
        "runtime": "Charliecloud",
        "image": "apiary-busybox (dockerPull, from the site image store)",
        "image_path": str(finished.image),
        "image_sha256": hashlib.sha256(b"pretend image bytes").hexdigest(),
    }
    wc = json.loads(files["steps/wc/metadata.json"])
    assert wc["depends_on"] == ["grep"]
    assert wc["runs"][0]["container"] is None


def test_a_long_job_log_is_cut_to_its_head_and_tail_with_its_whole_checksum(finished, archiving):
    archiving.APIARY_ARCHIVE_MAX_LOG_BYTES = 100
    log = finished.run_dir / "steps" / "grep" / "1" / "job.out"
    whole = b"H" * 60 + b"-middle-" * 100 + b"T" * 60
    log.write_bytes(whole)
    files = members(services.workflow_archive(workflow_id=finished.id).path)
    kept = files["steps/grep/1/job.out"]
    assert kept.startswith(b"H" * 50) and kept.endswith(b"T" * 50)
    assert b"-middle-" * 3 not in kept
    assert f"{len(whole) - 100} bytes of this {len(whole)}-byte log".encode() in kept
    run = json.loads(files["steps/grep/metadata.json"])["runs"][0]
    assert run["truncated_logs"] == {
        "job.out": {"size": len(whole), "sha256": hashlib.sha256(whole).hexdigest(), "kept_bytes": 100}
    }
    assert files["steps/wc/1/job.out"] == b"wc says hello\n"  # short logs whole
    assert "truncated_logs" not in json.loads(files["steps/wc/metadata.json"])["runs"][0]


def _ids(value):
    if isinstance(value, dict):
        if set(value) == {"@id"}:
            yield value["@id"]
        for item in value.values():
            yield from _ids(item)
    elif isinstance(value, list):
        for item in value:
            yield from _ids(item)


def test_ro_crate_is_a_workflow_run_crate(finished):
    files = members(services.workflow_archive(workflow_id=finished.id).path)
    crate = json.loads(files["ro-crate-metadata.json"])
    assert crate["@context"][0] == "https://w3id.org/ro/crate/1.1/context"
    graph = {e["@id"]: e for e in crate["@graph"]}
    assert len(graph) == len(crate["@graph"]), "duplicate @id"
    descriptor = graph["ro-crate-metadata.json"]
    assert descriptor["about"] == {"@id": "./"}
    assert {"@id": "https://w3id.org/ro/crate/1.1"} in descriptor["conformsTo"]
    root = graph["./"]
    assert root["@type"] == "Dataset" and root["name"] and root["datePublished"]
    assert {"@id": "https://w3id.org/ro/wfrun/workflow/0.5"} in root["conformsTo"]
    assert {"@id": "https://w3id.org/ro/wfrun/process/0.5"} in root["conformsTo"]
    assert root["mainEntity"] == {"@id": "src/workflow.cwl"}
    main = graph["src/workflow.cwl"]
    assert set(main["@type"]) == {"File", "SoftwareSourceCode", "ComputationalWorkflow"}
    assert graph[main["programmingLanguage"]["@id"]]["alternateName"] == "CWL"
    (run_ref,) = root["mentions"]
    action = graph[run_ref["@id"]]
    assert action["@type"] == "CreateAction"
    assert action["instrument"] == {"@id": "src/workflow.cwl"}
    assert action["actionStatus"] == {"@id": "http://schema.org/CompletedActionStatus"}
    assert action["startTime"] and action["endTime"]
    objects = [graph[o["@id"]] for o in action["object"]]
    assert {"src/lorem.txt", "#pv-input-pattern"} == {o["@id"] for o in objects}
    assert graph["#pv-input-pattern"]["value"] == "integer"
    results = {r["@id"] for r in action["result"]}
    assert "outputs/steps/wc/1/outdir/counts.txt" in results
    big = (finished.run_dir / "steps" / "wc" / "1" / "outdir" / "big.bin").as_uri()
    assert big in results and graph[big]["sha256"] == hashlib.sha256(b"B" * 4096).hexdigest()
    for item in objects + [graph[r] for r in results]:
        parameter = graph[item["exampleOfWork"]["@id"]]
        assert parameter["@type"] == "FormalParameter" and parameter["additionalType"]
    assert {p["@id"] for p in main["input"]} == {"#param-input-pattern", "#param-input-infile"}
    # Every file of the archive is a data entity of the root, with its size and checksum.
    parts = {p["@id"] for p in root["hasPart"]}
    assert set(files) - {"ro-crate-metadata.json"} <= parts
    assert graph["steps/grep/1/job.sh"]["about"] == {"@id": run_ref["@id"]}
    assert graph["src/lorem.txt"]["sha256"] == hashlib.sha256(files["src/lorem.txt"]).hexdigest()
    # Every local reference resolves inside the graph.
    external = ("http://", "https://", "file://", "urn:")
    dangling = {i for i in _ids(crate["@graph"]) if i not in graph and not i.startswith(external)}
    assert not dangling


def test_ro_crate_is_valid_json_ld(finished):
    rdflib = pytest.importorskip("rdflib")
    crate = json.loads(
        members(services.workflow_archive(workflow_id=finished.id).path)["ro-crate-metadata.json"]
    )
    # The published RO-Crate 1.1 context, reduced to the terms used here (no network in tests).
    crate["@context"] = {
        "@vocab": "http://schema.org/",
        "File": "http://schema.org/MediaObject",
        "ComputationalWorkflow": "https://bioschemas.org/ComputationalWorkflow",
        "FormalParameter": "https://bioschemas.org/FormalParameter",
        "input": "https://bioschemas.org/properties/input",
        "output": "https://bioschemas.org/properties/output",
        "conformsTo": "http://purl.org/dc/terms/conformsTo",
        "sha256": "https://w3id.org/ro/terms/workflow-run#sha256",
    }
    graph = rdflib.Graph().parse(data=json.dumps(crate), format="json-ld", base="http://crate.test/")
    schema = rdflib.Namespace("http://schema.org/")
    actions = list(graph.subjects(rdflib.RDF.type, schema.CreateAction))
    assert len(actions) == 1
    assert graph.value(actions[0], schema.instrument) == rdflib.URIRef("http://crate.test/src/workflow.cwl")


def test_archiving_twice_is_harmless(finished):
    first = services.workflow_archive(workflow_id=finished.id)
    again = services.workflow_archive(workflow_id=finished.id)
    assert again.pk == first.pk and again.sha256 == first.sha256
    assert Archive.objects.count() == 1
    assert Workflow.objects.get(pk=finished.id).events.filter(new_state="ARCHIVED").count() == 1


def test_running_or_missing_workflows_are_not_archived(user, archiving):
    workflow = services.workflow_submit(
        owner=user, files=example_files("grep-wc"), inputs="inputs.yml", start=False
    )
    assert services.workflow_archive(workflow_id=workflow.id) is None
    assert services.workflow_archive(workflow_id=uuid.uuid4()) is None
    assert not Archive.objects.exists()


def test_a_failed_packaging_leaves_no_file(finished, archiving, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(engine, "build_crate", broken)
    with pytest.raises(OSError):
        services.workflow_archive(workflow_id=finished.id)
    assert list(archiving.APIARY_ARCHIVE_DIR.iterdir()) == []
    assert Workflow.objects.get(pk=finished.id).state == "COMPLETED"


@pytest.mark.parametrize("enabled", [True, False])
def test_an_ending_workflow_enqueues_its_archive(
    user, settings, monkeypatch, enabled, django_capture_on_commit_callbacks
):
    from workers import tasks

    settings.APIARY_ARCHIVE_ENABLED = enabled
    enqueued = []
    monkeypatch.setattr(tasks.archive_workflow, "delay", lambda workflow_id: enqueued.append(workflow_id))
    monkeypatch.setattr(tasks.cancel_jobs, "delay", lambda workflow_id: None)
    workflow = services.workflow_submit(
        owner=user, files=example_files("grep-wc"), inputs="inputs.yml", start=False
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.workflow_cancel(workflow=workflow)
    assert enqueued == ([str(workflow.id)] if enabled else [])
    assert Workflow.objects.get(pk=workflow.id).outcome == "CANCELLED"


def test_deleting_a_workflow_deletes_its_archive(finished):
    archive = services.workflow_archive(workflow_id=finished.id)
    workflow = Workflow.objects.get(pk=finished.id)
    services.workflow_delete(workflow=workflow)
    assert not Archive.objects.exists()
    assert not (archive.path and __import__("pathlib").Path(archive.path).exists())


def test_download_has_length_and_checksum(finished, api):
    assert api.get(f"/api/v1/workflows/{finished.id}/archive").status_code == 409
    archive = services.workflow_archive(workflow_id=finished.id)
    response = api.get(f"/api/v1/workflows/{finished.id}/archive")
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert response["X-Checksum-SHA256"] == archive.sha256 == hashlib.sha256(body).hexdigest()
    assert response["Content-Length"] == str(len(body))
    assert response["Digest"].startswith("sha-256=")
    assert f"{finished.id}.tgz" in response["Content-Disposition"]
    listed = api.get("/api/v1/workflows/").json()["results"][0]
    assert (listed["state"], listed["outcome"]) == ("ARCHIVED", "COMPLETED")
    detail = api.get(f"/api/v1/workflows/{finished.id}/").json()
    assert detail["archive"]["sha256"] == archive.sha256


def test_others_archives_are_not_found(finished, other_user):
    from rest_framework.test import APIClient

    from portal.services import api_token_create

    services.workflow_archive(workflow_id=finished.id)
    _, secret = api_token_create(user=other_user, name="t")
    bob = APIClient()
    bob.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert bob.get(f"/api/v1/workflows/{finished.id}/archive").status_code == 404
    response = bob.post("/api/v1/workflows/reexecute/", {"workflow": str(finished.id)})  # with a slash too
    assert response.status_code == 404


def test_reexecute_by_id_resets_everything_and_records_the_source(finished, api):
    assert api.post("/api/v1/workflows/reexecute", {"workflow": str(finished.id)}).status_code == 409
    archive = services.workflow_archive(workflow_id=finished.id)
    response = api.post(
        "/api/v1/workflows/reexecute",
        {"workflow": str(finished.id), "name": "again", "inputs_text": "pattern: dolor\n", "start": "false"},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] != str(finished.id) and body["name"] == "again"
    assert body["state"] == "SUBMITTED" and body["outcome"] == ""
    assert {s["state"] for s in body["steps"]} == {"WAITING"}
    assert all(s["runs"] == [] for s in body["steps"])
    assert body["source_workflow_id"] == str(finished.id)
    assert body["source_archive_sha256"] == archive.sha256
    new = Workflow.objects.get(pk=body["id"])
    assert new.inputs["pattern"] == "dolor"  # overridden
    lorem = new.inputs["infile"]["location"]
    assert lorem == (new.run_dir / "src" / "lorem.txt").as_uri()
    assert (new.run_dir / "src" / "lorem.txt").read_bytes() == example_files("grep-wc")["lorem.txt"]
    assert (new.run_dir / "src" / "workflow.cwl").read_bytes() == example_files("grep-wc")["workflow.cwl"]


def test_reexecuted_run_archive_records_where_it_came_from(finished, archiving):
    archive = services.workflow_archive(workflow_id=finished.id)
    source = Workflow.objects.get(pk=finished.id)
    new = services.workflow_reexecute(owner=finished.owner, source=source, start=False)
    services.workflow_cancel(workflow=new)
    again = services.workflow_archive(workflow_id=new.id)
    manifest = json.loads(members(again.path)["manifest.json"])
    assert manifest["state"] == "CANCELLED"
    assert manifest["provenance"]["source_workflow_id"] == str(finished.id)
    assert manifest["provenance"]["source_archive_sha256"] == archive.sha256
    crate = json.loads(members(again.path)["ro-crate-metadata.json"])
    action = next(e for e in crate["@graph"] if e["@type"] == "CreateAction")
    assert action["actionStatus"] == {"@id": "http://schema.org/FailedActionStatus"}
    assert action["isBasedOn"] == {"@id": f"urn:uuid:{finished.id}"}


def test_uploaded_copy_reexecutes_like_the_original(finished, api):
    archive = services.workflow_archive(workflow_id=finished.id)
    with open(archive.path, "rb") as fh:
        upload = io.BytesIO(fh.read())
    upload.name = "copy.tgz"
    response = api.post(
        "/api/v1/workflows/reexecute", {"archive": upload, "start": "false"}, format="multipart"
    )
    assert response.status_code == 201, response.content
    assert response.json()["source_archive_sha256"] == archive.sha256
    assert response.json()["name"] == finished.name


def test_container_of_a_script_without_container_is_none():
    assert engine.container_of("#!/bin/bash\necho hi\n") is None


def test_pages_show_download_and_reexecute_once_archived(finished, client):
    client.force_login(finished.owner)
    page = client.get(f"/workflows/{finished.id}").content.decode()
    assert "Download archive" not in page
    services.workflow_archive(workflow_id=finished.id)
    page = client.get(f"/workflows/{finished.id}").content.decode()
    assert "Download archive" in page and f"/api/v1/workflows/{finished.id}/archive" in page
    assert 'action="/archives/reexecute"' in page
    listing = client.get("/archives/").content.decode()
    assert finished.name in listing and f"{finished.id}.tgz" in listing and "COMPLETED" in listing
    download = client.get(f"/api/v1/workflows/{finished.id}/archive")  # the portal's session works
    assert download.status_code == 200
    response = client.post("/archives/reexecute", {"workflow": str(finished.id), "name": "from the page"})
    new = Workflow.objects.get(name="from the page")
    assert response.status_code == 302 and response["Location"] == f"/workflows/{new.id}"
    assert new.source_workflow_id == finished.id


def test_page_reexecute_of_a_hostile_upload_says_which_rule(user, client):
    client.force_login(user)
    upload = io.BytesIO(b"not a tgz")
    upload.name = "evil.tgz"
    response = client.post("/archives/reexecute", {"archive": upload}, follow=True)
    assert "not-a-tgz" in response.content.decode()
    assert not Workflow.objects.exists()
