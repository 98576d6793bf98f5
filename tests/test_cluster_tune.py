"""Search YAML -> Tune objects (space, schedulers, trainable resources) and the report bridge; no Ray cluster."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from chorus.cluster.search_config import build_search


def make(doc: dict, overrides: list[str] | None = None):
    return build_search({"train": {"eval_every": 5, "checkpoint_every": 10, "steps": 40}, **doc},
                        overrides=overrides)


def test_param_space_maps_every_distribution():
    from ray import tune

    from chorus.cluster.tune_adapter import param_space

    search = make({"space": {"train.g_lr": {"loguniform": [1e-4, 1e-2]}, "train.d_lr": {"uniform": [1e-4, 1e-3]},
                             "train.n_critic": {"randint": [1, 4]}, "model.width": {"choice": [4, 8]},
                             "train.seed": {"grid": [0, 1]}}})
    space = param_space(search)
    assert isinstance(space["train.g_lr"], tune.search.sample.Float)
    assert isinstance(space["train.n_critic"], tune.search.sample.Integer)
    assert space["train.n_critic"].upper == 4  # high excluded, as in Tune
    assert space["model.width"].categories == [4, 8]
    assert space["train.seed"] == {"grid_search": [0, 1]}


def test_schedulers():
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    from chorus.cluster.tune_adapter import make_scheduler

    assert make_scheduler(make({})) is None
    asha = make_scheduler(make({"scheduler": {"type": "asha", "grace_period": 10}}))
    assert isinstance(asha, ASHAScheduler) and asha._time_attr == "step" and asha._max_t == 40
    short = make_scheduler(make({"scheduler": {"type": "asha", "grace_period": 100}}))  # longer than the run
    assert short._max_t == 40 and all(t >= 40 for t, _ in short._brackets[0]._rungs)  # none stops a trial early
    pbt = make_scheduler(make({"scheduler": {"type": "pbt"}, "space": {"train.g_lr": {"loguniform": [1e-4, 1e-2]}}}))
    assert isinstance(pbt, PopulationBasedTraining) and pbt._perturbation_interval == 10
    assert set(pbt._hyperparam_mutations) == {"train.g_lr"}


def test_trainable_resources_and_threads():
    from chorus.cluster.tune_adapter import DRIVER_MEMORY, TrialSettings, make_trainable

    one = make_trainable(make({"resources": {"cpus": 2}}))
    assert one._resources.required_resources == {"CPU": 2.0}
    assert TrialSettings.from_search(make({"resources": {"cpus": 2}})).threads == 2
    assert TrialSettings.from_search(make({"resources": {"cpus": 0.5}})).threads == 1
    assert TrialSettings.from_search(make({"threads": 3})).threads == 3
    multi = make_trainable(make({"resources": {"cpus": 1, "workers": 2}}))
    # the driver of a multi-worker trial holds no CPU at all: a sliver would leave no whole CPU for a worker
    assert multi._resources.required_resources == {"memory": DRIVER_MEMORY}


def test_capacity_counts_whole_worker_groups_and_fails_when_none_fits(monkeypatch):
    from chorus.cluster.preflight import apply_capacity, groups_that_fit, trial_capacity
    from chorus.errors import InputError

    head, worker = {"CPU": 0.0, "memory": 2e9}, {"CPU": 1.0, "memory": 4e9}
    assert groups_that_fit([head, worker, worker], 2, {"CPU": 1.0}) == 1  # the compose cluster: one at a time
    assert groups_that_fit([head, worker, worker], 1, {"CPU": 1.0}) == 2
    assert groups_that_fit([{"CPU": 0.99}, {"CPU": 0.99}], 2, {"CPU": 1.0}) == 0  # the old deadlock
    assert groups_that_fit([{"CPU": 3.0}, {"CPU": 1.0}], 2, {"CPU": 1.5}) == 1
    search = make({"resources": {"cpus": 1, "workers": 2}, "max_concurrent_trials": 4})
    assert trial_capacity(search, [head, worker, worker]) == 1
    with pytest.raises(InputError, match=r"^resources: a trial needs 2 worker\(s\) of 1 CPU.*offer 0 CPU, 1 CPU: "):
        trial_capacity(search, [head, worker])
    import chorus.cluster.preflight as preflight

    monkeypatch.setattr(preflight, "_nodes", lambda: [{"Resources": n} for n in (head, worker, worker)])
    apply_capacity(search)
    assert search.spec.max_concurrent_trials == 1


def test_manifest_tells_a_complete_checkpoint_from_a_half_written_one(tmp_path):
    import pyarrow.fs

    from chorus.cluster.tune_adapter import write_manifest
    from chorus.cluster.tune_state import read_complete_manifest

    ckpt = tmp_path / "checkpoint_000003"
    (ckpt / "checkpoints").mkdir(parents=True)
    (ckpt / "checkpoints" / "ckpt-9.data-00000-of-00001").write_bytes(b"x" * 100)
    (ckpt / "config.yaml").write_text("train: {}\n")
    write_manifest(ckpt, 9, {"music_distance": 0.5, "note": "text is dropped"})
    fs = pyarrow.fs.LocalFileSystem()
    manifest = read_complete_manifest(fs, str(ckpt))
    assert manifest["step"] == 9 and manifest["metrics"] == {"music_distance": 0.5, "step": 9}
    (ckpt / "checkpoints" / "ckpt-9.data-00000-of-00001").write_bytes(b"x" * 40)  # a copy cut short
    assert read_complete_manifest(fs, str(ckpt)) is None
    (ckpt / "checkpoints" / "ckpt-9.data-00000-of-00001").unlink()  # a prune cut short
    assert read_complete_manifest(fs, str(ckpt)) is None


@dataclass
class FakeReport:
    step: int
    metrics: dict
    checkpoint: str | None
    is_chief: bool
    run_dir: str


class FakeCheckpoint:
    @staticmethod
    def from_directory(path):
        return Path(path)


def test_reporter_stages_a_run_dir_per_checkpoint_and_skips_unscored_results(tmp_path):
    from chorus.cluster.tune_adapter import RayReporter, checkpoint_step

    run = tmp_path / "trial" / "run"
    export = run / "export" / "latest"
    export.mkdir(parents=True)
    (export / "ckpt-6.index").write_text("x")
    (export / "checkpoint").write_text('model_checkpoint_path: "ckpt-6"\nall_model_checkpoint_paths: "ckpt-6"\n')
    (export / "config.yaml").write_text("train: {}\n")
    for step in (3, 6, 9):
        (run / "samples" / f"step-{step:06d}").mkdir(parents=True)
        (run / "samples" / f"step-{step:06d}" / "sample-0.mid").write_text(str(step))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 6}) + "\n")
    seen = []

    def report(metrics, checkpoint=None):
        staged = None
        if checkpoint is not None:  # copy what the temp dir holds now, as Tune's upload would
            staged = sorted(str(p.relative_to(checkpoint)) for p in checkpoint.rglob("*") if p.is_file())
            assert checkpoint_step(checkpoint) == 6
        seen.append((metrics, staged))

    reporter = RayReporter(report, FakeCheckpoint, metric="music_distance", resumed_from_step=0,
                           always_forward=False)
    reporter(FakeReport(1, {"d_loss": 1.0}, None, True, str(run)))  # no metric, no checkpoint: not forwarded
    reporter(FakeReport(6, {"d_loss": 1.0, "music_distance": 2.0}, str(export), True, str(run)))
    assert len(seen) == 1
    metrics, files = seen[0]
    assert metrics["step"] == 6 and metrics["music_distance"] == 2.0 and metrics["resumed_from_step"] == 0
    assert files == ["checkpoints/checkpoint", "checkpoints/ckpt-6.index", "checkpoints/config.yaml",
                     "chorus-checkpoint.json", "config.yaml", "metrics.jsonl", "samples/step-000006/sample-0.mid"]
    assert not list((tmp_path / "trial").glob(".ray-checkpoint-*"))  # the staging dir is gone


def test_progress_table_lists_a_trial_that_ended_before_its_first_result(tmp_path):
    """The time budget can end a trial that never reported; the last progress table must still print (Ray's
    sort_by_metric compared None with a float there and crashed the whole search)."""
    from types import SimpleNamespace

    from ray.tune.experiment import Trial

    from chorus.cluster.search import _progress_reporter

    search = make({"space": {"train.g_lr": {"loguniform": [0.0005, 0.002]}}})
    scored, unscored = (Trial("__fake", stub=True, config={"train.g_lr": lr}) for lr in (0.001, 0.002))
    scored.update_last_result({"music_distance": 1.2, "step": 900, "config": scored.config})
    for trial in (scored, unscored):
        trial.set_status(Trial.TERMINATED)
        trial.storage = SimpleNamespace(experiment_driver_staging_path=str(tmp_path),
                                        trial_driver_staging_path=str(tmp_path))
    reporter = _progress_reporter(search)
    reporter.setup(start_time=0.0, metric="music_distance", mode="min")
    table = reporter._progress_str([scored, unscored], done=True)
    assert "2 TERMINATED" in table and "music_distance=1.2" in table
