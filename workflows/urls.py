from django.urls import path

from workflows import api

urlpatterns = [
    path("workflows/", api.WorkflowListApi.as_view(), name="api-workflows"),
    path("workflows/reexecute", api.WorkflowReexecuteApi.as_view(), name="api-workflow-reexecute"),
    path("workflows/reexecute/", api.WorkflowReexecuteSlashApi.as_view()),
    path("workflows/<str:workflow_id>/", api.WorkflowDetailApi.as_view(), name="api-workflow"),
    path(
        "workflows/<str:workflow_id>/<str:action>/",
        api.WorkflowActionApi.as_view(),
        name="api-workflow-action",
    ),
    path(
        "workflows/<str:workflow_id>/archive", api.WorkflowArchiveApi.as_view(), name="api-workflow-archive"
    ),
    path("workflows/<str:workflow_id>/dag", api.WorkflowDagApi.as_view(), name="api-workflow-dag"),
    path(
        "workflows/<str:workflow_id>/outputs", api.WorkflowOutputsApi.as_view(), name="api-workflow-outputs"
    ),
    path(
        "workflows/<str:workflow_id>/files/<path:path>",
        api.WorkflowFileApi.as_view(),
        name="api-workflow-file",
    ),
    path(
        "workflows/<str:workflow_id>/steps/<path:step_name>/logs/<str:stream>",
        api.StepLogApi.as_view(),
        name="api-step-log",
    ),
    path("runs/<int:run_id>/finished", api.RunFinishedApi.as_view(), name="api-run-finished"),
]
