#!/usr/bin/env bash
# Start the Docker engine if it is installed but not running (CI machines boot without it sometimes).
# Exit 0 when an engine answers, 1 when none can be had.
set -uo pipefail
docker info >/dev/null 2>&1 && exit 0
command -v dockerd >/dev/null 2>&1 || { echo "ensure-docker: dockerd is not installed" >&2; exit 1; }
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-docker: the engine is not running and starting it needs root" >&2
    exit 1
fi
echo "ensure-docker: starting dockerd" >&2
(service docker start || systemctl start docker || (nohup dockerd >/var/log/dockerd.log 2>&1 &)) >/dev/null 2>&1
for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && exit 0
    sleep 1
done
echo "ensure-docker: dockerd did not come up within 60 s" >&2
exit 1
