#!/bin/sh
# docker/await-head.sh HOST:PORT COMMAND...   Wait until the Ray head's GCS accepts connections, then run COMMAND.
# A worker that starts while its head is down (after a head restart) waits here instead of failing and climbing
# Docker's restart back-off; it says so every minute, and gives up after CHORUS_HEAD_WAIT_S (default 600 s).
set -eu
target="$1"; shift
host="${target%:*}"; port="${target##*:}"
limit="${CHORUS_HEAD_WAIT_S:-600}"
waited=0
until python -c "import socket, sys; socket.create_connection(('$host', $port), 2).close()" 2>/dev/null; do
    if [ "$waited" -ge "$limit" ]; then
        echo "await-head: $target did not answer within $limit s" >&2
        exit 1
    fi
    [ $((waited % 60)) -eq 0 ] && echo "await-head: waiting for the Ray head at $target" >&2
    sleep 1
    waited=$((waited + 1))
done
exec "$@"
