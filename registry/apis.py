"""REST API of the registry: models, versions (upload), version detail and artifact download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.http import FileResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.errors import ApplicationError, NotFoundError
from common.idempotency import idempotent
from common.openapi import UploadField, error_responses
from registry.formats.base import QUANTIZATIONS, TARGETS, Recipe
from registry.models import Job, ModelVersion, RegisteredModel, model_name_validator
from registry.selectors import (
    ARCHIVED_CHOICES,
    job_get,
    job_list,
    model_version_get,
    model_version_list,
    registered_model_get,
    registered_model_list,
)
from registry.services.archive import model_archive, model_unarchive, version_archive, version_unarchive
from registry.services.benchmarks import version_benchmark_request
from registry.services.conversions import parity_override, version_convert_request
from registry.services.jobs import job_cancel
from registry.services.versions import Upload, model_version_create, registered_model_create
from registry.storage import artifact_storage
from registry.uploads import BodyLimitMiddleware, upload_was_too_large
from teams.choices import Action
from teams.permissions import Actor, actor_can
from teams.selectors import team_get_for_actor


class ModelOutputSerializer(serializers.Serializer):
    team = serializers.CharField(source="team.slug")
    name = serializers.CharField()
    description = serializers.CharField()
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)
    created_at = serializers.DateTimeField()
    version_count = serializers.IntegerField(default=0)
    latest_version = serializers.IntegerField(default=None, allow_null=True)
    archived_at = serializers.DateTimeField(allow_null=True, help_text="When it was archived; null while active.")
    archived_by = serializers.CharField(source="archived_by.username", default=None, allow_null=True)


class VersionOutputSerializer(serializers.Serializer):
    model = serializers.SerializerMethodField()
    number = serializers.IntegerField()
    format = serializers.CharField()
    status = serializers.CharField()
    status_message = serializers.CharField()
    filename = serializers.CharField()
    sha256 = serializers.CharField()
    size = serializers.IntegerField()
    signature = serializers.JSONField()
    framework = serializers.CharField()
    framework_version = serializers.CharField()
    metadata = serializers.JSONField()
    description = serializers.CharField()
    tags = serializers.JSONField()
    parent = serializers.IntegerField(source="parent.number", default=None, allow_null=True)  # type: ignore[assignment]  # (DRF pops declared fields off the class)
    recipe = serializers.JSONField()
    parity = serializers.JSONField()
    parity_override = serializers.SerializerMethodField()
    benchmark = serializers.JSONField()
    sample_filename = serializers.CharField()
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)
    created_at = serializers.DateTimeField()
    archived_at = serializers.DateTimeField(allow_null=True, help_text="When it was archived; null while active.")
    archived_by = serializers.CharField(source="archived_by.username", default=None, allow_null=True)
    artifacts_deleted_at = serializers.DateTimeField(
        allow_null=True, help_text="When its files were collected, MODELDECK_ARTIFACT_RETENTION_DAYS after archiving."
    )

    def get_model(self, version: ModelVersion) -> str:
        return f"{version.model.team.slug}/{version.model.name}"

    def get_parity_override(self, version: ModelVersion) -> dict[str, Any] | None:
        if not version.parity_override_at:
            return None
        return {
            "reason": version.parity_override_reason,
            "by": version.parity_override_by.get_username() if version.parity_override_by else None,
            "at": version.parity_override_at.isoformat(),
        }


ARCHIVED_PARAMETER = OpenApiParameter(
    "archived",
    str,
    enum=ARCHIVED_CHOICES,
    description="`false` (the default) hides archived objects, `true` lists only them, `all` lists both.",
)


class ArchivedQuerySerializer(serializers.Serializer):
    archived = serializers.ChoiceField(choices=ARCHIVED_CHOICES, default="false")


def _archived_param(request: Request) -> str:
    query = ArchivedQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    return str(query.validated_data["archived"])


class ModelListApi(APIView):
    class InputSerializer(serializers.Serializer):
        team = serializers.CharField()
        name = serializers.CharField(max_length=100, validators=[model_name_validator])
        description = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(
        parameters=[OpenApiParameter("team", str), OpenApiParameter("search", str), ARCHIVED_PARAMETER],
        responses=ModelOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        actor = Actor.from_request(request)
        models = registered_model_list(
            actor=actor,
            team_slug=request.query_params.get("team"),
            search=request.query_params.get("search", ""),
            archived=_archived_param(request),
        )
        return Response(ModelOutputSerializer(models, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: ModelOutputSerializer, **error_responses(409)})
    def post(self, request: Request) -> Response:
        actor = Actor.from_request(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        team = team_get_for_actor(actor=actor, slug=data.validated_data["team"], action=Action.DEVELOP)
        model = registered_model_create(
            actor=actor, team=team, name=data.validated_data["name"], description=data.validated_data["description"]
        )
        return Response(ModelOutputSerializer(model).data, status=status.HTTP_201_CREATED)


class ModelDetailApi(APIView):
    @extend_schema(responses=ModelOutputSerializer)
    def get(self, request: Request, team: str, model: str) -> Response:
        actor = Actor.from_request(request)
        obj = registered_model_get(actor=actor, team_slug=team, name=model)
        return Response(ModelOutputSerializer(_with_counts(actor, obj)).data)


def _with_counts(actor: Actor, model: RegisteredModel) -> RegisteredModel:
    return registered_model_list(actor=actor, team_slug=model.team.slug, archived="all").get(pk=model.pk)


class ModelArchiveApi(APIView):
    @extend_schema(request=None, responses={200: ModelOutputSerializer, **error_responses(409)})
    def post(self, request: Request, team: str, model: str) -> Response:
        """Archive the model and its versions (hidden from lists, no new versions or deployments; undone by
        unarchive); 409 `model_in_use` naming the endpoints while any serves one of its versions."""
        actor = Actor.from_request(request)
        obj = model_archive(actor=actor, model=registered_model_get(actor=actor, team_slug=team, name=model))
        return Response(ModelOutputSerializer(_with_counts(actor, obj)).data)


class ModelUnarchiveApi(APIView):
    @extend_schema(request=None, responses={200: ModelOutputSerializer})
    def post(self, request: Request, team: str, model: str) -> Response:
        """Bring the model back, with the versions archived with it (not those whose files were collected)."""
        actor = Actor.from_request(request)
        obj = model_unarchive(actor=actor, model=registered_model_get(actor=actor, team_slug=team, name=model))
        return Response(ModelOutputSerializer(_with_counts(actor, obj)).data)


def _upload(file: UploadedFile) -> Upload:
    path = file.temporary_file_path()  # type: ignore[attr-defined]
    return Upload(path=Path(path), filename=Path(file.name or "upload").name, sha256=file.sha256, size=file.size or 0)  # type: ignore[attr-defined]


class VersionListApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):
        file = UploadField(allow_empty_file=False)
        sample = UploadField(required=False, allow_empty_file=False)
        description = serializers.CharField(required=False, allow_blank=True, default="")
        tags = serializers.CharField(required=False, allow_blank=True, default="", help_text="Comma-separated.")

    @extend_schema(parameters=[ARCHIVED_PARAMETER], responses=VersionOutputSerializer(many=True))
    def get(self, request: Request, team: str, model: str) -> Response:
        obj = registered_model_get(actor=Actor.from_request(request), team_slug=team, name=model)
        versions = model_version_list(model=obj, archived=_archived_param(request))
        return Response(VersionOutputSerializer(versions, many=True).data)

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        parameters=[OpenApiParameter("create_model", bool, description="Register a missing model with this version.")],
        responses={201: VersionOutputSerializer, **error_responses(409, 413, 422)},
    )
    @idempotent
    def post(self, request: Request, team: str, model: str) -> Response:
        """Upload a model file as the next version; formats that need a worker come back `processing`."""
        actor = Actor.from_request(request)
        # `?create_model=true` registers a missing model with its first version, in one transaction: a refused
        # upload leaves no empty model behind (what a pipeline's first push needs).
        create_model = request.query_params.get("create_model", "").lower() in {"1", "true", "yes"}
        try:
            obj: RegisteredModel | None = registered_model_get(
                actor=actor, team_slug=team, name=model, action=Action.DEVELOP
            )
        except NotFoundError:
            if not create_model:
                raise
            team_get_for_actor(actor=actor, slug=team, action=Action.DEVELOP)  # 404 for other teams, 403 for viewers
            obj = None
        limit = settings.MODELDECK_MAX_UPLOAD_BYTES
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        too_large = ApplicationError(
            "too_large",
            f"The upload is larger than the limit of {limit} bytes (MODELDECK_MAX_UPLOAD_BYTES).",
            {"limit": limit, "content_length": length},
            status=413,
        )
        # Checked before the body is parsed (under ASGI the front door, registry.uploads, already did), and
        # again after: the upload handler stops a body that passes the limit despite its Content-Length.
        if length > limit + BodyLimitMiddleware.ENVELOPE_BYTES:
            raise too_large
        form = request.data
        if upload_was_too_large(request):
            raise too_large
        data = self.InputSerializer(data=form)
        data.is_valid(raise_exception=True)
        sample = data.validated_data.get("sample")
        if sample is not None and sample.size > settings.MODELDECK_MAX_SAMPLE_BYTES:
            raise ApplicationError(
                "too_large", f"The sample is larger than {settings.MODELDECK_MAX_SAMPLE_BYTES} bytes.", status=413
            )
        with transaction.atomic():
            if obj is None:
                obj = registered_model_create(
                    actor=actor, team=team_get_for_actor(actor=actor, slug=team, action=Action.DEVELOP), name=model
                )
            version = model_version_create(
                actor=actor,
                model=obj,
                upload=_upload(data.validated_data["file"]),
                sample=_upload(sample) if sample is not None else None,
                description=data.validated_data["description"],
                tags=data.validated_data["tags"].split(","),
            )
        return Response(VersionOutputSerializer(version).data, status=status.HTTP_201_CREATED)


class VersionDetailApi(APIView):
    @extend_schema(responses=VersionOutputSerializer)
    def get(self, request: Request, team: str, model: str, number: int) -> Response:
        version = model_version_get(actor=Actor.from_request(request), team_slug=team, name=model, number=number)
        return Response(VersionOutputSerializer(version).data)


class VersionArchiveApi(APIView):
    @extend_schema(request=None, responses={200: VersionOutputSerializer, **error_responses(409)})
    def post(self, request: Request, team: str, model: str, number: int) -> Response:
        """Archive the version (hidden from lists, never newly deployed; undone by unarchive); 409 `version_in_use`
        naming the endpoints while one's live release serves it (primary, canary or shadow)."""
        actor = Actor.from_request(request)
        version = model_version_get(actor=actor, team_slug=team, name=model, number=number)
        return Response(VersionOutputSerializer(version_archive(actor=actor, version=version)).data)


