#!/usr/bin/env bash
# Make the Ray auth token on first run: ${CHORUS_SECRETS_DIR:-.secrets}/ray_token (git-ignored), and print its path.
# The containers read it as the compose secret /run/secrets/ray_token (RAY_AUTH_TOKEN_PATH); from the host use
#   RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=.secrets/ray_token chorus submit --address http://127.0.0.1:8265 -- ...
set -euo pipefail
cd "$(dirname "$0")/.."
source docker/ids.sh
DIR="${CHORUS_SECRETS_DIR:-.secrets}"
TOKEN="$DIR/ray_token"
if [[ ! -s "$TOKEN" ]]; then
    mkdir -p "$DIR"
    chmod 700 "$DIR"
    (umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$TOKEN")
    echo "token.sh: generated a new Ray auth token in $TOKEN" >&2
fi
# A compose secret is a bind mount that keeps the host file's owner and mode: the container user must own it.
# (The folder stays 0700, so on the host only you can read it.)
if [[ "$(id -u)" = 0 ]]; then chown "$CHORUS_UID:$CHORUS_GID" "$TOKEN"; fi
chmod 600 "$TOKEN"
echo "$TOKEN"
