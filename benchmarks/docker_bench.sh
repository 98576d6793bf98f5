#!/usr/bin/env bash
# Container benchmark: build times, image size, cluster start-up, and (once `chorus search` exists) the main job.
#
#   benchmarks/docker_bench.sh            # warm build, code-only rebuild, size, `up` -> healthy, job wall time
#   benchmarks/docker_bench.sh --cold     # also a cold build (docker build --no-cache: downloads every wheel)
#   benchmarks/docker_bench.sh --no-search
# Prints one "name: value" line per figure. Uses its own compose project and removes it (and its volume) at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

COLD=0
SEARCH=1
for a in "$@"; do
    case "$a" in
        --cold) COLD=1 ;;
        --no-search) SEARCH=0 ;;
        *) echo "docker_bench.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
report() { printf '%-40s %s\n' "$1:" "$2"; }

TMP="$(mktemp -d)"
PROJECT="chorusbench$$"
export COMPOSE_PROJECT_NAME="$PROJECT" CHORUS_RESULTS_DIR="$TMP/results" CHORUS_SECRETS_DIR="$TMP/secrets" \
       CHORUS_DATA_DIR="$TMP/data" CHORUS_DASHBOARD_PORT="${CHORUS_DASHBOARD_PORT:-18265}"
cleanup() {
    docker/compose.sh down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true
    docker rmi "chorus-bench-rebuild:$$" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# --- builds -------------------------------------------------------------------------------------------------
if [[ $COLD = 1 ]]; then
    t=$(now); docker/build.sh -- --no-cache >"$TMP/cold.log" 2>&1; report "cold build (no cache) s" "$(since "$t")"
fi
t=$(now); docker/build.sh >"$TMP/warm.log" 2>&1; report "warm build (nothing changed) s" "$(since "$t")"

# A code-only change, in a copy of the repo so that the work tree stays untouched.
mkdir "$TMP/repo"
tar -C "$REPO" --exclude=.git --exclude=.venv --exclude=.cache --exclude=.secrets --exclude=.whl --exclude=runs \
    --exclude=results -c . | tar -C "$TMP/repo" -x
echo "PROBE = '$(date +%s%N)'" >"$TMP/repo/trainer/_bench_probe.py"
t=$(now); CHORUS_IMAGE="chorus-bench-rebuild:$$" "$TMP/repo/docker/build.sh" >"$TMP/rebuild.log" 2>&1
report "rebuild after a code-only change s" "$(since "$t")"
report "image size GB" "$(docker image inspect -f '{{.Size}}' "${CHORUS_IMAGE:-chorus:cpu}" | awk '{printf "%.2f", $1/1e9}')"

# --- cluster start-up ------------------------------------------------------------------------------------------
mkdir -p "$CHORUS_RESULTS_DIR" "$CHORUS_DATA_DIR"
source docker/ids.sh
[[ "$(id -u)" = 0 ]] && chown "$CHORUS_UID:$CHORUS_GID" "$CHORUS_RESULTS_DIR"
chmod o+x "$TMP"
docker/token.sh >/dev/null
healthy() {  # all containers of a service healthy, and as many as asked
    local ids; ids=$(docker/compose.sh ps -q "$1")
    [[ $(echo "$ids" | grep -c .) -eq $2 ]] || return 1
    for c in $ids; do [[ $(docker inspect -f '{{.State.Health.Status}}' "$c") = healthy ]] || return 1; done
}
t=$(now)
docker/compose.sh up -d --scale ray-worker=2 ray-head ray-worker >"$TMP/up.log" 2>&1
until healthy ray-head 1 && healthy ray-worker 2; do sleep 0.5; done
report "docker compose up -> healthy (2 workers) s" "$(since "$t")"

# --- the main job ----------------------------------------------------------------------------------------------
if [[ $SEARCH = 1 && -f cluster/search.py ]]; then
    t=$(now)
    docker/compose.sh up -d --scale ray-worker=2 search >>"$TMP/up.log" 2>&1
    CID=$(docker/compose.sh ps -q search)
    # Not the first training step itself: the first "step N" line in the logs, which the trainer prints after
    # train.log_every iterations (so it includes container start, Ray, data, model, tracing and those iterations).
    first=""
    while [[ -z "$first" && $(docker inspect -f '{{.State.Running}}' "$CID") = true ]]; do
        docker logs "$CID" 2>&1 | grep -qiE '\bstep[ =:]+[0-9]+' && first=$(since "$t")
        sleep 1
    done
    rc=$(docker wait "$CID")
    report "search: up -> first logged step line (after train.log_every iterations) s" \
        "${first:-n/a (no step line seen)}"
    report "search: wall time s (exit $rc)" "$(since "$t")"
else
    report "search" "skipped (needs cluster/search.py)"
fi
