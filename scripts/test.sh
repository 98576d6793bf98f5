#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up the venv, make sure the Docker engine runs, lint, run every test
# (slow, multi-process, Ray and Docker tests included). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/ensure-docker.sh || echo "test: no Docker engine; docker tests will be skipped" >&2
.venv/bin/ruff check .
set +e
.venv/bin/python -m pytest -m "" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$rc"
