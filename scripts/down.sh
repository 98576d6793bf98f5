#!/usr/bin/env bash
# Stop the chorus cluster started by scripts/up.sh (or docker compose up).
#   scripts/down.sh          # remove the containers and the network; keep the shared volume (checkpoints, cache)
#   scripts/down.sh -v       # also remove the shared volume
# ./results stays on the host either way.
set -euo pipefail
cd "$(dirname "$0")/.."
exec docker/compose.sh -f docker-compose.yml -f docker-compose.gpu.yml down --remove-orphans "$@"
