#!/usr/bin/env bash
# Head-loss figures on a local compose cluster (2 workers): the main job's search with the head killed once while
# its trials train and once while it exports, then the same search again without a fault. Prints the time from a
# kill to the search resubmitted and to training running again, the step each trial resumed from (its newest
# complete checkpoint), and the extra wall time the two kills cost. It runs the Docker test that asserts the same
# run (tests/test_docker.py), so figure and check cannot drift apart. About 10 minutes on 2 cores.
#
#   bash benchmarks/head_loss.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
bash scripts/ensure-docker.sh
exec .venv/bin/python -m pytest tests/test_docker.py -m "" -s -q \
    -k test_head_killed_in_training_and_in_export_then_the_main_job_runs_again "$@"
