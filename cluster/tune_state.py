"""Before a resume: make Tune's saved experiment state agree with what really is in storage.

Tune saves its experiment state every few seconds; checkpoints are written and pruned (`num_to_keep`) in between.
A driver killed at the wrong moment leaves a state that names a checkpoint which pruning has since deleted, or
misses newer ones, and may leave a checkpoint half-written or half-deleted. Tune then refuses to restore the
trial ("does not exist on storage anymore"). `repair_experiment` rewrites the newest state file so that every
unfinished trial restores from its newest *complete* checkpoint (tune_adapter's manifest lists each file and
its size), drops incomplete checkpoint folders, and continues numbering after the highest one on disk. Finished
trials are left exactly as they are.
"""
from __future__ import annotations

import json
import logging
import posixpath
from dataclasses import dataclass
from typing import Any

from chorus.cluster import ray_private
from chorus.cluster import results as results_mod
from chorus.cluster.tune_adapter import MANIFEST

CHECKPOINT_PREFIX = "checkpoint_"
logger = logging.getLogger(__name__)


@dataclass
class TrialResume:
    """How one unfinished trial continues: from the step of its newest complete checkpoint (0: the start)."""

    trial_id: str
    last_step: int  # the last step it reported before the interruption
    from_step: int
    change: str | None = None  # what the repair changed in the saved state, if anything

    @property
    def redone(self) -> int:
        """Reported steps it trains again (steps after its last report were never reported, so not counted)."""
        return max(0, self.last_step - self.from_step)

    def __str__(self) -> str:
        text = (f"trial {self.trial_id}: continues from step {self.from_step} (last reported step {self.last_step}; "
                f"{self.redone} reported step(s) redone)")
        return f"{text}; {self.change}" if self.change else text


def _index(name: str) -> int | None:
    tail = name[len(CHECKPOINT_PREFIX):] if name.startswith(CHECKPOINT_PREFIX) else ""
    return int(tail) if tail.isdigit() else None


def checkpoint_dirs(fs, trial_path: str) -> dict[int, str]:
    """index -> path of the checkpoint_NNNNNN folders of a trial."""
    import pyarrow.fs

    found = {}
    for info in fs.get_file_info(pyarrow.fs.FileSelector(trial_path, allow_not_found=True)):
        idx = _index(info.base_name)
        if idx is not None and info.type == pyarrow.fs.FileType.Directory:
            found[idx] = info.path
    return found


def read_complete_manifest(fs, ckpt_path: str) -> dict[str, Any] | None:
    """The checkpoint's manifest when every file it lists is there with its size, else None."""
    import pyarrow.fs

    try:
        with fs.open_input_stream(posixpath.join(ckpt_path, MANIFEST)) as f:
            manifest = json.loads(f.read().decode())
    except (OSError, ValueError):
        return None
    sizes = {info.path[len(ckpt_path.rstrip("/")) + 1:]: info.size
             for info in fs.get_file_info(pyarrow.fs.FileSelector(ckpt_path, recursive=True))
             if info.type == pyarrow.fs.FileType.File}
    if any(sizes.get(rel) != size for rel, size in manifest.get("files", {}).items()):
        return None
    return manifest


def _delete_dir(fs, path: str) -> None:
    """Delete a checkpoint folder; a failure is logged and the repair goes on (as Ray's own pruning does)."""
    try:
        fs.delete_dir(path)
    except Exception:  # noqa: BLE001 - logged with its traceback; the folder stays unrestorable either way
        logger.exception(f"could not delete the incomplete checkpoint {path}")


def _repair_trial(trial, fs) -> str | None:
    """Point one unfinished trial at its newest complete checkpoint; a line saying what changed, or None."""
    from ray.train import Checkpoint

    trial_path = trial.storage.trial_fs_path
    on_disk = checkpoint_dirs(fs, trial_path)
    complete = {}
    for idx, path in sorted(on_disk.items()):
        manifest = read_complete_manifest(fs, path)
        if manifest is None:
            _delete_dir(fs, path)  # half-written or half-pruned: never restorable
        else:
            complete[idx] = (path, manifest)
    manager = trial.run_metadata.checkpoint_manager
    latest = manager.latest_checkpoint_result
    results = ray_private.checkpoint_results(manager)
    kept = [r for r in results if r.checkpoint.path in {p for p, _ in complete.values()}]
    newest = max(complete) if complete else None
    newest_path = complete[newest][0] if newest is not None else None
    if latest is not None and latest.checkpoint.path == newest_path and len(kept) == len(results):
        return None
    if newest is None:
        chosen = None
    else:
        chosen = next((r for r in kept if r.checkpoint.path == newest_path), None)
        if chosen is None:  # written after the last state save: rebuild its result from the manifest
            chosen = ray_private.training_result(Checkpoint(newest_path, filesystem=fs),
                                                 dict(complete[newest][1].get("metrics", {})))
            if manager.checkpoint_config.checkpoint_score_attribute in chosen.metrics:
                ray_private.insert_by_score(manager, kept, chosen)
            else:
                kept.append(chosen)
    ray_private.set_checkpoint_results(manager, kept, chosen)
    # the next checkpoint goes after every folder on disk, never over one
    trial.storage.current_checkpoint_index = max(on_disk, default=-1)
    trial.invalidate_json_state()
    trial.run_metadata.invalidate_cache()
    was = latest.checkpoint.path.rsplit("/", 1)[-1] if latest is not None else "none"
    return f"restores from {newest_path.rsplit('/', 1)[-1] if newest_path else 'the start'} " \
           f"(the saved state named {was})"


def _step(result) -> int:
    step = (result.metrics if result is not None else {}).get("step")
    return int(step) if isinstance(step, (int, float)) else 0


def repair_experiment(exp_path: str) -> list[TrialResume]:
    """Rewrite the newest experiment state of exp_path so that a resume cannot miss a checkpoint; how each
    unfinished trial will continue, and what changed."""
    import copy

    from ray.tune.experiment.trial import Trial

    fs, path = results_mod.fs_and_path(exp_path)
    state_path = ray_private.find_newest_experiment_state(path.rstrip("/"), fs)  # the one Tune.restore reads
    if state_path is None:
        return []
    with fs.open_input_stream(state_path) as f:
        doc = json.loads(f.read().decode())
    plan: list[TrialResume] = []
    for i, (trial_json, meta_json) in enumerate(doc.get("trial_data", [])):
        trial = Trial.from_json_state(trial_json, stub=True)
        trial.restore_run_metadata(meta_json)
        if trial.status == Trial.TERMINATED or trial.run_metadata.checkpoint_manager is None:
            continue
        # where the experiment is now (it may have moved), as Tune's own restore does it
        storage = copy.copy(trial.storage)
        storage.storage_filesystem = fs
        storage.storage_fs_path, storage.experiment_dir_name = path.rstrip("/").rsplit("/", 1)
        trial.set_storage(storage)
        change = _repair_trial(trial, fs)
        last = trial.last_result.get("step") if trial.last_result else 0
        plan.append(TrialResume(trial.trial_id, int(last or 0),
                                _step(trial.run_metadata.checkpoint_manager.latest_checkpoint_result), change))
        if change:
            trial.stub = False  # a stub (loaded without its trainable) would be saved as one and never run
            trial.invalidate_json_state()
            doc["trial_data"][i] = list(trial.get_json_state())
    if any(t.change for t in plan):
        with fs.open_output_stream(state_path + ".tmp") as f:  # then a rename: a kill here cannot corrupt it
            f.write(json.dumps(doc, indent=2).encode())
        fs.move(state_path + ".tmp", state_path)
    return plan
