"""The elastic cluster without a cloud: Ray's autoscaler on the fake multi-node provider, with cluster/aws.yaml's
node types (head CPU 0, CPU workers 0..N, GPU workers declared). A search with more trials than workers makes the
autoscaler add workers; the search finishes; idle workers are removed after the (shortened) idle timeout."""
from __future__ import annotations

import csv
import shutil
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from chorus.cluster.elastic import AWS_YAML, HEAD_TYPE, ElasticSettings, elastic_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_the_config_has_aws_node_types_and_limits():
    aws = yaml.safe_load(AWS_YAML.read_text())
    cfg = elastic_config(ElasticSettings(idle_timeout_minutes=0.1), "127.0.0.1:1")
    types = cfg["available_node_types"]
    assert set(types) == {HEAD_TYPE, "cpu_worker", "gpu_worker"}
    assert types[HEAD_TYPE]["resources"] == aws["available_node_types"]["head"]["resources"] == {"CPU": 0}
    for name in ("cpu_worker", "gpu_worker"):
        assert types[name]["max_workers"] == aws["available_node_types"][name]["max_workers"]
        assert types[name]["min_workers"] == 0
    assert types["gpu_worker"]["resources"]["GPU"] == 1 and "GPU" not in types["cpu_worker"]["resources"]
    assert cfg["idle_timeout_minutes"] == 0.1 and cfg["provider"]["gcs_address"] == "127.0.0.1:1"
    assert elastic_config(ElasticSettings(), "x:1")["idle_timeout_minutes"] == aws["idle_timeout_minutes"]


def test_a_search_makes_the_autoscaler_add_workers_and_idle_ones_go(tmp_path, data_cache, monkeypatch):
    import ray

    from chorus.cluster.elastic import start_elastic_cluster, worker_counts
    from chorus.cluster.search import run_search
    from chorus.cluster.search_config import load_search

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_AIR_NEW_OUTPUT", "0")
    tmp = tempfile.mkdtemp(prefix="chorus-el-", dir="/tmp")  # short: Ray socket paths live under it
    cluster = start_elastic_cluster(tmp, ElasticSettings(max_cpu_workers=2, idle_timeout_minutes=0.1))
    seen: list[dict[str, int]] = []
    done = threading.Event()
    try:
        monkeypatch.setenv("RAY_ADDRESS", cluster.address)
        ray.init(address=cluster.address)
        assert worker_counts() == {"head": 1}  # nothing runs before there is demand

        def watch():
            while not done.is_set():
                seen.append(worker_counts())
                time.sleep(0.5)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        spec = tmp_path / "search.yaml"
        spec.write_text(textwrap.dedent(f"""\
            experiment: elastic
            base: configs/tiny.yaml
            space: {{train.g_lr: {{grid: [0.001, 0.0005, 0.0002]}}}}
            resources: {{cpus: 1}}
            max_concurrent_trials: 2
            storage_path: {tmp_path / 'store'}
            results_dir: {tmp_path / 'results'}
            data: {{cache_dir: {data_cache}}}
            train: {{steps: 2, eval_every: 2, checkpoint_every: 2, sample_every: 2, log_every: 1}}
            """))
        outcome = run_search(load_search(spec))
        assert outcome.num_errors == 0 and outcome.num_trials == 3
        with open(Path(outcome.results_path) / "trials.csv") as f:
            assert [r["status"] for r in csv.DictReader(f)] == ["TERMINATED"] * 3
        # The head has no CPU: every trial ran on a worker the autoscaler added, up to the limit of 2.
        peak = max(s.get("cpu_worker", 0) for s in seen)
        assert peak == 2, seen
        # Not asserted: whether a GPU worker started. Ray 2.60 only deprioritises GPU node types for CPU-only
        # demand, and between trials it sometimes starts one (the README's cost trap); it is printed here.
        print(f"gpu_worker nodes seen at most: {max(s.get('gpu_worker', 0) for s in seen)}")
        # Idle workers go after the (shortened) idle timeout of 6 s.
        deadline = time.monotonic() + 120
        while worker_counts() != {"head": 1} and time.monotonic() < deadline:
            time.sleep(1)
        assert worker_counts() == {"head": 1}
    finally:
        done.set()
        ray.shutdown()
        cluster.stop()
    from chorus.cluster.elastic import cluster_pids

    assert cluster_pids(tmp) == []
    shutil.rmtree(tmp, ignore_errors=True)
