"""The Dockerfile, compose.yml and Kubernetes manifests: they cannot be run here, so their shape is checked.

No Docker daemon, hadolint or kubectl on this machine: these tests parse the files (PyYAML, a small Dockerfile
reader) and hold them to the settings, the start scripts and each other.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.views import ROUTES

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
K8S = DOCKER / "k8s"
VAR_DIR = "/var/lib/modeldeck"
APP_USER_ID = 10001
TMP = "/tmp"  # noqa: S108  (the containers' own /tmp, a volume in every pod)
PROCESSES = ("web", "grpc", "worker", "beat")
# config/settings/base.py's FILE_UPLOAD_TEMP_DIR default: where the web process spools uploads.
UPLOAD_TEMP_DIR = f"{VAR_DIR}/tmp"  # noqa: S108  (in the image, owned by the app user)
# Where the code reads its environment (settings, entry points), and the start scripts that read some more.
ENV_READERS = [*sorted((ROOT / "config").rglob("*.py")), *sorted(DOCKER.glob("*.sh"))]


# --- Dockerfile -----------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Read docker/Dockerfile into stages of (INSTRUCTION, arguments), continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[list[tuple[str, str]]] = []
    for text in logical:
        instruction, _, arguments = text.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        assert stages, f"an instruction before the first FROM: {text}"
        stages[-1].append((instruction.upper(), " ".join(arguments.split())))
    return stages


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == name]


def test_dockerfile_is_multi_stage_on_a_pinned_python_311_slim() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    bases = [stage[0][1] for stage in stages]
    for base in bases:
        image, _, alias = base.partition(" AS ")
        assert alias, f"unnamed stage: {base}"
        # A full version tag, never a moving one (`latest`, `3.11`, `3.11-slim`).
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?", image), image
    assert len({base.partition(" AS ")[0] for base in bases}) == 1, "build and runtime stages use different Pythons"
    requires = re.search(r'requires-python = "([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert requires is not None and "3.11" in requires.group(1)


def test_dockerfile_installs_from_the_lock_with_the_makefiles_uv() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    uv_image = re.search(r"ghcr\.io/astral-sh/uv:(\S+)", text)
    make_uv = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert uv_image is not None and make_uv is not None
    assert uv_image.group(1) == make_uv.group(1)
    runs = [run for stage in dockerfile_stages() for run in instructions(stage, "RUN")]
    syncs = [run for run in runs if "uv sync" in run]
    assert syncs
    for run in syncs:
        assert "uv sync --frozen --extra convert --no-dev" in run, run
    assert not any("pip install" in run for run in runs), "everything comes from uv.lock"


def test_dockerfile_runtime_stage() -> None:
    runtime = dockerfile_stages()[-1]
    env = " ".join(instructions(runtime, "ENV"))
    assert f"MODELDECK_VAR_DIR={VAR_DIR}" in env
    assert "DJANGO_SETTINGS_MODULE=config.settings.production" in env
    users = instructions(runtime, "USER")
    assert users, "the runtime stage must switch to a non-root user"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user == str(APP_USER_ID), "numeric, so Kubernetes' runAsNonRoot can verify it; the manifests use it too"
    runs = instructions(runtime, "RUN")
    assert any("manage.py collectstatic --noinput" in run for run in runs)
    # The folders the processes write are theirs, not root's (collectstatic, run as root, creates some of them).
    (install,) = [run for run in runs if "install -d -o modeldeck" in run]
    for folder in ("artifacts", "prometheus", UPLOAD_TEMP_DIR.rpartition("/")[2]):
        assert f'"$MODELDECK_VAR_DIR/{folder}"' in install, folder
    base = (ROOT / "config" / "settings" / "base.py").read_text()
    assert 'env.str("FILE_UPLOAD_TEMP_DIR", default=str(VAR_DIR / "tmp"))' in base
    (healthcheck,) = instructions(runtime, "HEALTHCHECK")
    assert "/app/docker/healthcheck.py" in healthcheck
    (entrypoint,) = instructions(runtime, "ENTRYPOINT")
    assert "/app/docker/entrypoint.sh" in entrypoint
    assert instructions(runtime, "CMD") == ['["web"]']
    exposed = " ".join(instructions(runtime, "EXPOSE")).split()
    assert {"8000", "8001"} <= set(exposed)


def test_dockerfile_bakes_no_secret() -> None:
    for stage in dockerfile_stages():
        for instruction, arguments in stage:
            if instruction in ("ENV", "ARG", "LABEL"):
                assert not re.search(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY", arguments, re.IGNORECASE), arguments
    # The placeholder key collectstatic needs lives in that one RUN's environment only.
    for run in instructions(dockerfile_stages()[-1], "RUN"):
        if "SECRET_KEY=" in run:
            assert "collectstatic" in run


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip().lstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax: `*` and `?` stay within a folder name, `**` spans any number of folders."""
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.compile(regex)


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves `path` out: a pattern matches it or one of its parent folders (last one wins)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = dockerignore_regex(pattern.removeprefix("!"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            result = not negate
    return result


def test_dockerignore_keeps_what_the_image_runs_and_drops_local_state() -> None:
    patterns = dockerignore_patterns()
    apps = [p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name not in ("tests", "bench")]
    needed = ["manage.py", "pyproject.toml", "uv.lock", "README.md", "templates", "static", *apps]
    needed += [f"docker/{p.name}" for p in DOCKER.iterdir() if p.suffix in (".sh", ".py")]
    for path in needed:
        assert not ignored(path, patterns), f".dockerignore leaves out {path}, which the image needs"
    for path in (
        ".git",
        ".venv",
        ".venv-torch",
        "var",
        "var/secret_key",
        ".env",
        "docker/.env",
        "config/__pycache__/x.pyc",
    ):
        assert ignored(path, patterns), f".dockerignore should leave out {path}"


def test_the_dockerignore_reader_itself() -> None:
    patterns = ["var", "**/.env", "**/__pycache__", "docker/k8s"]
    assert ignored("var/artifacts/x", patterns)
    assert ignored("a/b/.env", patterns) and ignored(".env", patterns)
    assert ignored("docker/k8s/web.yaml", patterns)
    assert not ignored("docker/web.sh", patterns)
    assert not ignored("serving/variables.py", patterns)


# --- compose.yml ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((DOCKER / "compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def test_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"web", "grpc", "worker", "beat", "postgres", "redis", "migrate"} <= set(services)
    images = set()
    for name in (*PROCESSES, "migrate"):
        service = services[name]
        assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
        images.add(service["image"])
        assert service["command"] == [name]
    assert len(images) == 1, "one image for every process"
    assert (ROOT / "docker" / "Dockerfile").exists()


def test_compose_backing_services(compose: dict[str, Any]) -> None:
    services, volumes = compose["services"], compose["volumes"]
    postgres, redis = services["postgres"], services["redis"]
    assert postgres["image"].split(":")[1].split(".")[0].split("-")[0] == "16"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert postgres["environment"]["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
    assert redis["image"].split(":")[1].split(".")[0].split("-")[0] == "7"
    assert redis["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    for service, mount in ((postgres, "/var/lib/postgresql/data"), (redis, "/data")):
        (volume,) = [v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == mount]
        assert volume in volumes, "a named volume: the data outlives the container"
        # Reached on the compose network only.
        assert "ports" not in service


def test_compose_processes_wait_for_healthy_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in PROCESSES:
        depends = services[name]["depends_on"]
        assert depends["postgres"] == {"condition": "service_healthy"}
        assert depends["redis"] == {"condition": "service_healthy"}
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["migrate"]["restart"] == "no"


def test_compose_environment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in (*PROCESSES, "migrate"):
        env = services[name]["environment"]
        assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
        assert env["SECRET_KEY"] == "${SECRET_KEY:?set SECRET_KEY}"
        assert re.fullmatch(
            r"postgres://modeldeck:\$\{POSTGRES_PASSWORD:\?[^}]*\}@postgres:5432/modeldeck", env["DATABASE_URL"]
        )
        assert re.fullmatch(r"redis://redis:6379/\d+", env["REDIS_URL"])
        assert "ALLOWED_HOSTS" in env
        for key, value in env.items():
            # Secrets are interpolated from docker/.env or passed through, never written here.
            if re.search(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY", key):
                assert value is None or str(value).startswith("${"), key
    # The migrate service migrates; the web server does not race it.
    assert services["web"]["environment"]["MODELDECK_MIGRATE_ON_START"] == "false"


def test_compose_variables_are_ones_the_code_reads(compose: dict[str, Any]) -> None:
    sources = "\n".join(path.read_text() for path in ENV_READERS)
    for name in (*PROCESSES, "migrate"):
        for key in compose["services"][name]["environment"]:
            assert re.search(rf"\b{key}\b", sources), f"{name}: nothing reads {key}"


def test_compose_web(compose: dict[str, Any]) -> None:
    web = compose["services"]["web"]
    assert any(str(port).endswith(":8000") for port in web["ports"])
    assert web["healthcheck"]["test"] == ["CMD", "python", "/app/docker/healthcheck.py"]
    assert "start_period" in web["healthcheck"]


def test_compose_grpc(compose: dict[str, Any]) -> None:
    grpc = compose["services"]["grpc"]
    assert any(str(port).endswith(":8001") for port in grpc["ports"])
    assert any(str(port).endswith(":8002") for port in grpc["ports"])  # its /metrics
    assert grpc["healthcheck"]["test"] == ["CMD", "python", "/app/docker/healthcheck.py"]
    assert "start_period" in grpc["healthcheck"]
    # It loads the models it serves from the same artifacts as the web server.
    assert grpc["volumes"] == compose["services"]["web"]["volumes"]


def test_compose_artifacts_and_prometheus_folders(compose: dict[str, Any]) -> None:
    services = compose["services"]
    artifact_volumes = set()
    for name in ("web", "grpc", "worker"):
        mounts = dict(v.split(":")[::-1][:2] for v in services[name]["volumes"])
        artifact_volumes.add(mounts[f"{VAR_DIR}/artifacts"])
    (artifacts,) = artifact_volumes
    assert artifacts in compose["volumes"], "web and worker share one named artifacts volume"
    for name in (*PROCESSES, "migrate"):
        for volume in services[name].get("volumes", []):
            target = volume.split(":")[1]
            # VAR_DIR itself holds the static files collected into the image; the Prometheus folder is per container.
            assert target not in (VAR_DIR, f"{VAR_DIR}/prometheus"), (name, volume)


# --- Kubernetes -----------------------------------------------------------------------------------


def k8s_documents() -> dict[str, list[dict[str, Any]]]:
    files = sorted(K8S.glob("*.yaml"))
    assert files
    documents = {}
    for path in files:
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        assert docs, path.name
        for doc in docs:
            assert {"apiVersion", "kind"} <= set(doc), path.name
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], path.name
        documents[path.name] = docs
    return documents


def k8s_objects(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for docs in k8s_documents().values() for doc in docs if doc["kind"] == kind}


def test_k8s_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    documents = k8s_documents()
    (kustomization,) = documents["kustomization.yaml"]
    assert sorted(kustomization["resources"]) == sorted(
        name for name in documents if name not in ("kustomization.yaml", "secret.template.yaml")
    )
    (image,) = kustomization["images"]
    assert image["name"] == "modeldeck"
    assert image["newTag"] not in ("", "latest")


def pod_specs() -> dict[str, dict[str, Any]]:
    pods = {name: d["spec"]["template"]["spec"] for name, d in k8s_objects("Deployment").items()}
    pods |= {name: d["spec"]["template"]["spec"] for name, d in k8s_objects("Job").items()}
    return pods


def test_k8s_workloads() -> None:
    deployments = k8s_objects("Deployment")
    assert set(deployments) == {f"modeldeck-{p}" for p in PROCESSES}
    jobs = k8s_objects("Job")
    assert set(jobs) == {"modeldeck-migrate"}
    for name, pod in pod_specs().items():
        (container,) = pod["containers"]
        process = name.removeprefix("modeldeck-")
        assert container["args"] == [process], name
        assert container["image"] == "modeldeck"
    assert jobs["modeldeck-migrate"]["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")


def test_k8s_pods_run_as_the_images_non_root_user_with_limits() -> None:
    for name, pod in pod_specs().items():
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert security["runAsUser"] == APP_USER_ID, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"{name}/{container['name']}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), where
            assert {ref.get("configMapRef", ref.get("secretRef"))["name"] for ref in container["envFrom"]} == {
                "modeldeck"
            }, where
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert TMP in mounts, f"{where}: a read-only root needs a writable /tmp"


def test_k8s_writable_folders() -> None:
    """With a read-only root, the folders each process writes are volumes: artifacts shared, the rest per pod."""
    pods = pod_specs()
    for name in ("modeldeck-web", "modeldeck-grpc", "modeldeck-worker"):
        pod = pods[name]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts[f"{VAR_DIR}/artifacts"]["persistentVolumeClaim"]["claimName"] == "modeldeck-artifacts"
        assert "emptyDir" in mounts[f"{VAR_DIR}/prometheus"], "per pod, never shared (files are named by pid)"
    web = pods["modeldeck-web"]
    volumes = {v["name"]: v for v in web["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in web["containers"][0]["volumeMounts"]}
    assert "emptyDir" in mounts[UPLOAD_TEMP_DIR], "uploads are spooled there, beside the read-only root"
    beat = pods["modeldeck-beat"]
    volumes = {v["name"]: v for v in beat["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in beat["containers"][0]["volumeMounts"]}
    assert "emptyDir" in mounts[VAR_DIR], "the schedule file and the Prometheus folder"
    (claim,) = k8s_objects("PersistentVolumeClaim").values()
    assert claim["metadata"]["name"] == "modeldeck-artifacts"
    assert "ReadWriteMany" in claim["spec"]["accessModes"], "web and worker pods on different nodes share it"


def test_k8s_web_probes_and_service() -> None:
    web = k8s_objects("Deployment")["modeldeck-web"]
    (container,) = web["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8000}
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        path = container[probe]["httpGet"]["path"]
        assert container[probe]["httpGet"]["port"] == "http"
        # Served by the data plane, which does not check the Host header (a probe's is the pod IP).
        assert any(pattern.match(path) and "GET" in methods for pattern, methods in ROUTES), path
    assert web["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    service = k8s_objects("Service")["modeldeck-web"]
    assert service["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_k8s_grpc_probes_and_service() -> None:
    grpc = k8s_objects("Deployment")["modeldeck-grpc"]
    (container,) = grpc["spec"]["template"]["spec"]["containers"]
    assert {port["name"]: port["containerPort"] for port in container["ports"]} == {"grpc": 8001, "metrics": 8002}
    # Its Prometheus folder is the pod's own: the pod is scraped on the gRPC process's metrics port.
    annotations = grpc["spec"]["template"]["metadata"]["annotations"]
    assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == ("8002", "/metrics")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        # The standard gRPC health service (grpc.health.v1), which a gRPC probe asks; it takes a number, not a name.
        assert container[probe]["grpc"] == {"port": 8001}, probe
    assert grpc["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    services = k8s_objects("Service")
    assert set(services) == {"modeldeck-web", "modeldeck-grpc"}
    service = services["modeldeck-grpc"]
    assert service["spec"]["selector"] == grpc["spec"]["selector"]["matchLabels"]
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["targetPort"], port["appProtocol"]) == (8001, "grpc", "grpc")
    assert k8s_objects("PodDisruptionBudget")["modeldeck-grpc"]["spec"]["selector"] == grpc["spec"]["selector"]


def test_k8s_beat_is_a_single_replica_replaced_not_rolled() -> None:
    beat = k8s_objects("Deployment")["modeldeck-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


def test_k8s_migrations_run_once_and_pods_wait_for_them() -> None:
    (config,) = k8s_objects("ConfigMap").values()
    assert config["data"]["MODELDECK_MIGRATE_ON_START"] == "false"
    pods = pod_specs()
    for name in ("modeldeck-web", "modeldeck-grpc", "modeldeck-worker"):
        (init,) = pods[name]["initContainers"]
        assert "manage.py migrate --check" in " ".join(init["command"]), name


def test_k8s_configuration() -> None:
    (config,) = k8s_objects("ConfigMap").values()
    (secret,) = k8s_objects("Secret").values()
    assert config["data"]["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
    assert all(isinstance(value, str) for value in config["data"].values()), "ConfigMap values must be strings"
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= set(secret["stringData"])
    for key, value in secret["stringData"].items():
        assert re.search(r"<[^>]+>", value), f"{key}: the template holds placeholders, never a real secret"
    for key in config["data"]:
        assert not re.search(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY", key), f"{key} belongs in the Secret"
    sources = "\n".join(path.read_text() for path in ENV_READERS)
    for key in [*config["data"], *secret["stringData"]]:
        assert re.search(rf"\b{key}\b", sources), f"nothing reads {key}"
