#!/usr/bin/env bash
# Run Docker Compose, whichever is installed: the `docker compose` plugin (v2) or `docker-compose` (v1.29).
# docker/compose.sh up -d ...   is   docker compose up -d ...   (from the repo root, where docker-compose.yml is)
set -euo pipefail
if docker compose version >/dev/null 2>&1; then
    exec docker compose "$@"
elif command -v docker-compose >/dev/null; then
    exec docker-compose "$@"
else
    echo "compose.sh: neither 'docker compose' nor 'docker-compose' is installed" >&2
    exit 127
fi
