from django.contrib import admin

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
