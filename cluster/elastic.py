"""A local elastic Ray cluster: Ray's autoscaler with its fake multi-node provider, on the node types of
cluster/aws.yaml, so autoscaling can be tried and tested without a cloud.

The head has `CPU: 0` (as on EC2) and runs the autoscaler; "workers" are extra raylets on this machine that the
autoscaler starts when trials wait for CPUs and removes after `idle_timeout_minutes`. GPU workers are declared as on
EC2 but their GPUs are fake: the autoscaler starts one only for a search that asks for `gpus`, and TensorFlow
would still run on the CPU there.

Ray's own helper (`ray.cluster_utils.AutoscalingCluster`) runs `ray stop --force`, which kills every Ray process on
the machine, and reads a defaults file that the 2.60 wheel does not ship. This module starts the head itself, on
its own port and temp dir, with a complete config, and stops only the processes of that temp dir.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chorus.cluster.launcher import free_port
from chorus.cluster.ray_private import FAKE_PROVIDER
from chorus.errors import InputError
from chorus.files import write_text_atomic

AWS_YAML = Path(__file__).resolve().parent / "aws.yaml"
HEAD_TYPE = "ray.head.default"  # the fake provider's fixed name for the head node type
STATE_FILE = "elastic.json"


@dataclass
class ElasticSettings:
    max_cpu_workers: int | None = None  # None: cluster/aws.yaml's cpu_worker max_workers
    cpus_per_worker: int = 1  # CPUs each fake worker offers (EC2 detects them from the instance type)
    object_store_bytes: int = 256 * 1024**2
    max_gpu_workers: int | None = None  # None: aws.yaml's gpu_worker max_workers (declared, fake GPUs)
    idle_timeout_minutes: float | None = None  # None: aws.yaml's idle_timeout_minutes
    update_interval_s: int = 1  # seconds: how often the autoscaler looks at demand


def elastic_config(settings: ElasticSettings, gcs_address: str, aws_yaml: Path = AWS_YAML) -> dict[str, Any]:
    """The autoscaler config: aws.yaml's node types and limits, the fake provider, nothing to ssh or rsync."""
    aws = yaml.safe_load(aws_yaml.read_text())
    types = aws["available_node_types"]
    cpu, gpu = types["cpu_worker"], types["gpu_worker"]
    max_cpu = settings.max_cpu_workers if settings.max_cpu_workers is not None else cpu["max_workers"]
    max_gpu = settings.max_gpu_workers if settings.max_gpu_workers is not None else gpu["max_workers"]
    # The fake provider passes CPU, GPU and object_store_memory to the raylet it starts (not `memory`).
    worker = {"object_store_memory": settings.object_store_bytes}
    idle = settings.idle_timeout_minutes
    return {
        "cluster_name": f"{aws['cluster_name']}-elastic",
        "max_workers": max_cpu + max_gpu,
        "upscaling_speed": aws.get("upscaling_speed", 1.0),
        "idle_timeout_minutes": idle if idle is not None else aws["idle_timeout_minutes"],
        "provider": {
            # "external" loads the provider class by name and needs no defaults file.
            "type": "external", "module": FAKE_PROVIDER, "gcs_address": gcs_address,
            "use_node_id_as_ip": True, "disable_node_updaters": True, "disable_launch_config_check": True,
        },
        "head_node_type": HEAD_TYPE,
        "available_node_types": {
            HEAD_TYPE: {"resources": dict(types["head"]["resources"]), "node_config": {}, "max_workers": 0},
            "cpu_worker": {"resources": {"CPU": settings.cpus_per_worker, **worker}, "node_config": {},
                           "min_workers": cpu.get("min_workers", 0), "max_workers": max_cpu},
            "gpu_worker": {"resources": {"CPU": settings.cpus_per_worker, "GPU": 1, **worker}, "node_config": {},
                           "min_workers": gpu.get("min_workers", 0), "max_workers": max_gpu},
        },
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


@dataclass
class ElasticCluster:
    address: str  # host:port of the GCS: RAY_ADDRESS for `chorus search`
    temp_dir: str  # every process of this cluster has it on its command line

    def stop(self, timeout: float = 30.0) -> None:
        """Stop this cluster's processes (head, autoscaler, fake workers, their workers), and nothing else."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = cluster_pids(self.temp_dir)
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 5)
            while cluster_pids(self.temp_dir) and time.monotonic() < deadline:
                time.sleep(0.5)
            if not cluster_pids(self.temp_dir):
                return


def cluster_pids(temp_dir: str) -> list[int]:
    """Processes whose command line names the cluster's temp dir (Ray passes the session dir to each of them)."""
    mine, out = os.getpid(), []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != mine:
            try:
                if temp_dir.encode() in (d / "cmdline").read_bytes():
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def start_elastic_cluster(temp_dir: str | Path, settings: ElasticSettings | None = None, *,
                          port: int | None = None, aws_yaml: Path = AWS_YAML) -> ElasticCluster:
    """Start the head (CPU 0) with the autoscaler on the fake provider; workers come and go with demand."""
    from ray.util import get_node_ip_address

    settings = settings or ElasticSettings()
    temp_dir = Path(temp_dir).resolve()
    temp_dir.mkdir(parents=True, exist_ok=True)
    if len(str(temp_dir)) > 60:  # Ray's unix sockets live under it, and their paths are limited to 107 bytes
        raise InputError(f"{temp_dir}: the Ray temp dir path is too long for its sockets (keep it under 60 chars)")
    port = port or free_port()
    address = f"{get_node_ip_address()}:{port}"
    config_path = temp_dir / "autoscaler.yaml"
    write_text_atomic(config_path, yaml.safe_dump(elastic_config(settings, address, aws_yaml), sort_keys=False))
    head = elastic_config(settings, address, aws_yaml)["available_node_types"][HEAD_TYPE]["resources"]
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "RAY_TMPDIR": str(temp_dir),
           "AUTOSCALER_UPDATE_INTERVAL_S": str(settings.update_interval_s)}
    # `python -m ray.scripts.scripts` is the `ray` CLI of this very interpreter (no PATH lookup).
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={port}",
           f"--num-cpus={head.get('CPU', 0)}", f"--num-gpus={head.get('GPU', 0)}",
           f"--autoscaling-config={config_path}", f"--temp-dir={temp_dir}", "--include-dashboard=false",
           "--disable-usage-stats"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    cluster = ElasticCluster(address=address, temp_dir=str(temp_dir))
    if proc.returncode != 0:
        cluster.stop()
        raise RuntimeError(f"ray start --head failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    write_text_atomic(temp_dir / STATE_FILE, json.dumps({"address": address, "temp_dir": str(temp_dir)}) + "\n")
    return cluster


def load_elastic_cluster(temp_dir: str | Path) -> ElasticCluster:
    state = Path(temp_dir).resolve() / STATE_FILE
    if not state.is_file():
        raise InputError(f"{state}: no elastic cluster was started here (chorus elastic up --dir {temp_dir})")
    return ElasticCluster(**json.loads(state.read_text()))


def worker_counts() -> dict[str, int]:
    """Alive nodes per node type, from the connected Ray (the fake provider names each node's type)."""
    import ray

    counts: dict[str, int] = {}
    for node in ray.nodes():
        if node["Alive"]:
            kind = "head" if "node:__internal_head__" in node["Resources"] else (
                "gpu_worker" if node["Resources"].get("GPU") else "cpu_worker")
            counts[kind] = counts.get(kind, 0) + 1
    return counts


DEFAULT_DIR = "/tmp/chorus-elastic"  # short: Ray's socket paths live under it


def register(sub) -> None:
    """`chorus elastic up|status|down`: the local elastic cluster for trying autoscaling without a cloud."""
    p = sub.add_parser("elastic", help="a local autoscaling Ray cluster (aws.yaml's node types, no cloud)",
                       description="Start, inspect or stop a local Ray cluster whose autoscaler adds CPU workers "
                                   "(extra raylets on this machine) while trials wait and removes them when idle. "
                                   "Then run `RAY_ADDRESS=<address> chorus search ...`.")
    esub = p.add_subparsers(dest="elastic_command", required=True, metavar="{up,status,down}")
    up = esub.add_parser("up", help="start the head (CPU 0) and the autoscaler")
    up.add_argument("--dir", default=DEFAULT_DIR, help=f"Ray temp dir of this cluster (default {DEFAULT_DIR})")
    up.add_argument("--max-workers", type=int, default=None, help="CPU workers at most (default: aws.yaml's)")
    up.add_argument("--cpus-per-worker", type=int, default=1, help="CPUs each worker offers (default 1)")
    up.add_argument("--max-gpu-workers", type=int, default=None,
                    help="GPU workers at most (default: aws.yaml's; 0 keeps CPU searches off GPU nodes)")
    up.add_argument("--idle-timeout-minutes", type=float, default=None,
                    help="remove a worker idle this long (default: aws.yaml's)")
    up.set_defaults(func=_cmd_up)
    for name, func, text in (("status", _cmd_status, "alive nodes per type"), ("down", _cmd_down, "stop it")):
        q = esub.add_parser(name, help=text)
        q.add_argument("--dir", default=DEFAULT_DIR, help=f"Ray temp dir of the cluster (default {DEFAULT_DIR})")
        q.set_defaults(func=func)


def _cmd_up(args) -> int:
    settings = ElasticSettings(max_cpu_workers=args.max_workers, cpus_per_worker=args.cpus_per_worker,
                               max_gpu_workers=args.max_gpu_workers, idle_timeout_minutes=args.idle_timeout_minutes)
    cluster = start_elastic_cluster(args.dir, settings)
    print(f"chorus: elastic cluster up at {cluster.address} (temp dir {cluster.temp_dir})\n"
          f"  export RAY_ADDRESS={cluster.address}; chorus search configs/search.yaml\n"
          f"  chorus elastic status --dir {cluster.temp_dir}; chorus elastic down --dir {cluster.temp_dir}")
    return 0


def _cmd_status(args) -> int:
    import ray

    cluster = load_elastic_cluster(args.dir)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        print(" ".join(f"{kind}={n}" for kind, n in sorted(worker_counts().items())))
    finally:
        ray.shutdown()
    return 0


def _cmd_down(args) -> int:
    cluster = load_elastic_cluster(args.dir)
    cluster.stop()
    (Path(cluster.temp_dir) / STATE_FILE).unlink(missing_ok=True)
    print(f"chorus: elastic cluster in {cluster.temp_dir} stopped")
    return 0
