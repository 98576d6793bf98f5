"""Config loading: defaults, presets, overrides, and errors that name the key."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from chorus.errors import InputError
from chorus.trainer.config import CONFIG_DIR, CONFIG_VERSION, config_from_dict, dump_config, load_config, read_yaml


def test_default_config_lists_every_setting():
    import dataclasses

    import yaml

    from chorus.trainer.config import Config

    doc = yaml.safe_load((CONFIG_DIR / "default.yaml").read_text())
    for section in dataclasses.fields(Config):
        names = {f.name for f in dataclasses.fields(section.type if not isinstance(section.type, str)
                                                    else getattr(Config(), section.name).__class__)}
        assert set(doc[section.name]) == names, section.name


def test_presets_load_and_only_change_what_they_name():
    lab = load_config(CONFIG_DIR / "lab.yaml")
    assert (lab.model.width, lab.model.z_channels, lab.train.batch_size, lab.train.n_critic) == (64, 512, 64, 5)
    assert (lab.train.d_lr, lab.train.g_lr, lab.train.beta1, lab.train.beta2) == (1e-3, 1e-3, 0.5, 0.9)
    assert lab.train.gp_weight == 10.0 and lab.train.steps == 1000
    assert lab.data == load_config().data
    # the long preset: the default's model family, longer; only what its file names differs
    long, default = load_config("long").to_dict(), load_config().to_dict()
    changed = {f"{section}.{key}" for section, values in default.items() if isinstance(values, dict)
               for key in values if long[section][key] != values[key]}
    named = yaml.safe_load((CONFIG_DIR / "long.yaml").read_text())
    assert changed == {f"{section}.{key}" for section in named for key in named[section]}
    assert changed == {"model.width", "train.steps", "train.lr_end_fraction", "train.eval_every",
                       "train.checkpoint_every", "train.sample_every", "run.dir"}


def test_dotted_overrides_are_typed():
    cfg = load_config(None, ["train.batch_size=32", "train.g_lr=2e-4", "train.jit_compile=false"])
    assert cfg.train.batch_size == 32 and cfg.train.g_lr == 2e-4 and cfg.train.jit_compile is False


@pytest.mark.parametrize("override, message", [
    ("train.glr=1", "train.glr: unknown config key (did you mean train.g_lr?)"),
    ("trian.steps=1", "trian: unknown config key (did you mean train?)"),
    ("train.g_lr=-0.001", "train.g_lr: must be > 0.0"),
    ("train.batch_size=abc", "train.batch_size: expected an integer"),
    ("train.batch_size=1.5", "train.batch_size: expected an integer"),
    ("train.strategy=tpu", "train.strategy: expected one of auto, default, mirrored, multi_worker"),
    ("train.jit_compile=maybe", "train.jit_compile: expected true or false"),
    ("sample.programs=[0, 0]", "sample.programs: expected 4 entries"),
    ("data.steps=24", "data.steps: must be a multiple of 16"),
    ("data.source=midi", "data.path: required when data.source is midi"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(InputError) as err:
        load_config(None, [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  steps: [1, 2\n")
    with pytest.raises(InputError, match=r"bad.yaml: YAML syntax error \(line \d+"):
        load_config(bad)


def test_unknown_key_in_file_names_the_file(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("model:\n  widht: 8\n")
    with pytest.raises(InputError, match=r"x.yaml: model.widht: unknown config key \(did you mean model.width\?\)"):
        load_config(f)


# ------------------------------------------------------------------------------ one source for every default

DATA = Path(__file__).resolve().parent / "data"


def _leaves(doc: dict, prefix: str = "") -> list[str]:
    return [k for key, value in doc.items()
            for k in (_leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"])]


def _without(doc: dict, key: str) -> dict:
    head, _, rest = key.partition(".")
    return {k: (_without(v, rest) if k == head and rest else v) for k, v in doc.items() if not (k == head and not rest)}


def test_the_typed_model_writes_no_default():
    """default.yaml is the one place a default is written: the training sections have none, and DataConfig's
    (kept for building datasets in code) are read from default.yaml, so the two cannot drift apart."""
    import dataclasses

    from chorus.data.settings import DataConfig
    from chorus.trainer.config import Config

    for section in dataclasses.fields(Config):
        if section.type is DataConfig:
            continue
        for f in dataclasses.fields(section.type):
            assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, \
                f"{section.name}.{f.name} has a default in the model; write it in configs/default.yaml only"
    default_data = yaml.safe_load((CONFIG_DIR / "default.yaml").read_text())["data"]
    assert dataclasses.asdict(DataConfig()) == default_data


def _current_doc() -> dict:
    return yaml.safe_load(dump_config(load_config()))


@pytest.mark.parametrize("key", _leaves(yaml.safe_load((CONFIG_DIR / "default.yaml").read_text())))
def test_every_key_of_default_yaml_is_required(key):
    """A config in the current format that lacks a key is refused: nothing else could supply its value."""
    doc = _current_doc()
    assert doc["config_version"] == CONFIG_VERSION
    config_from_dict(doc)
    with pytest.raises(InputError, match=rf"^{re.escape(key)}: missing config key"):
        config_from_dict(_without(doc, key))


def test_saved_config_records_its_version_and_loads_back():
    cfg = load_config("tiny", ["train.steps=7"])
    doc = yaml.safe_load(dump_config(cfg))
    assert list(doc)[0] == "config_version" and doc["config_version"] == CONFIG_VERSION
    assert config_from_dict(doc) == cfg
    with pytest.raises(InputError, match=r"x.yaml: config_version: this chorus reads formats 1 to \d+, got 99"):
        config_from_dict({**doc, "config_version": 99}, source="x.yaml: ")


def test_format_1_run_loads_with_exactly_the_values_it_trained_with():
    """tests/data/format1_run_config.yaml is a run's config.yaml as chorus wrote it before config_version."""
    saved = read_yaml(DATA / "format1_run_config.yaml")
    assert "config_version" not in saved
    loaded = config_from_dict(saved).to_dict()
    assert loaded.pop("config_version") == CONFIG_VERSION
    assert loaded["model"].pop("critic_chords") is False  # added in format 3: format-1 runs trained without it
    assert loaded["model"].pop("chord_layers") == 1  # added in format 4
    assert loaded == saved