class VersionUnarchiveApi(APIView):
    @extend_schema(request=None, responses={200: VersionOutputSerializer, **error_responses(409)})
    def post(self, request: Request, team: str, model: str, number: int) -> Response:
        """Bring the version back; 409 `artifacts_deleted` once its files were collected, `model_archived` while its
        model is archived."""
        actor = Actor.from_request(request)
        version = model_version_get(actor=actor, team_slug=team, name=model, number=number)
        return Response(VersionOutputSerializer(version_unarchive(actor=actor, version=version)).data)


def artifact_response(version: ModelVersion, *, sample: bool = False) -> FileResponse:
    """Stream a stored file back under its uploaded name, with its sha256 for the client to check."""
    key, filename = (
        (version.sample_key, version.sample_filename) if sample else (version.artifact_key, version.filename)
    )
    if not key and version.artifacts_deleted_at is not None:
        raise ApplicationError(
            "file_deleted",
            f"v{version.number} was archived and its files were deleted on {version.artifacts_deleted_at:%Y-%m-%d}, "
            "after the retention period (MODELDECK_ARTIFACT_RETENTION_DAYS).",
            status=410,
        )
    if not key:
        raise ApplicationError(
            "file_deleted",
            f"v{version.number} was refused ({version.status_message}) and its file was deleted: ModelDeck keeps no "
            "file it will not load.",
            status=410,
        )
    response = FileResponse(artifact_storage().open(key, "rb"), as_attachment=True, filename=filename)
    response["Content-Type"] = "application/octet-stream"
    if not sample:
        response["ETag"] = f'"{version.sha256}"'
        response["X-Checksum-Sha256"] = version.sha256
    return response


