"""Config loading: defaults, presets, overrides, and errors that name the key."""
from __future__ import annotations

import pytest

from chorus.data.errors import InputError
from chorus.trainer.config import CONFIG_DIR, load_config


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
