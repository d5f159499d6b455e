from __future__ import annotations

from django.db import models


class VersionStatus(models.TextChoices):
    PROCESSING = "processing", "Processing"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class ModelFormatName(models.TextChoices):
    ONNX = "onnx", "ONNX"
    TFLITE = "tflite", "TensorFlow Lite"
    KERAS = "keras", "Keras"
    SAVEDMODEL = "savedmodel", "TensorFlow SavedModel"
    SKLEARN = "sklearn", "scikit-learn (skops)"
    PICKLE = "pickle", "pickle / joblib"


class JobKind(models.TextChoices):
    CONVERT = "convert", "Conversion"
    BENCHMARK = "benchmark", "Benchmark"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
