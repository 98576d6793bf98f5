"""The search YAML: validation with the training config's loader, --set routing, space checks. No Ray."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from chorus.cluster.search_config import build_search, load_search, search_from_dict, search_to_dict, split_overrides
from chorus.errors import InputError

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_default_search_yaml_loads():
    search = load_search(REPO / "configs" / "search.yaml")
    spec = search.spec
    assert spec.metric == "music_distance" and spec.mode == "min"
    assert set(spec.space) == {"train.g_lr", "train.d_lr"}
    assert spec.scheduler.type == "asha" and spec.time_budget_s == 780
    assert search.base_config["model"]["hold_steps"] == 2  # from default.yaml (base: null)
    assert search.base_config["train"]["log_every"] == 50  # from the search file itself
    assert Path(spec.storage_path).is_absolute() and Path(search.base_config["data"]["cache_dir"]).is_absolute()


def test_storage_and_results_default_to_the_nodes_environment(tmp_path, monkeypatch):
    """configs/search.yaml leaves both null: a node's CHORUS_STORAGE_PATH / CHORUS_RESULTS_DIR (the compose image
    sets them), else runs/ray and results under the working directory; the YAML or --set wins over both."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHORUS_STORAGE_PATH", raising=False)
    monkeypatch.delenv("CHORUS_RESULTS_DIR", raising=False)
    spec = load_search(REPO / "configs" / "search.yaml").spec
    assert (spec.storage_path, spec.results_dir) == (str(tmp_path / "runs" / "ray"), str(tmp_path / "results"))
    monkeypatch.setenv("CHORUS_STORAGE_PATH", "/shared/ray_results")
    monkeypatch.setenv("CHORUS_RESULTS_DIR", "/results")
    spec = load_search(REPO / "configs" / "search.yaml").spec
    assert (spec.storage_path, spec.results_dir) == ("/shared/ray_results", "/results")
    spec = load_search(REPO / "configs" / "search.yaml", ["storage_path=s3://b/p", "results_dir=out"]).spec
    assert (spec.storage_path, spec.results_dir) == ("s3://b/p", str(tmp_path / "out"))


def test_set_routes_training_and_search_keys(tmp_path):
    assert split_overrides(["train.steps=5", "num_samples=3", "resources.cpus=2"]) == (
        ["train.steps=5"], ["num_samples=3", "resources.cpus=2"])
    search = load_search(REPO / "configs" / "search.yaml",
                         ["train.steps=5", "train.eval_every=5", "train.checkpoint_every=5", "num_samples=3",
                          "storage_path=" + str(tmp_path)])
    assert search.base_config["train"]["steps"] == 5
    assert search.spec.num_samples == 3 and search.spec.storage_path == str(tmp_path)


