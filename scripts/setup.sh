#!/usr/bin/env bash
# Set up chorus on a fresh machine: a Python 3.11 venv in .venv with the pinned dependencies and the `chorus` CLI.
# Idempotent: a second run with unchanged pins only checks a stamp.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "setup: Python 3.11 is required (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
    exit 2
fi
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.chorus-installed
want="$(cat pyproject.toml requirements.txt constraints.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing pinned dependencies (first time: a few minutes)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -c constraints.txt -e '.[dev]'
    echo "$want" > "$stamp"
fi
.venv/bin/python -c 'import tensorflow, tf_keras, ray, pypianoroll, music21, boto3, docker, moto.server' 2>/dev/null \
    || { echo "setup: the venv is broken; delete .venv and run again" >&2; exit 1; }
echo "setup: ready (.venv/bin/chorus)"
