"""REST API for workflows (``/api/v1/``). Thin: parse, call a service or selector, render."""

from __future__ import annotations

import base64

from django.http import FileResponse
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from workflows import selectors, services
from workflows.serializers import (
    WorkflowDetailSerializer,
    WorkflowListSerializer,
    WorkflowReexecuteSerializer,
    WorkflowSubmitSerializer,
    public_outputs,
)


class WorkflowListApi(GenericAPIView):
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = WorkflowListSerializer

    def get_queryset(self):
        params = self.request.query_params
        return selectors.workflow_list(
            user=self.request.user, state=params.get("state"), name=params.get("name")
        )

    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(WorkflowListSerializer(page, many=True).data)

    @extend_schema(
        request={"multipart/form-data": WorkflowSubmitSerializer}, responses=WorkflowDetailSerializer
    )
    def post(self, request):
        form = WorkflowSubmitSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        workflow = services.workflow_submit(
            owner=request.user,
            files={f.name: f.read() for f in data["files"]},
            main=data.get("main") or None,
            inputs=data.get("inputs") or None,
            inputs_text=data.get("inputs_text") if data.get("inputs_text") else None,
            name=data.get("name", ""),
            start=data.get("start", True),
        )
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow.id)
        body = WorkflowDetailSerializer(workflow, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED)


class WorkflowDetailApi(APIView):
    @extend_schema(responses=WorkflowDetailSerializer)
    def get(self, request, workflow_id):
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
        return Response(WorkflowDetailSerializer(workflow, context={"request": request}).data)

    def delete(self, request, workflow_id):
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
        services.workflow_delete(workflow=workflow)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WorkflowActionApi(APIView):
    @extend_schema(request=None, responses=WorkflowDetailSerializer)
    def post(self, request, workflow_id, action):
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
        services.workflow_act(workflow=workflow, action=action)
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
        return Response(WorkflowDetailSerializer(workflow, context={"request": request}).data)


class GraphMLRenderer(BaseRenderer):
    media_type = "application/graphml+xml"
    format = "graphml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        from workflows.graph.formats import to_graphml

        if isinstance(data, dict) and "nodes" in data:
            return to_graphml(data).encode()
        return JSONRenderer().render(data)  # an error body stays readable


class WorkflowDagApi(APIView):
    """The workflow's DAG from the configured graph store: ``?format=json`` (default) or ``graphml``."""

    renderer_classes = [JSONRenderer, GraphMLRenderer]

    def get(self, request, workflow_id, format=None):
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
        return Response(selectors.workflow_dag(workflow=workflow))


class WorkflowOutputsApi(APIView):
    def get(self, request, workflow_id):
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
        return Response(public_outputs(workflow.outputs or {}, workflow, request))


class WorkflowFileApi(APIView):
    def get(self, request, workflow_id, path):
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
        file = selectors.workflow_file(workflow=workflow, relative=path)
        return FileResponse(open(file, "rb"), as_attachment=True, filename=file.name)


class StepLogApi(APIView):
    def get(self, request, workflow_id, step_name, stream):
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
        step = selectors.step_get(workflow=workflow, name=step_name)
        path = selectors.step_log_path(step=step, stream=stream)
        offset = int(request.query_params.get("offset", 0) or 0)
        text = ""
        size = 0
        if path is not None and path.is_file():
            with open(path, "rb") as fh:
                fh.seek(max(0, offset))
                data = fh.read(1024 * 1024)
                text = data.decode(errors="replace")
                size = max(0, offset) + len(data)
        return Response(
            {"step": step.name, "stream": stream, "state": step.state, "offset": size, "text": text}
        )


class WorkflowArchiveApi(APIView):
    """The workflow's archive (.tgz), with its size and SHA-256 for verification by the client."""

    @extend_schema(responses={(200, "application/gzip"): bytes})
    def get(self, request, workflow_id):
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
        archive = selectors.workflow_archive_get(workflow=workflow)
        response = FileResponse(
            open(archive.path, "rb"),
            as_attachment=True,
            filename=f"{workflow.id}.tgz",
            content_type="application/gzip",
        )
        response["Content-Length"] = str(archive.size)
        response["X-Checksum-SHA256"] = archive.sha256
        response["Digest"] = "sha-256=" + base64.b64encode(bytes.fromhex(archive.sha256)).decode()
        return response


class WorkflowReexecuteApi(APIView):
    """A new workflow from an archive: an uploaded .tgz or one of the user's ARCHIVED workflows."""

    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(
        request={"multipart/form-data": WorkflowReexecuteSerializer}, responses=WorkflowDetailSerializer
    )
    def post(self, request):
        form = WorkflowReexecuteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        source = None
        if "workflow" in data:
            source = selectors.workflow_get(user=request.user, workflow_id=data["workflow"])
        workflow = services.workflow_reexecute(
            owner=request.user,
            upload=data.get("archive"),
            source=source,
            name=data.get("name", ""),
            inputs_text=data.get("inputs_text") or None,
            start=data.get("start", True),
        )
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow.id)
        body = WorkflowDetailSerializer(workflow, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED)


@extend_schema_view(post=extend_schema(exclude=True))
class WorkflowReexecuteSlashApi(WorkflowReexecuteApi):
    """``workflows/reexecute/`` (with a slash) does the same; only one is in the schema."""


class RunFinishedApi(APIView):
    """The job wrapper's completion notice, authenticated by the run's own token."""

    authentication_classes = []
    permission_classes = [AllowAny]
    parser_classes = [FormParser, JSONParser]

    @extend_schema(request=None, responses={202: None})
    def post(self, request, run_id):
        raw = request.data.get("exit_code")
        try:
            exit_code = int(raw) if raw not in (None, "") else None
        except (TypeError, ValueError):
            exit_code = None
        services.run_report_finished(
            run_id=run_id,
            token=request.headers.get("X-Apiary-Run-Token", ""),
            exit_code=exit_code,
            node=str(request.data.get("node", "")),
        )
        return Response({"message": "noted"}, status=status.HTTP_202_ACCEPTED)