@pytest.mark.parametrize("text, message", [
    ("num_sample: 2\n", "num_sample: unknown config key (did you mean num_samples?)"),
    ("resources: {cpu: 1}\n", "resources.cpu: unknown config key"),
    ("train: {stepz: 3}\n", "train.stepz: unknown config key"),
    ("scheduler: {type: hyperband}\n", "scheduler.type: expected one of fifo, asha, pbt"),
    ("mode: best\n", "mode: expected one of min, max"),
    ("space: {train.g_lrr: {choice: [0.1]}}\n", "space.train.g_lrr: not a training config setting"),
    ("space: {train: {choice: [1]}}\n", "space.train: not a training config setting"),
    ("space: {train.g_lr: 0.1}\n", "space.train.g_lr: expected one of {choice|grid|uniform|loguniform|randint"),
    ("space: {train.g_lr: {normal: [0, 1]}}\n", "unknown distribution 'normal'"),
    ("space: {train.g_lr: {uniform: [0.1]}}\n", "space.train.g_lr.uniform: expected [low, high] numbers"),
    ("space: {train.g_lr: {uniform: [0.2, 0.1]}}\n", "low must be < high"),
    ("space: {train.g_lr: {loguniform: [0, 0.1]}}\n", "bounds must be > 0"),
    ("space: {train.n_critic: {randint: [1.5, 3]}}\n", "expected integer bounds"),
    ("space: {model.width: {uniform: [4, 8]}}\n", "space: model.width: expected an integer"),
    ("space: {train.n_critic: {choice: [0, 2]}}\n", "space: train.n_critic: must be >= 1"),
    ("space: {model.width: {grid: []}}\n", "expected a non-empty list"),
    ("base: nowhere.yaml\n", "base: nowhere.yaml: config file not found"),
    ("experiment: a/b\n", "experiment: expected a plain name"),
    ("train: {eval_every: 4, checkpoint_every: 6}\n", "train.checkpoint_every: must be a multiple of train.eval_every"),
    ("scheduler: {type: pbt}\nspace: {model.width: {grid: [4, 8]}}\n", "pbt cannot mutate a grid"),
    ("resources: {workers: 0}\n", "resources.workers: must be >= 1"),
    ("seed: -1\n", "seed: must be >= 0"),
    ("seed: one\n", "seed: expected"),
    ("scheduler: {type: pbt}\nnum_samples: 4\nmax_concurrent_trials: 2\n", "max_concurrent_trials: pbt needs 0"),
])
def test_bad_search_files_name_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(InputError) as err:
        load_search(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_nested_space_and_every_distribution(tmp_path):
    path = write(tmp_path, """
        space:
          train:
            g_lr: {loguniform: [0.0001, 0.01]}
            d_lr: {uniform: [0.0001, 0.001]}
            n_critic: {randint: [1, 4]}
          model.width: {choice: [4, 8]}
          train.seed: {grid: [0, 1]}
    """)
    search = load_search(path)
    assert list(search.spec.space) == ["train.g_lr", "train.d_lr", "train.n_critic", "model.width", "train.seed"]


def test_base_resolves_next_to_the_search_file(tmp_path):
    (tmp_path / "preset.yaml").write_text("model: {width: 6}\n")
    path = write(tmp_path, "base: preset.yaml\n")
    assert load_search(path).base_config["model"]["width"] == 6


def test_checkpoint_rule_not_needed_for_always_reported_metrics(tmp_path):
    path = write(tmp_path, "metric: d_loss\ntrain: {eval_every: 4, checkpoint_every: 6}\n")
    assert load_search(path).spec.metric == "d_loss"


def test_snapshot_round_trip():
    search = load_search(REPO / "configs" / "search.yaml")
    again = search_from_dict(search_to_dict(search))
    assert again.spec == search.spec and again.base_config == search.base_config


def test_build_search_from_a_dict_without_a_file():
    search = build_search({"experiment": "x", "train": {"steps": 3}})
    assert search.spec.experiment == "x" and search.base_config["train"]["steps"] == 3


def test_commands_module_does_not_import_ray():
    import subprocess
    import sys

    code = ("import sys, argparse, cluster.commands as c; p = argparse.ArgumentParser(); "
            "c.register(p.add_subparsers()); print('ray' in sys.modules, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["False", "False"]


def test_snapshot_of_the_previous_format_resumes_as_it_ran():
    """A search snapshot saved before config_version holds a format-1 base_config: it is read by that format's
    rule, so a key it lacks takes the value its trials trained with (the old default), not default.yaml's."""
    from chorus.trainer.config import CONFIG_VERSION, read_yaml

    base = read_yaml(REPO / "tests" / "data" / "format1_run_config.yaml")
    del base["model"]["key_normalize"]
    snapshot = search_to_dict(load_search(REPO / "configs" / "search.yaml"))
    snapshot["base_config"] = base
    search = search_from_dict(snapshot)
    assert search.base_config["config_version"] == CONFIG_VERSION
    assert search.base_config["model"]["key_normalize"] is False
    from chorus.cluster.search_config import trial_config

    assert trial_config(search.base_config, {"train.g_lr": 2e-4}).model.key_normalize is False
