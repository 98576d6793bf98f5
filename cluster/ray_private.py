"""Every private name of Ray that chorus uses, in one place, each behind a short wrapper that says why.

Ray's public API has no way to do these things; a private name can change or vanish in any Ray release without a
deprecation warning. tests/test_ray_private.py imports and inspects every name listed in PRIVATE_NAMES and
MANAGER_ATTRIBUTES and fails naming the Ray version and the missing name, so an upgrade breaks a fast test
instead of a resume after a crash. Ray is imported lazily (inside the wrappers): importing this module costs
nothing, and `import ray` stays in cluster/. PRIVATE_NAMES and MANAGER_ATTRIBUTES below list each name with
why chorus needs it.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

# The autoscaler's fake provider, named by its import path in a cluster config.
FAKE_PROVIDER = "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider"

# (module, attribute, why): the test imports each one.
PRIVATE_NAMES: list[tuple[str, str, str]] = [
    ("ray.tune.execution.experiment_state", "_find_newest_experiment_checkpoint",
     "the experiment state file that Tuner.restore will read (Tuner.can_restore only says whether one exists); "
     "tune_state repairs that very file"),
    ("ray.train._internal.session", "_TrainingResult",
     "the (checkpoint, metrics) record a trial's checkpoint manager holds; tune_state builds one for a complete "
     "checkpoint written after Tune last saved its state"),
    ("ray.train._internal.checkpoint_manager", "_insert_into_sorted_list",
     "keeps that record in the manager's order (by checkpoint_score_attribute), exactly as Ray's own "
     "register_checkpoint does, without register_checkpoint's pruning (which deletes folders)"),
    ("ray.train._internal.checkpoint_manager", "_delete_fs_path",
     "the deleter Ray's manager prunes checkpoints with: a test swaps it to kill the driver mid-prune"),
    (*FAKE_PROVIDER.rsplit(".", 1),
     "the autoscaler's fake provider (Ray's documented way to test autoscaling on one machine), named by its "
     "module path in the elastic cluster's config"),
    ("ray.autoscaler._private.util", "prepare_config",
     "what `ray up` does to a cluster YAML (merges Ray's defaults): tests check ours survives it"),
    ("ray.autoscaler._private.util", "validate_config", "`ray up`'s schema check of a prepared cluster YAML"),
    ("ray.autoscaler._private.aws.config", "_configure_iam_role",
     "`ray up`'s AWS IAM step: tests check it keeps our instance profiles"),
    ("ray.autoscaler._private.aws.config", "_configure_security_group",
     "`ray up`'s AWS security-group step: tests check it keeps our groups (no SSH from 0.0.0.0/0)"),
]

# Attributes of ray.train._internal.checkpoint_manager._CheckpointManager (a trial's run_metadata.checkpoint_manager)
# that tune_state reads or sets: the manager has public read access to the latest result only.
MANAGER_ATTRIBUTES: list[tuple[str, str]] = [
    ("_checkpoint_results", "every registered checkpoint result, in score order: read, then replaced by the "
                            "complete ones"),
    ("_latest_checkpoint_result", "what a restore continues from: set to the newest complete checkpoint"),
    ("_get_checkpoint_score", "the manager's sort key, for _insert_into_sorted_list"),
]


def _private(module: str, name: str) -> Any:
    """The private object, or an ImportError naming the Ray version and the name (never a bare AttributeError)."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        import ray

        raise ImportError(f"Ray {ray.__version__} has no {module}.{name}, which chorus.cluster.ray_private uses "
                          f"({type(e).__name__}: {e})") from e


# ------------------------------------------------------------------------------------------------ Tune state


def find_newest_experiment_state(experiment_path: str, fs) -> str | None:
    """Path of the newest experiment state file under experiment_path (the one Tuner.restore reads), or None."""
    return _private("ray.tune.execution.experiment_state", "_find_newest_experiment_checkpoint")(
        experiment_path, fs=fs)


def training_result(checkpoint, metrics: dict[str, Any]):
    """A checkpoint manager's record of one reported checkpoint."""
    return _private("ray.train._internal.session", "_TrainingResult")(checkpoint=checkpoint, metrics=metrics)


def checkpoint_results(manager) -> list:
    """Every checkpoint result the manager holds, in its order (worst first when it sorts by a score)."""
    return manager._checkpoint_results


def set_checkpoint_results(manager, results: list, latest) -> None:
    """Replace the manager's results and the latest one (what a restore continues from)."""
    manager._checkpoint_results = results
    manager._latest_checkpoint_result = latest


def insert_by_score(manager, results: list, item) -> None:
    """Insert item into results where the manager's own order puts it (by checkpoint_score_attribute)."""
    insert = _private("ray.train._internal.checkpoint_manager", "_insert_into_sorted_list")
    insert(results, item, key=manager._get_checkpoint_score)


def replace_checkpoint_deleter(fn: Callable[[Any, str], None]) -> Callable[[Any, str], None]:
    """Make Ray's checkpoint manager prune with fn(fs, fs_path); returns the deleter it had (tests: fault
    injection)."""
    module = importlib.import_module("ray.train._internal.checkpoint_manager")
    old = _private("ray.train._internal.checkpoint_manager", "_delete_fs_path")
    module._delete_fs_path = fn
    return old


# ------------------------------------------------------------------------------------------------ autoscaler


def prepare_autoscaler_config(config: dict) -> dict:
    """A cluster YAML as `ray up` prepares it (Ray's provider defaults merged in)."""
    return _private("ray.autoscaler._private.util", "prepare_config")(config)


def validate_autoscaler_config(config: dict) -> None:
    """`ray up`'s validation of a prepared cluster YAML."""
    _private("ray.autoscaler._private.util", "validate_config")(config)


def aws_configure_iam_role(config: dict) -> dict:
    """`ray up`'s AWS IAM step on a prepared config (returns before any AWS call when the config names profiles)."""
    return _private("ray.autoscaler._private.aws.config", "_configure_iam_role")(config)


def aws_configure_security_group(config: dict) -> dict:
    """`ray up`'s AWS security-group step (returns before any AWS call when every node names its groups)."""
    return _private("ray.autoscaler._private.aws.config", "_configure_security_group")(config)