def test_format_2_run_loads_without_the_keys_added_since():
    """A config_version 2 run (saved before model.critic_chords existed) trained without the chord path, although
    default.yaml now turns it on; every other key is read as it was saved, and a format-2 config must name them."""
    saved = _without(_current_doc(), "model.critic_chords")
    saved["config_version"] = 2
    cfg = config_from_dict(saved)
    assert cfg.model.critic_chords is False and load_config().model.critic_chords is True
    assert cfg.to_dict()["config_version"] == CONFIG_VERSION
    with pytest.raises(InputError, match=r"^model.width: missing config key"):
        config_from_dict(_without(saved, "model.width"))


def test_format_3_run_keeps_its_one_layer_chord_path():
    """A config_version 3 run (saved before model.chord_layers existed) trained a chord path of one per-step layer,
    although default.yaml now asks for two: its checkpoints load only into the model it trained."""
    saved = _without(_current_doc(), "model.chord_layers")
    saved["config_version"] = 3
    cfg = config_from_dict(saved)
    assert cfg.model.chord_layers == 1 and load_config().model.chord_layers == 2
    assert cfg.model.critic_chords is True  # a format-3 key: read as saved
    with pytest.raises(InputError, match=r"^model.critic_chords: missing config key"):
        config_from_dict(_without(saved, "model.critic_chords"))


DRIFTED = {"model.hold_steps": 1, "model.key_normalize": False, "train.steps": 300, "train.ema_decay": 0.0,
           "train.eval_every": 50, "train.checkpoint_every": 50, "train.sample_every": 50, "eval.num_samples": 64}


def test_format_1_keys_it_lacks_take_the_values_old_code_used():
    """A format-1 run saved before a key existed trained with the old dataclass default (frozen in
    FORMAT_1_DEFAULTS), not with default.yaml's value: key_normalize off, hold_steps 1, and so on."""
    saved = read_yaml(DATA / "format1_run_config.yaml")
    for key in DRIFTED:
        saved = _without(saved, key)
    cfg = config_from_dict(saved)
    for key, old in DRIFTED.items():
        section, name = key.split(".")
        assert getattr(getattr(cfg, section), name) == old, key
    current = load_config()
    assert all(getattr(getattr(current, k.split(".")[0]), k.split(".")[1]) != v for k, v in DRIFTED.items())


def test_format_1_table_is_what_the_old_dataclasses_held():
    """format1_dataclass_defaults.yaml was generated from the old code (Config().to_dict())."""
    from chorus.trainer.config import FORMAT_1_DEFAULTS

    assert FORMAT_1_DEFAULTS == read_yaml(DATA / "format1_dataclass_defaults.yaml")


def test_a_format_1_run_can_be_resumed_with_the_config_it_made(tmp_path):
    from chorus.trainer.rundir import check_resumable

    (tmp_path / "config.yaml").write_text((DATA / "format1_run_config.yaml").read_text())
    cfg = config_from_dict(read_yaml(DATA / "format1_run_config.yaml"))
    check_resumable(tmp_path, cfg.to_dict())
    with pytest.raises(InputError, match="model.hold_steps=2, not 1"):
        check_resumable(tmp_path, config_from_dict(read_yaml(DATA / "format1_run_config.yaml"),
                                                   {"model.hold_steps": 1}).to_dict())


def test_search_and_train_layer_the_same_way():
    """One function layers default.yaml <- base <- file <- --set for `chorus train` and `chorus search`."""
    from chorus.cluster.search_config import build_search

    search = build_search({"base": "tiny", "train": {"steps": 9}}, overrides=["train.g_lr=2e-4"])
    trained = load_config("tiny", ["train.steps=9", "train.g_lr=2e-4"]).to_dict()
    trained["data"]["cache_dir"] = search.base_config["data"]["cache_dir"]  # a search makes paths absolute
    assert search.base_config == trained
