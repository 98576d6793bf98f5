"""Every private Ray name chorus uses (cluster/ray_private.py) still exists in the installed Ray, with the shape the
wrappers call it with: a Ray upgrade that drops or changes one fails here, naming the Ray version and the name,
not in a resume after a crash. Also: no other module of chorus names a private Ray module."""
from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest
import ray

from chorus.cluster import ray_private

REPO = Path(__file__).resolve().parent.parent


def _lookup(module: str, name: str):
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        pytest.fail(f"Ray {ray.__version__}: {module}.{name} is gone ({type(e).__name__}: {e}); "
                    f"cluster/ray_private.py needs another way to do what it did", pytrace=False)


@pytest.mark.parametrize("module, name", [(m, a) for m, a, _ in ray_private.PRIVATE_NAMES],
                         ids=[f"{m}.{a}" for m, a, _ in ray_private.PRIVATE_NAMES])
def test_private_name_exists(module, name):
    assert _lookup(module, name) is not None


# The parameters each wrapper passes, by name: a renamed or reordered parameter fails here.
SIGNATURES = {
    ("ray.tune.execution.experiment_state", "_find_newest_experiment_checkpoint"): ["experiment_path", "fs"],
    ("ray.train._internal.session", "_TrainingResult"): ["checkpoint", "metrics"],
    ("ray.train._internal.checkpoint_manager", "_insert_into_sorted_list"): ["list", "item", "key"],
    ("ray.train._internal.checkpoint_manager", "_delete_fs_path"): ["fs", "fs_path"],
    ("ray.autoscaler._private.util", "prepare_config"): ["config"],
    ("ray.autoscaler._private.util", "validate_config"): ["config"],
    ("ray.autoscaler._private.aws.config", "_configure_iam_role"): ["config"],
    ("ray.autoscaler._private.aws.config", "_configure_security_group"): ["config"],
}


@pytest.mark.parametrize("key", list(SIGNATURES), ids=[f"{m}.{a}" for m, a in SIGNATURES])
def test_private_function_takes_what_the_wrapper_passes(key):
    params = list(inspect.signature(_lookup(*key)).parameters)
    want = SIGNATURES[key]
    assert params[: len(want)] == want, (f"Ray {ray.__version__}: {key[0]}.{key[1]} now takes {params}, "
                                         f"cluster/ray_private.py passes {want}")


def test_every_listed_name_has_its_signature_checked():
    assert {(m, a) for m, a, _ in ray_private.PRIVATE_NAMES} - set(SIGNATURES) == {
        tuple(ray_private.FAKE_PROVIDER.rsplit(".", 1))}  # a class named by path: existence is what counts


def test_checkpoint_manager_attributes_and_wrappers():
    from ray.train import Checkpoint, CheckpointConfig

    manager_cls = _lookup("ray.train._internal.checkpoint_manager", "_CheckpointManager")
    manager = manager_cls(CheckpointConfig(checkpoint_score_attribute="score", checkpoint_score_order="max"))
    for name, _ in ray_private.MANAGER_ATTRIBUTES:
        if not hasattr(manager, name):
            pytest.fail(f"Ray {ray.__version__}: _CheckpointManager.{name} is gone; cluster/ray_private.py "
                        "needs another way to do what it did", pytrace=False)
    results = [ray_private.training_result(Checkpoint(f"/tmp/ckpt_{s}"), {"score": s}) for s in (1, 5)]
    ray_private.set_checkpoint_results(manager, list(results), results[1])
    assert ray_private.checkpoint_results(manager) == results
    assert manager.latest_checkpoint_result is results[1]  # the public read sees what the wrapper set
    middle = ray_private.training_result(Checkpoint("/tmp/ckpt_3"), {"score": 3})
    kept = list(results)
    ray_private.insert_by_score(manager, kept, middle)
    assert [r.metrics["score"] for r in kept] == [1, 3, 5]  # worst first, as the manager keeps them
    assert manager.best_checkpoint_result is results[1]


def test_checkpoint_deleter_can_be_swapped_and_restored():
    module = importlib.import_module("ray.train._internal.checkpoint_manager")
    calls = []
    original = ray_private.replace_checkpoint_deleter(lambda fs, path: calls.append(path))
    try:
        module._delete_fs_path(None, "x")
        assert calls == ["x"]
    finally:
        assert ray_private.replace_checkpoint_deleter(original) is not original
    assert module._delete_fs_path is original


def test_find_newest_experiment_state(tmp_path):
    import pyarrow.fs

    assert ray_private.find_newest_experiment_state(str(tmp_path), pyarrow.fs.LocalFileSystem()) is None
    for stamp in ("2026-01-01_00-00-00", "2026-02-01_00-00-00"):
        (tmp_path / f"experiment_state-{stamp}.json").write_text("{}")
    found = ray_private.find_newest_experiment_state(str(tmp_path), pyarrow.fs.LocalFileSystem())
    assert found is not None and found.endswith("experiment_state-2026-02-01_00-00-00.json")


PRIVATE_RAY = re.compile(r"\bray(\.\w+)*\.(_private|_internal|_[a-z]\w*)\b")


def test_no_other_module_names_a_private_ray_module():
    """ray_private.py is the only file under cluster/, tests/ and benchmarks/ that names a private Ray module."""
    found = []
    for folder in ("cluster", "tests", "benchmarks", "trainer", "data", "chorus"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path.name in ("ray_private.py", "test_ray_private.py"):
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if PRIVATE_RAY.search(line):
                    found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not found, "private Ray names outside cluster/ray_private.py:\n" + "\n".join(found)
