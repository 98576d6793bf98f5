#!/usr/bin/env bash
# The main job. Builds the image (falling back to a local base image when no registry is reachable), makes the
# Ray auth token, starts a Ray head and N workers, runs the default search as a one-shot job and waits for it.
# Exits with the search's status and leaves the cluster running (stop it with scripts/down.sh).
#
#   scripts/up.sh                      # 2 workers, default search, results in ./results/<experiment>/
#   scripts/up.sh --workers 4          # or CHORUS_WORKERS=4
#   scripts/up.sh --gpu                # GPU image + docker-compose.gpu.yml (untested on a GPU host)
#   scripts/up.sh --cluster-only       # head + workers, no search (then submit your own, see docs/search.md)
# Settings are environment variables read by docker-compose.yml: CHORUS_DATA_DIR (your MIDI/.npy folder),
# CHORUS_RESULTS_DIR, CHORUS_DASHBOARD_PORT, CHORUS_WORKER_CPUS, CHORUS_JOB (the job's command line), ...
set -euo pipefail
cd "$(dirname "$0")/.."

WORKERS="${CHORUS_WORKERS:-2}"
GPU=0
JOB=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --workers) WORKERS="$2"; shift ;;
        --workers=*) WORKERS="${1#*=}" ;;
        --gpu) GPU=1 ;;
        --cluster-only) JOB=0 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "up.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

source docker/ids.sh
# The watchdog reads the Docker socket as a member of its group (see docker-compose.yml).
SOCK="${CHORUS_DOCKER_SOCKET:-/var/run/docker.sock}"
export CHORUS_DOCKER_GID="${CHORUS_DOCKER_GID:-$(stat -c %g "$SOCK" 2>/dev/null || echo 0)}"
COMPOSE=(docker/compose.sh)
if [[ $GPU = 1 ]]; then
    COMPOSE+=(-f docker-compose.yml -f docker-compose.gpu.yml)
    docker/build.sh --gpu
else
    docker/build.sh
fi
docker/token.sh >/dev/null

# Bind-mounted folders must exist before compose starts, or Docker creates them owned by root.
RESULTS="${CHORUS_RESULTS_DIR:-./results}"
mkdir -p "$RESULTS" "${CHORUS_DATA_DIR:-./.cache/user-data}"
if [[ "$(id -u)" = 0 ]]; then chown "$CHORUS_UID:$CHORUS_GID" "$RESULTS"; fi

if [[ $JOB = 0 ]]; then
    "${COMPOSE[@]}" up -d --scale ray-worker="$WORKERS" ray-head ray-worker watchdog tensorboard
    echo "up.sh: cluster is up; dashboard on http://127.0.0.1:${CHORUS_DASHBOARD_PORT:-8265} (token: $(docker/token.sh)),"
    echo "       TensorBoard on http://127.0.0.1:${CHORUS_TENSORBOARD_PORT:-6006}"
    exit 0
fi

# Compose starts the job once the head and the workers are healthy; follow its logs until it exits.
"${COMPOSE[@]}" up -d --scale ray-worker="$WORKERS"
CID="$("${COMPOSE[@]}" ps -q search)"
"${COMPOSE[@]}" logs -f search &
LOGS=$!
RC="$(docker wait "$CID")"
sleep 1; kill "$LOGS" 2>/dev/null || true; wait "$LOGS" 2>/dev/null || true
echo "up.sh: the search exited with status $RC; results in $RESULTS/. The cluster is still up: scripts/down.sh stops it."
exit "$RC"
