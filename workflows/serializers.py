from urllib.parse import unquote

from django.urls import reverse
from rest_framework import serializers

from workflows.models import Archive, Step, StepRun, Workflow
from workflows.storage import workflow_dir


class StepRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = StepRun
        fields = [
            "attempt",
            "batch_system",
            "batch_job_id",
            "batch_state",
            "batch_state_detail",
            "node",
            "exit_code",
            "submitted_at",
            "started_at",
            "ended_at",
        ]


class StepSerializer(serializers.ModelSerializer):
    depends_on = serializers.SerializerMethodField()
    batch_job_id = serializers.SerializerMethodField()
    node = serializers.SerializerMethodField()
    exit_code = serializers.SerializerMethodField()
    submitted_at = serializers.SerializerMethodField()
    started_at = serializers.SerializerMethodField()
    runs = StepRunSerializer(many=True, read_only=True)

    class Meta:
        model = Step
        fields = [
            "name",
            "tool_class",
            "state",
            "error",
            "attempts",
            "depends_on",
            "batch_job_id",
            "node",
            "exit_code",
            "submitted_at",
            "started_at",
            "ended_at",
            "outputs",
            "runs",
        ]

    def _last(self, step):
        runs = list(step.runs.all())
        return runs[-1] if runs else None

    def get_depends_on(self, step) -> list[str]:
        return sorted(s.name for s in step.depends_on.all())

    def get_batch_job_id(self, step) -> str:
        run = self._last(step)
        return run.batch_job_id if run else ""

    def get_node(self, step) -> str:
        run = self._last(step)
        return run.node if run else ""

    def get_exit_code(self, step):
        run = self._last(step)
        return run.exit_code if run else None

    def get_submitted_at(self, step):
        run = self._last(step)
        return run.submitted_at if run else None

    def get_started_at(self, step):
        run = self._last(step)
        return run.started_at if run else None


def public_outputs(value, workflow, request):
    """The CWL output object with file locations turned into download URLs."""
    root = workflow_dir(workflow.id).resolve().as_uri() + "/"
    if isinstance(value, list):
        return [public_outputs(v, workflow, request) for v in value]
    if isinstance(value, dict):
        out = {k: public_outputs(v, workflow, request) for k, v in value.items()}
        location = out.get("location")
        if isinstance(location, str) and location.startswith(root):
            relative = unquote(location[len(root) :])
            out["path"] = relative
            url = reverse("api-workflow-file", args=[workflow.id, relative])
            out["location"] = request.build_absolute_uri(url) if request else url
        return out
    return value


class WorkflowListSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    steps_total = serializers.IntegerField(read_only=True)
    steps_done = serializers.IntegerField(read_only=True)

    class Meta:
        model = Workflow
        fields = [
            "id",
            "name",
            "owner",
            "state",
            "outcome",
            "process_class",
            "cwl_version",
            "steps_total",
            "steps_done",
            "created_at",
            "started_at",
            "ended_at",
        ]


class WorkflowDetailSerializer(WorkflowListSerializer):
    steps = serializers.SerializerMethodField()
    outputs = serializers.SerializerMethodField()
    archive = serializers.SerializerMethodField()

    class Meta(WorkflowListSerializer.Meta):
        fields = WorkflowListSerializer.Meta.fields + [
            "main_document",
            "error",
            "steps",
            "outputs",
            "archive",
            "source_workflow_id",
            "source_archive_sha256",
        ]

    def get_archive(self, workflow) -> dict | None:
        """Size, sha256 and download URL of the archive, once the workflow is ARCHIVED."""
        archive = Archive.objects.filter(workflow=workflow).first()
        if archive is None:
            return None
        url = reverse("api-workflow-archive", args=[workflow.id])
        request = self.context.get("request")
        return {
            "size": archive.size,
            "sha256": archive.sha256,
            "created_at": archive.created_at,
            "format_version": archive.format_version,
            "url": request.build_absolute_uri(url) if request else url,
        }

    def get_steps(self, workflow) -> list[dict]:
        steps = workflow.steps.prefetch_related("runs", "depends_on")
        return StepSerializer(steps, many=True).data

    def get_outputs(self, workflow) -> dict | None:
        if workflow.outputs is None:
            return None
        return public_outputs(workflow.outputs, workflow, self.context.get("request"))


class WorkflowSubmitSerializer(serializers.Serializer):
    files = serializers.ListField(
        child=serializers.FileField(),
        allow_empty=False,
        help_text="CWL documents, input files, or one zip/tar bundle.",
    )
    main = serializers.CharField(
        required=False, allow_blank=True, help_text="The workflow document among the files."
    )
    inputs = serializers.CharField(
        required=False, allow_blank=True, help_text="The inputs file among the files."
    )
    inputs_text = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, help_text="Inputs as YAML/JSON text."
    )
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    start = serializers.BooleanField(required=False, default=True)


class WorkflowReexecuteSerializer(serializers.Serializer):
    archive = serializers.FileField(
        required=False, help_text="An Apiary archive (.tgz), e.g. from `apiary copy`."
    )
    workflow = serializers.UUIDField(
        required=False, help_text="Or: the id of one of your ARCHIVED workflows."
    )
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    inputs_text = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="Inputs to override (YAML/JSON object), merged over the archived inputs.",
    )
    start = serializers.BooleanField(required=False, default=True)

    def validate(self, data):
        if ("archive" in data) == ("workflow" in data):
            raise serializers.ValidationError("Give either 'archive' (a file) or 'workflow' (an id).")
        return data
