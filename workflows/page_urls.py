from django.urls import path

from workflows import pages

urlpatterns = [
    path("", pages.dashboard, name="dashboard"),
    path("archives/", pages.archives, name="archives"),
    path("archives/reexecute", pages.reexecute, name="archive-reexecute"),
    path("workflows/new", pages.submit, name="workflow-submit"),
    path("workflows/new/<str:draft_id>", pages.submit_inputs, name="workflow-submit-inputs"),
    path("workflows/<str:workflow_id>", pages.detail, name="workflow-detail"),
    path("workflows/<str:workflow_id>/files/<path:path>", pages.download, name="workflow-file"),
    path(
        "workflows/<str:workflow_id>/viewer/<str:stream>/<path:step_name>",
        pages.log_viewer,
        name="step-log-viewer",
    ),
    path(
        "workflows/<str:workflow_id>/tail/<str:stream>/<path:step_name>", pages.log_tail, name="step-log-tail"
    ),
    path("workflows/<str:workflow_id>/steps/<path:step_name>/<str:stream>", pages.step_log, name="step-log"),
    path("workflows/<str:workflow_id>/<str:action>", pages.action, name="workflow-action"),
]