class VersionArtifactApi(APIView):
    @extend_schema(responses={(200, "application/octet-stream"): bytes, **error_responses(410)})
    def get(self, request: Request, team: str, model: str, number: int) -> Any:
        version = model_version_get(actor=Actor.from_request(request), team_slug=team, name=model, number=number)
        return artifact_response(version)


class JobOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    team = serializers.CharField(source="team.slug")
    kind = serializers.CharField()
    status = serializers.CharField()
    progress = serializers.IntegerField()
    model = serializers.CharField(source="version.model.name")
    version = serializers.IntegerField(source="version.number")
    params = serializers.JSONField()
    result = serializers.JSONField()
    result_version = serializers.IntegerField(source="result_version.number", default=None, allow_null=True)
    error = serializers.CharField()
    trace = serializers.SerializerMethodField(
        help_text="The traceback behind a failed job's error, for team admins (null for everyone else)."
    )
    log = serializers.JSONField()
    worker = serializers.CharField()
    attempts = serializers.IntegerField()
    cancel_requested = serializers.BooleanField()
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_trace(self, job: Job) -> str | None:
        return job.trace if self.context.get("show_trace") else None


class VersionConversionApi(APIView):
    class InputSerializer(serializers.Serializer):
        target = serializers.ChoiceField(choices=TARGETS)
        quantization = serializers.ChoiceField(choices=QUANTIZATIONS, default="none")

    @extend_schema(request=InputSerializer, responses={202: JobOutputSerializer, **error_responses(409, 422)})
    @idempotent
    def post(self, request: Request, team: str, model: str, number: int) -> Response:
        """Convert the version (a new version with a parity report); 202 with the job to follow."""
        actor = Actor.from_request(request)
        version = model_version_get(actor=actor, team_slug=team, name=model, number=number)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = version_convert_request(actor=actor, version=version, recipe=Recipe(**data.validated_data))
        return Response(JobOutputSerializer(job_get(actor=actor, job_id=job.pk)).data, status=status.HTTP_202_ACCEPTED)


