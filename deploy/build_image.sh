#!/usr/bin/env bash
# Build the tflm-pipelines image and run it, on a machine with no image registry (as root):
#   1. a Docker daemon (Debian's docker.io) unless one answers already;
#   2. a base image made from Debian packages (debootstrap, imported as local/debian:bookworm)
#      unless BASE names another image that is present;
#   3. docker build with BASE, and the host's CA bundle for pip in the build stage;
#   4. checks in containers: non-root user, the kernels' host build found prebuilt,
#      `validate configs/kws.yaml`, and a short real run (deploy/smoke.yaml) with its work dir
#      and SQLite tracking store in a mounted folder; then the same run against an MLflow
#      server in a second container, the shape of the nightly jobs.
# Wall times and the image size are printed at the end.
#
#   sudo deploy/build_image.sh                 # everything
#   IMAGE=me/tflm:dev SKIP_SERVER_RUN=1 deploy/build_image.sh
#
# Environment: IMAGE (tflm-pipelines:latest), BASE (local/debian:bookworm), MIRROR (the host's
# Debian mirror), WORK (/var/tmp/tflm-deploy: rootfs, logs, the mounted runs folder),
# CA_BUNDLE (/etc/ssl/certs/ca-certificates.crt), SKIP_SERVER_RUN.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${IMAGE:-tflm-pipelines:latest}
BASE=${BASE:-local/debian:bookworm}
WORK=${WORK:-/var/tmp/tflm-deploy}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
APP_UID=10001 # the Dockerfile's USER
NETWORK=tflm-deploy
SERVER=tflm-deploy-mlflow
declare -a FIGURES=()

step() { printf '\n== %s\n' "$*"; }
die() { printf 'build_image.sh: %s\n' "$*" >&2; exit 1; }

# Run "$@" and record its wall time under the name $1 (then shifted off).
timed() {
    local name=$1 start end
    shift
    start=$(date +%s)
    "$@"
    end=$(date +%s)
    FIGURES+=("$name: $((end - start)) s")
}

apt_install() {
    command -v "$1" >/dev/null && return
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

start_daemon() {
    docker info >/dev/null 2>&1 && return
    apt_install dockerd docker.io
    mkdir -p "$WORK"
    step "starting dockerd (log: $WORK/dockerd.log)"
    nohup dockerd >"$WORK/dockerd.log" 2>&1 &
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && return
        sleep 1
    done
    die "dockerd did not answer within 60 s; see $WORK/dockerd.log"
}

# The first Debian mirror the host's apt sources name (deb822 or one-line format).
host_mirror() {
    local sources
    sources=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null || true)
    { grep -E '^URIs:' <<<"$sources" | awk '{print $2}'
      grep -E '^deb ' <<<"$sources" | sed -E 's/^deb (\[[^]]*\] )?//' | awk '{print $1}'
    } | grep -v -- '-security' | head -n 1
}

make_base() {
    docker image inspect "$BASE" >/dev/null 2>&1 && return
    [[ $BASE == local/debian:bookworm ]] || die "base image $BASE is not present (docker pull it, or unset BASE)"
    apt_install debootstrap debootstrap
    local mirror=${MIRROR:-$(host_mirror)} rootfs="$WORK/rootfs"
    [[ -n $mirror ]] || die "no Debian mirror in the host's apt sources; set MIRROR"
    step "debootstrap bookworm from $mirror"
    rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
        die "debootstrap failed; see $WORK/debootstrap.log"
    tar -C "$rootfs" -c . | docker import - "$BASE" >/dev/null
    rm -rf "$rootfs"
}

build() {
    step "docker build -t $IMAGE --build-arg BASE=$BASE ."
    if [[ -s $CA_BUNDLE ]]; then cp "$CA_BUNDLE" "$REPO/deploy/ca/ca-certificates.crt"; fi
    trap 'rm -f "$REPO/deploy/ca/ca-certificates.crt"' EXIT
    # The classic builder: no buildx needed, and the CA file is a plain build-context file.
    DOCKER_BUILDKIT=0 docker build --build-arg BASE="$BASE" -t "$IMAGE" "$REPO"
}

