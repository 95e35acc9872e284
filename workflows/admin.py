from django.contrib import admin, messages

from portal.errors import ApplicationError
from workflows import services
from workflows.models import Step, StepRun, Workflow, WorkflowEvent


class StepInline(admin.TabularInline):
    model = Step
    fields = ["name", "tool_class", "state", "attempts", "ended_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


class EventInline(admin.TabularInline):
    model = WorkflowEvent
    fields = ["at", "old_state", "new_state", "reason"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "state", "created_at", "ended_at"]
    list_filter = ["state"]
    search_fields = ["name", "id", "owner__username"]
    readonly_fields = [
        "id",
        "owner",
        "state",
        "main_document",
        "cwl_version",
        "process_class",
        "inputs",
        "outputs",
        "error",
        "created_at",
        "started_at",
        "ended_at",
    ]
    inlines = [StepInline, EventInline]
    actions = ["start_selected", "pause_selected", "resume_selected", "cancel_selected"]

    def _control(self, request, queryset, service, done: str) -> None:
        """Apply a control service to each selected workflow; report what happened to each."""
        moved, refused = 0, []
        for workflow in queryset:
            try:
                service(workflow=workflow)
                moved += 1
            except ApplicationError as exc:
                refused.append(exc.message)
        if moved:
            self.message_user(request, f"{moved} workflow(s) {done}.", messages.SUCCESS)
        for message in refused[:10]:
            self.message_user(request, message, messages.WARNING)

    @admin.action(description="Start the selected workflows")
    def start_selected(self, request, queryset):
        self._control(request, queryset, services.workflow_start, "started")

    @admin.action(description="Pause the selected workflows")
    def pause_selected(self, request, queryset):
        self._control(request, queryset, services.workflow_pause, "paused")

    @admin.action(description="Resume the selected workflows")
    def resume_selected(self, request, queryset):
        self._control(request, queryset, services.workflow_resume, "resumed")

    @admin.action(description="Cancel the selected workflows (kills their jobs)")
    def cancel_selected(self, request, queryset):
        self._control(request, queryset, services.workflow_cancel, "cancelled")

    def has_add_permission(self, request):
        return False  # workflows are submitted through the portal, the API or the CLI


class RunInline(admin.TabularInline):
    model = StepRun
    fields = [
        "attempt",
        "batch_job_id",
        "batch_state",
        "batch_state_detail",
        "node",
        "exit_code",
        "submitted_at",
        "ended_at",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Step)
class StepAdmin(admin.ModelAdmin):
    list_display = ["name", "workflow", "state", "attempts"]
    list_filter = ["state"]
    readonly_fields = [
        "workflow",
        "name",
        "tool_ref",
        "tool_class",
        "state",
        "job_order",
        "outputs",
        "error",
        "attempts",
        "ended_at",
    ]
    inlines = [RunInline]

    def has_add_permission(self, request):
        return False  # steps come from the submitted CWL
