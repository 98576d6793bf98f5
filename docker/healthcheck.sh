#!/bin/sh
# Compose healthcheck of a Ray node, head or worker:  docker/healthcheck.sh head|worker
# Healthy means `ray health-check` passed in this Ray session (the GCS answers a client holding the token, and
# this node has joined: `ray start` records the cluster address only then), at most a minute ago, and this
# node's Ray processes still run. `ray health-check` imports Ray (1-2 s of CPU), so it runs once a minute at
# most; the checks in between read /proc and cost nothing, so the interval can be short and start-up fast.
set -eu
role="${1:-worker}"
marker=/tmp/ray/session_latest/chorus-healthy   # a new Ray session (container restart) starts unhealthy

running() { grep -qx "$1" /proc/[0-9]*/comm 2>/dev/null; }

running raylet || { echo "raylet is not running"; exit 1; }
if [ "$role" = head ]; then running gcs_server || { echo "gcs_server is not running"; exit 1; }; fi

if [ -z "$(find "$marker" -mmin -1 2>/dev/null)" ]; then
    ray health-check
    touch "$marker"
fi
