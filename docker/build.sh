#!/usr/bin/env bash
# Build the chorus image on any host: with a registry, behind an intercepting HTTPS proxy, or with neither.
#
#   docker/build.sh                 # CPU image chorus:cpu (what docker-compose.yml runs)
#   docker/build.sh --gpu           # GPU image chorus:gpu (the same Dockerfile with TF_EXTRA=[and-cuda])
#   docker/build.sh --wheelhouse    # download the wheels on the host, install them in the image with --no-index
#
# What it decides for you (each can be forced by an environment variable):
#   base image   CHORUS_BASE_IMAGE, else python:3.11-slim if present or pullable, else the local debootstrap
#                base chorus-base:bookworm-py311 (built once by docker/make-base-image.sh, then reused)
#   CA bundle    CHORUS_CA_BUNDLE, else the host's bundle if there is one; pip in the build trusts it, so a
#                proxy whose CA only the host trusts works. CHORUS_CA_BUNDLE=none turns it off.
#   wheelhouse   --wheelhouse or CHORUS_WHEELHOUSE=DIR: `pip download` on the host into DIR (default .whl/),
#                served on 127.0.0.1:${CHORUS_WHEELHOUSE_PORT:-8731} during the build, which installs from it
#                with no index at all
#   user ids     CHORUS_UID/CHORUS_GID, else yours (1000:1000 if you are root: containers never run as root)
#   image tag    CHORUS_IMAGE, else chorus:cpu (chorus:gpu with --gpu)
# Extra arguments after -- go to `docker build` (e.g. -- --no-cache).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO="$PWD"

GPU=0
WHEELHOUSE="${CHORUS_WHEELHOUSE:-}"
EXTRA=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --gpu) GPU=1 ;;
        --wheelhouse) WHEELHOUSE="${WHEELHOUSE:-$REPO/.whl}" ;;
        --wheelhouse=*) WHEELHOUSE="${1#*=}" ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "build.sh: $*" >&2; }

DOCKERFILE=docker/Dockerfile
if [[ $GPU = 1 ]]; then
    TF_EXTRA="[and-cuda]"
    IMAGE="${CHORUS_IMAGE:-chorus:gpu}"
else
    TF_EXTRA=""
    IMAGE="${CHORUS_IMAGE:-chorus:cpu}"
fi
DEFAULT_BASE=python:3.11-slim
LOCAL_BASE=chorus-base:bookworm-py311

# --- user ids: files the containers write to ./results belong to whoever runs this ---------------------------
source "$REPO/docker/ids.sh"

# --- base image -------------------------------------------------------------------------------------------
if [[ -n "${CHORUS_BASE_IMAGE:-}" ]]; then
    BASE="$CHORUS_BASE_IMAGE"
elif docker image inspect "$DEFAULT_BASE" >/dev/null 2>&1; then
    BASE="$DEFAULT_BASE"
elif timeout "${CHORUS_PULL_TIMEOUT:-120}" docker pull -q "$DEFAULT_BASE" >/dev/null 2>&1; then
    BASE="$DEFAULT_BASE"
else
    log "$DEFAULT_BASE cannot be pulled (no registry?): using the local base $LOCAL_BASE"
    "$REPO/docker/make-base-image.sh" "$LOCAL_BASE"
    BASE="$LOCAL_BASE"
fi

# --- build inputs in docker/build/ (git-ignored; the Dockerfile copies it into the deps stage only) -----------
INPUTS="$REPO/docker/build"
mkdir -p "$INPUTS"

CA="${CHORUS_CA_BUNDLE:-}"
if [[ -z "$CA" ]]; then
    for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
        [[ -s "$f" ]] && { CA="$f"; break; }
    done
fi
if [[ -n "$CA" && "$CA" != none ]]; then
    # Copy only when it changed: the layer cache keys on the file's content, but this keeps mtimes quiet too.
    cmp -s "$CA" "$INPUTS/ca-certificates.crt" 2>/dev/null || cp "$CA" "$INPUTS/ca-certificates.crt"
    log "pip in the build trusts the CA bundle $CA"
else
    rm -f "$INPUTS/ca-certificates.crt"
fi

NETWORK=()
WHEELHOUSE_URL=""
if [[ -n "$WHEELHOUSE" ]]; then
    mkdir -p "$WHEELHOUSE"
    if [[ -x "$REPO/.venv/bin/python" ]]; then PY="$REPO/.venv/bin/python"; else PY=python3; fi
    REQS="$(mktemp)"
    "$PY" - "$REPO/requirements.txt" "$GPU" >"$REQS" <<'EOF'
import sys
deps = [line.strip() for line in open(sys.argv[1]) if line.strip() and not line.startswith("#")]
if sys.argv[2] == "1":  # the GPU image installs TensorFlow's CUDA wheels too
    deps = [d.replace("tensorflow==", "tensorflow[and-cuda]==") if d.startswith("tensorflow==") else d for d in deps]
print("\n".join(deps + ["pip==26.3", "setuptools==80.9.0"]))
EOF
    log "downloading wheels into $WHEELHOUSE (Linux x86-64, CPython 3.11)"
    # Wheels for the image's platform (x86-64 glibc 2.36, CPython 3.11), whatever the host's Python is. pip
    # matches --platform tags exactly, so every manylinux tag the image accepts is listed.
    PLATFORMS=()
    for v in $(seq 36 -1 17); do PLATFORMS+=(--platform "manylinux_2_${v}_x86_64"); done
    PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
    "$PY" -m pip download --quiet --dest "$WHEELHOUSE" --only-binary=:all: "${PLATFORMS[@]}" \
        --python-version 3.11 --implementation cp --abi cp311 -r "$REQS" -c "$REPO/constraints.txt"
    rm -f "$REQS"
    # Serve them on the host's loopback for the length of the build; the build shares the host's network.
    # A fixed port keeps the build argument, and so the layer cache, stable from one build to the next.
    PORT="${CHORUS_WHEELHOUSE_PORT:-8731}"
    "$PY" -m http.server "$PORT" --bind 127.0.0.1 --directory "$WHEELHOUSE" >/dev/null 2>&1 &
    SERVER=$!
    trap 'kill $SERVER 2>/dev/null || true' EXIT
    for _ in $(seq 50); do
        "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/')" 2>/dev/null && break
        sleep 0.2
    done
    NETWORK=(--network host)
    WHEELHOUSE_URL="http://127.0.0.1:$PORT/"
fi

# --- build ---------------------------------------------------------------------------------------------------
log "building $IMAGE from $DOCKERFILE on $BASE (UID=$CHORUS_UID GID=$CHORUS_GID${WHEELHOUSE_URL:+, wheels from $WHEELHOUSE})"
docker build -f "$DOCKERFILE" -t "$IMAGE" \
    --build-arg BASE_IMAGE="$BASE" \
    --build-arg UID="$CHORUS_UID" --build-arg GID="$CHORUS_GID" \
    --build-arg WHEELHOUSE_URL="$WHEELHOUSE_URL" --build-arg TF_EXTRA="$TF_EXTRA" ${NETWORK[@]+"${NETWORK[@]}"} \
    ${EXTRA[@]+"${EXTRA[@]}"} \
    "$REPO"
log "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.2f GB", $1/1e9}'))"
