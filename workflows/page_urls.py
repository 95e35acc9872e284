from django.urls import path

from workflows import pages

urlpatterns = [
    path("", pages.dashboard, name="dashboard"),
    path("workflows/new", pages.submit, name="workflow-submit"),
    path("workflows/<str:workflow_id>", pages.detail, name="workflow-detail"),
    path("workflows/<str:workflow_id>/<str:action>", pages.action, name="workflow-action"),
    path("workflows/<str:workflow_id>/steps/<path:step_name>/<str:stream>", pages.step_log, name="step-log"),
]