check_image() {
    step "the image runs as a non-root user, with the kernels prebuilt"
    local uid
    uid=$(docker run --rm --entrypoint id "$IMAGE" -u)
    [[ $uid != 0 ]] || die "the image runs as root"
    # The runtime stage has no compiler: this finds the library built in, or fails.
    docker run --rm --entrypoint python "$IMAGE" -m tflm_ext.host_build
    step "validate configs/kws.yaml"
    docker run --rm "$IMAGE" validate configs/kws.yaml >/dev/null
}

# A short real run: work dir and SQLite store in a mounted host folder, read-only root.
smoke_run() {
    local runs="$WORK/runs"
    rm -rf "$runs"
    install -d -o "$APP_UID" -g "$APP_UID" "$runs"
    step "run deploy/smoke.yaml, runs/ mounted from $runs"
    docker run --rm --read-only --tmpfs /tmp \
        -v "$runs:/app/runs" -v "$REPO/deploy/smoke.yaml:/app/deploy/smoke.yaml:ro" \
        "$IMAGE" run deploy/smoke.yaml --no-progress
    [[ -s $runs/smoke/mlflow.db ]] || die "no tracking store at $runs/smoke/mlflow.db"
}

# The nightly shape: an MLflow server (same image) with a SQL store, the run logging to it.
server_run() {
    local store="$WORK/mlflow-server"
    rm -rf "$store"
    install -d -o "$APP_UID" -g "$APP_UID" "$store"
    docker network inspect "$NETWORK" >/dev/null 2>&1 || docker network create "$NETWORK" >/dev/null
    docker rm -f "$SERVER" >/dev/null 2>&1 || true
    step "mlflow server in a container, then run deploy/smoke.yaml --tracking-uri http://$SERVER:5000"
    docker run -d --name "$SERVER" --network "$NETWORK" -v "$store:/store" --entrypoint mlflow \
        "$IMAGE" server --host 0.0.0.0 --port 5000 --backend-store-uri sqlite:////store/mlflow.db \
        --artifacts-destination /store/artifacts --allowed-hosts "$SERVER:5000,localhost:5000" \
        --workers 1 >/dev/null # uvicorn's supervisor kills workers slow to start on a busy host
    trap 'docker rm -f "$SERVER" >/dev/null 2>&1; rm -f "$REPO/deploy/ca/ca-certificates.crt"' EXIT
    local up=
    for _ in $(seq 120); do
        docker exec "$SERVER" python -c \
            "import urllib.request; urllib.request.urlopen('http://localhost:5000/health')" \
            >/dev/null 2>&1 && up=1 && break
        sleep 1
    done
    [[ -n $up ]] || die "the MLflow server did not answer; docker logs $SERVER"
    docker run --rm --read-only --tmpfs /tmp --network "$NETWORK" --tmpfs /app/runs:uid=$APP_UID \
        -v "$REPO/deploy/smoke.yaml:/app/deploy/smoke.yaml:ro" \
        "$IMAGE" run deploy/smoke.yaml --no-progress --tracking-uri "http://$SERVER:5000"
    [[ -s $store/mlflow.db ]] || die "the server's store $store/mlflow.db is empty"
    docker rm -f "$SERVER" >/dev/null
}

main() {
    [[ $(id -u) == 0 ]] || die "run as root (the Docker daemon and debootstrap need it)"
    mkdir -p "$WORK"
    timed "daemon" start_daemon
    timed "base image ($BASE)" make_base
    timed "docker build" build
    local size
    size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
    FIGURES+=("image size: $((size / 1000000)) MB")
    timed "checks (user, kernels, validate)" check_image
    timed "smoke run, SQLite store in a volume" smoke_run
    [[ -n ${SKIP_SERVER_RUN:-} ]] || timed "smoke run against an MLflow server container" server_run
    step "figures"
    printf '%s\n' "${FIGURES[@]}"
}

main "$@"
