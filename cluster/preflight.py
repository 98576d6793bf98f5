"""What a search checks on the cluster before its first trial, so that it fails once, at start, with one line.

- `trial_capacity`: how many trials' worker groups fit on the nodes alive now (a multi-worker trial's workers
  form one gang: all of them are placed or none). None fit: InputError. Fewer than the search would run at
  once: the search runs that many at a time, so that no trial holds a driver while its group waits.
- `check_shared_storage`: on a multi-node cluster, every node must see the same storage_path (a shared volume or
  s3://). A path local to one node otherwise fails every trial on the others, retry after retry.
"""
from __future__ import annotations

import os
import uuid

from chorus.cluster import results as results_mod
from chorus.cluster.search_config import Search, is_uri
from chorus.errors import InputError


def _nodes() -> list[dict]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def groups_that_fit(node_resources: list[dict[str, float]], workers: int, per_worker: dict[str, float]) -> int:
    """Trials (gangs of `workers` bundles of per_worker) the nodes hold at once: whole bundles per node."""
    slots = 0
    for res in node_resources:
        fits = [int(res.get(k, 0.0) // v) for k, v in per_worker.items() if v > 0]
        slots += min(fits) if fits else 0
    return slots // workers


def trial_capacity(search: Search, node_resources: list[dict[str, float]] | None = None) -> int:
    """Trials that can run at once on the cluster as it is; InputError when not even one trial fits."""
    res = search.spec.resources
    per_worker = {"CPU": res.cpus, **({"GPU": res.gpus} if res.gpus else {})}
    nodes = node_resources if node_resources is not None else [n["Resources"] for n in _nodes()]
    fit = groups_that_fit(nodes, res.workers, per_worker)
    if fit == 0:
        offered = ", ".join(f"{n.get('CPU', 0):g} CPU" + (f" {n.get('GPU', 0):g} GPU" if res.gpus else "")
                            for n in nodes) or "no nodes"
        what = f"{res.workers} worker(s) of {res.cpus:g} CPU" + (f" and {res.gpus:g} GPU" if res.gpus else "")
        raise InputError(f"resources: a trial needs {what}, each on one node; the cluster's nodes offer {offered}: "
                         f"lower resources.cpus/workers or add workers")
    return fit


def apply_capacity(search: Search) -> None:
    """Cap a multi-worker search's concurrency at the worker groups that fit (one at a time if need be).

    Single-worker trials are left to Tune, which queues what does not fit (and lets an autoscaler add nodes)."""
    if search.spec.resources.workers == 1:
        return
    fit = trial_capacity(search)
    wanted = search.spec.max_concurrent_trials
    search.spec.max_concurrent_trials = min(wanted, fit) if wanted else fit


def check_shared_storage(storage_path: str) -> None:
    """On more than one node, a local storage_path must be the same folder on all of them."""
    if is_uri(storage_path):
        return
    nodes = _nodes()
    if len(nodes) < 2:
        return
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    marker = results_mod.join(storage_path, f".chorus-shared-{uuid.uuid4().hex[:12]}")
    try:
        os.makedirs(storage_path, exist_ok=True)
        with open(marker, "w") as f:
            f.write("shared?\n")
    except OSError as exc:
        raise InputError(f"storage_path: cannot write to {storage_path} ({exc.strerror}); set storage_path (or "
                         f"CHORUS_STORAGE_PATH) to a folder every node mounts, or to s3://bucket/prefix") from None

    @ray.remote(num_cpus=0)
    def sees(path: str) -> bool:
        return os.path.exists(path)

    try:
        seen = ray.get([sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                        .remote(marker) for n in nodes], timeout=120)
    finally:
        os.remove(marker)
    blind = [n.get("NodeManagerHostname") or n["NodeManagerAddress"]
             for n, ok in zip(nodes, seen, strict=True) if not ok]
    if blind:
        raise InputError(f"storage_path: {storage_path} is not shared: node(s) {', '.join(blind)} do not see it; "
                         f"set storage_path (or CHORUS_STORAGE_PATH) to a volume every node mounts (compose: "
                         f"/shared/ray_results) or to s3://bucket/prefix")
