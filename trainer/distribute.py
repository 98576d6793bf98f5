"""Choosing the tf.distribute strategy and knowing who the chief is."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

from chorus.data import tfenv
from chorus.errors import InputError
from chorus.trainer.config import require_tf_config

tf = tfenv.tensorflow()


@dataclass
class Distribution:
    strategy: tf.distribute.Strategy
    name: str  # default | mirrored | multi_worker
    is_chief: bool  # only the chief writes files, logs and samples
    worker_index: int
    num_workers: int

    @property
    def num_replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    def describe(self) -> str:
        try:
            devices = ", ".join(self.strategy.extended.worker_devices)
        except RuntimeError:  # the default strategy has no device list
            devices = ", ".join(d.name for d in tf.config.list_logical_devices("GPU")) or "CPU"
        return (f"{self.name} ({self.num_replicas} replica(s), worker {self.worker_index + 1}/{self.num_workers}, "
                f"devices: {devices})")


def tf_config_workers() -> tuple[int, str | None, int]:
    """(number of workers incl. chief, task type, task index) from TF_CONFIG; (1, None, 0) when unset."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 1, None, 0
    try:
        conf = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"TF_CONFIG: not valid JSON ({exc.msg})") from None
    cluster = conf.get("cluster", {})
    n = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    task = conf.get("task", {})
    return max(n, 1), task.get("type"), int(task.get("index", 0))


def configure_devices(cpu_devices: int, threads: int) -> None:
    """Split the CPU into logical devices and cap threads. Must run before TensorFlow initialises its runtime.

    A second run in the same process cannot change them: that is fine when the settings already match, and a
    warning naming what was not applied otherwise (e.g. `mirrored` would silently run on one device).
    """
    not_applied = []
    if threads > 0:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
        except RuntimeError:
            if tf.config.threading.get_intra_op_parallelism_threads() != threads:
                not_applied.append(f"train.threads={threads} (running with "
                                   f"{tf.config.threading.get_intra_op_parallelism_threads() or 'all'})")
    if cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
        except RuntimeError:
            have = len(tf.config.list_logical_devices("CPU"))
            if have != cpu_devices:
                not_applied.append(f"train.cpu_devices={cpu_devices} (running with {have} logical CPU(s))")
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            if not tf.config.experimental.get_memory_growth(gpu):
                not_applied.append(f"memory growth on {gpu.name}")
    if not_applied:
        print(f"warning: TensorFlow was already initialised in this process; not applied: {'; '.join(not_applied)}",
              file=sys.stderr, flush=True)


def resolve_strategy_name(name: str, n_workers: int, n_gpus: int) -> str:
    """auto: multi_worker when TF_CONFIG names several workers, mirrored when several GPUs are visible, else default."""
    if name != "auto":
        return name
    return "multi_worker" if n_workers > 1 else "mirrored" if n_gpus > 1 else "default"


def choose_strategy(name: str) -> Distribution:
    n_workers, _, _ = tf_config_workers()
    # Physical, not logical, devices: listing logical ones starts the runtime, and MultiWorkerMirroredStrategy
    # must configure collective ops before that.
    name = resolve_strategy_name(name, n_workers, len(tf.config.list_physical_devices("GPU")))
    if name == "multi_worker":
        require_tf_config(name)
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = strategy.cluster_resolver
        has_chief = "chief" in resolver.cluster_spec().as_dict()
        is_chief = (resolver.task_type == "chief" or resolver.task_type is None
                    or (not has_chief and resolver.task_type == "worker" and resolver.task_id == 0))
        index = resolver.task_id + (1 if has_chief and resolver.task_type == "worker" else 0)
        return Distribution(strategy, name, is_chief, index, n_workers)
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return Distribution(tf.distribute.MirroredStrategy(devices), name, True, 0, 1)
    return Distribution(tf.distribute.get_strategy(), "default", True, 0, 1)
