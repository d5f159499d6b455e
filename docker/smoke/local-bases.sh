#!/usr/bin/env bash
# Build, on a host that reaches no image registry, the images docker/Dockerfile starts from, plus one image for the
# smoke test's PostgreSQL and Redis. For `make docker-test` only: where Docker Hub and ghcr.io are reachable, the
# real base images are pulled instead.
#
#   docker/smoke/local-bases.sh        # builds only the images that are missing
#
# - the Dockerfile's `python:3.11.x-slim-bookworm`: Debian bookworm (debootstrap, minbase) with Debian's
#   python3.11, linked from /usr/local/bin as the official image has it;
# - the Dockerfile's `ghcr.io/astral-sh/uv:X`: /uv and /uvx of the Makefile's UV_VERSION, from PyPI's uv wheel;
# - $SMOKE_BACKING_IMAGE (smoke-test.sh names it): the same bookworm with Debian's PostgreSQL and Redis, and
#   docker/smoke/backing-postgres.sh to start the first (docker/smoke/compose.smoke.yml).
set -euo pipefail
cd "$(dirname -- "$0")/../.."

DOCKER=${DOCKER:-/usr/bin/docker}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BACKING_IMAGE=${SMOKE_BACKING_IMAGE:-modeldeck-smoke-backing:local}
python_image=$(sed -n 's/^FROM \(python:[^ ]*\) AS .*/\1/p' docker/Dockerfile | head -n1)
uv_image=$(grep -o 'ghcr\.io/astral-sh/uv:[^ ]*' docker/Dockerfile | head -n1)
uv_version=$(sed -n 's/^UV_VERSION := //p' Makefile)
[ -n "$python_image" ] && [ -n "$uv_image" ] && [ -n "$uv_version" ] || { echo "cannot read the base images" >&2; exit 1; }
[ "${uv_image##*:}" = "$uv_version" ] || { echo "$uv_image is not the Makefile's uv $uv_version" >&2; exit 1; }

have() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
# Where the registry answers, the real image beats a local stand-in.
pulled() { timeout 60 "$DOCKER" pull --quiet "$1" >/dev/null 2>&1; }
work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT

if ! have "$python_image" && ! pulled "$python_image"; then
    echo "building $python_image (debootstrap bookworm)"
    root=$work/rootfs
    debootstrap --variant=minbase --include=python3.11,python3-venv,ca-certificates bookworm "$root" "$MIRROR" \
        >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
    for name in python3.11 python3 python; do ln -sf /usr/bin/python3.11 "$root/usr/local/bin/$name"; done
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | "$DOCKER" import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
        -c 'CMD ["python3"]' - "$python_image" >/dev/null
    rm -rf -- "$root"
fi

if ! have "$uv_image" && ! pulled "$uv_image"; then
    echo "building $uv_image (uv $uv_version from PyPI)"
    python3 -m pip download --quiet --no-deps --only-binary :all: --dest "$work/wheel" "uv==$uv_version"
    python3 -m zipfile -e "$work"/wheel/uv-*.whl "$work/wheel/x"
    mkdir "$work/uv"
    install -m 0755 "$work"/wheel/x/uv-*.data/scripts/uv "$work"/wheel/x/uv-*.data/scripts/uvx "$work/uv/"
    tar -C "$work/uv" -c uv uvx | "$DOCKER" import - "$uv_image" >/dev/null
fi

if ! have "$BACKING_IMAGE"; then
    echo "building $BACKING_IMAGE (PostgreSQL and Redis from Debian)"
    printf '%s\n' "FROM $python_image" \
        'RUN apt-get update && apt-get install -y --no-install-recommends postgresql redis-server \' \
        '    && rm -rf /var/lib/apt/lists/*' \
        'COPY backing-postgres.sh /usr/local/bin/' |
        DOCKER_BUILDKIT=1 "$DOCKER" build --quiet --network host -t "$BACKING_IMAGE" -f - docker/smoke >/dev/null
fi
echo "base images ready: $python_image $uv_image $BACKING_IMAGE"
