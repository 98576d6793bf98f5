#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up the venv, make sure the Docker engine runs, lint, run every test
# (slow, multi-process, Ray and Docker tests included). Extra arguments go to pytest.
# With CI=true nothing may be skipped: no Docker engine fails the run here, and tests/conftest.py turns any
# skipped test into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! bash scripts/ensure-docker.sh; then
    if [ "${CI:-}" = "true" ]; then
        echo "test: CI=true and no Docker engine can be had; the docker tests would not run: failing" >&2
        exit 1
    fi
    echo "test: no Docker engine; the docker tests will be skipped (each says why)" >&2
fi
.venv/bin/ruff check .
set +e
.venv/bin/python -m pytest -m "" --durations=20 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$rc"