class VersionBenchmarkApi(APIView):
    @extend_schema(request=None, responses={202: JobOutputSerializer, **error_responses(409, 422)})
    @idempotent
    def post(self, request: Request, team: str, model: str, number: int) -> Response:
        """Benchmark the version with the runtime that serves it; 202 with the job to follow."""
        actor = Actor.from_request(request)
        version = model_version_get(actor=actor, team_slug=team, name=model, number=number)
        job = version_benchmark_request(actor=actor, version=version)
        return Response(JobOutputSerializer(job_get(actor=actor, job_id=job.pk)).data, status=status.HTTP_202_ACCEPTED)


class VersionParityOverrideApi(APIView):
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=2000)

    @extend_schema(request=InputSerializer, responses={200: VersionOutputSerializer, **error_responses(409)})
    def post(self, request: Request, team: str, model: str, number: int) -> Response:
        """Accept a failed parity report (admins), so the version can be deployed; audited."""
        actor = Actor.from_request(request)
        version = model_version_get(actor=actor, team_slug=team, name=model, number=number)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        parity_override(actor=actor, version=version, reason=data.validated_data["reason"])
        return Response(VersionOutputSerializer(version).data)


class JobListApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("team", str), OpenApiParameter("status", str)],
        responses=JobOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        jobs = job_list(
            actor=Actor.from_request(request),
            team_slug=request.query_params.get("team"),
            status=request.query_params.get("status"),
        )[:200]
        return Response(JobOutputSerializer(jobs, many=True).data)


class JobDetailApi(APIView):
    @extend_schema(responses=JobOutputSerializer)
    def get(self, request: Request, job_id: int) -> Response:
        actor = Actor.from_request(request)
        job = job_get(actor=actor, job_id=job_id)
        show_trace = actor_can(actor=actor, team=job.team, action=Action.MANAGE)
        return Response(JobOutputSerializer(job, context={"show_trace": show_trace}).data)


class JobCancelApi(APIView):
    @extend_schema(request=None, responses={200: JobOutputSerializer, **error_responses(409)})
    def post(self, request: Request, job_id: int) -> Response:
        actor = Actor.from_request(request)
        job = job_cancel(actor=actor, job=job_get(actor=actor, job_id=job_id))
        return Response(JobOutputSerializer(job).data)
