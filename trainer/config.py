"""Typed run configuration: YAML files and dotted overrides, validated by pydantic into dataclasses.

Every default is written once, in configs/default.yaml. The dataclasses below hold types and ranges and no
defaults, so a new config is layered the one way `assemble_config` does it: default.yaml <- preset(s) <- `--set`.
A run saves its whole config with `config_version` (CONFIG_VERSION); a saved config of an older format is read by
the explicit rule in `upgrade_config_doc`, never by a second set of defaults. Unknown keys, missing keys, wrong
types and out-of-range values raise a one-line InputError naming the key.
"""
# No `from __future__ import annotations`: dataclasses.fields(Config) gives the section classes themselves.
import copy
import dataclasses
import difflib
import importlib.resources
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, TypeAdapter, ValidationError, with_config

from chorus.data.settings import SECTION, Bool, DataConfig, Int, Num, Str
from chorus.errors import InputError

# The bundled presets ship as package data (chorus.configs), so an installed wheel finds them from any directory.
CONFIG_DIR = Path(str(importlib.resources.files("chorus.configs")))


@with_config(SECTION)
@dataclass
class ModelConfig:
    width: Annotated[Int, Field(ge=1)]  # filters of the first down block
    z_channels: Annotated[Int, Field(ge=1)]  # noise channels at the 2x8 bottleneck
    kernel_size: Annotated[Int, Field(ge=1)]
    leaky_slope: Annotated[Num, Field(ge=0.0, le=1.0)]
    bn_momentum: Annotated[Num, Field(ge=0.0, le=1.0)]
    head: Literal["tanh", "categorical"]
    pitch_low: Annotated[Int, Field(ge=0, le=127)]  # lowest pitch the model sees
    pitch_window: Annotated[Int, Field(ge=16, le=128)]  # pitches the model sees
    copy_melody: Bool  # track 0 of the output is the conditioning melody
    hold_steps: Annotated[Int, Field(ge=1)]  # the head decides once per this many steps
    critic_harmony: Bool  # the critic also sees each step's pitch classes per voice
    critic_chords: Bool  # the critic also sees every step's whole chord (one kernel spans the pitch window)
    chord_layers: Annotated[Int, Field(ge=1)]  # per-step layers of that chord path: the spanning kernel, then 1x1s
    key_normalize: Bool  # train and generate in C: each window moved by its melody's key


@with_config(SECTION)
@dataclass
class TrainConfig:
    steps: Annotated[Int, Field(ge=1)]
    batch_size: Annotated[Int, Field(ge=1)]
    n_critic: Annotated[Int, Field(ge=1)]
    gp_weight: Annotated[Num, Field(ge=0.0)]
    d_lr: Annotated[Num, Field(gt=0.0)]
    g_lr: Annotated[Num, Field(gt=0.0)]
    lr_end_fraction: Annotated[Num, Field(ge=0.0, le=1.0)]  # linear decay; 1 = constant
    # samples, evaluation and `chorus generate` use an exponential moving average of the generator's weights
    ema_decay: Annotated[Num, Field(ge=0.0, le=0.9999)]  # 0 = off
    beta1: Annotated[Num, Field(ge=0.0, le=1.0)]
    beta2: Annotated[Num, Field(ge=0.0, le=1.0)]
    strategy: Literal["auto", "default", "mirrored", "multi_worker"]
    jit_compile: Bool
    mixed_precision: Bool
    seed: Int
    threads: Annotated[Int, Field(ge=0)]
    cpu_devices: Annotated[Int, Field(ge=1)]
    log_every: Annotated[Int, Field(ge=1)]
    eval_every: Annotated[Int, Field(ge=1)]
    checkpoint_every: Annotated[Int, Field(ge=1)]
    keep_checkpoints: Annotated[Int, Field(ge=1)]
    keep_worker_checkpoints: Bool
    sample_every: Annotated[Int, Field(ge=1)]
    augment_transpose: Annotated[Int, Field(ge=0, le=24)]  # random shift, +-semitones


@with_config(SECTION)
@dataclass
class EvalConfig:
    num_samples: Annotated[Int, Field(ge=1)]
    qualified_min_steps: Annotated[Int, Field(ge=1)]
    seed: Int


@with_config(SECTION)
@dataclass
class SampleConfig:
    num: Annotated[Int, Field(ge=1)]
    tempo: Annotated[Num, Field(gt=0.0)]
    programs: list[Int]
    track_names: list[Str]
    threshold: Annotated[Num, Field(ge=-1.0, le=1.0)]
    seed: Int
    audio: Literal["auto", "fluidsynth", "numpy", "none"]
    sample_rate: Annotated[Int, Field(ge=8000)]


@with_config(SECTION)
@dataclass
class RunConfig:
    dir: Str


@with_config(SECTION)
@dataclass
class Config:
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    eval: EvalConfig
    sample: SampleConfig
    run: RunConfig

    def to_dict(self) -> dict[str, Any]:
        """Everything a run needs to load again: every setting, and the format they are written in."""
        return {"config_version": CONFIG_VERSION, **dataclasses.asdict(self)}


# --------------------------------------------------------------------------------------------- versions
# The format of a saved config (a run's config.yaml, a checkpoint's, a search snapshot's base_config). Bump it when
# a change would make an old saved config load differently, and add that format's rule to upgrade_config_doc.
CONFIG_VERSION = 4

# Format 1: written before config_version existed (up to commit efacc32). Its loader filled a key that a saved
# config lacked (one saved before that key existed) from the dataclass defaults, which in eight places were not
# default.yaml's (model.hold_steps, model.key_normalize, train.steps, train.ema_decay, train.eval_every,
# train.checkpoint_every, train.sample_every, eval.num_samples). Those runs trained with these values. Frozen.
FORMAT_1_DEFAULTS: dict[str, Any] = {
    "data": {"source": "chorales", "path": None, "cache_dir": ".cache/chorus/data", "steps": 32, "pitches": 128,
             "tracks": 4, "steps_per_beat": 4, "beats_per_bar": 4, "hop_bars": 1, "transpose": 0,
             "empty_voice": "drop", "holdout_fraction": 0.1, "max_pieces": None, "seed": 0, "track_map": None,
             "order_by_pitch": False},
    "model": {"width": 16, "z_channels": 128, "kernel_size": 4, "leaky_slope": 0.2, "bn_momentum": 0.8,
              "head": "categorical", "pitch_low": 32, "pitch_window": 64, "copy_melody": True, "hold_steps": 1,
              "critic_harmony": False, "key_normalize": False},
    "train": {"steps": 300, "batch_size": 32, "n_critic": 5, "gp_weight": 10.0, "d_lr": 0.001, "g_lr": 0.001,
              "lr_end_fraction": 1.0, "ema_decay": 0.0, "beta1": 0.5, "beta2": 0.9, "strategy": "auto",
              "jit_compile": False, "mixed_precision": False, "seed": 0, "threads": 0, "cpu_devices": 1,
              "log_every": 10, "eval_every": 50, "checkpoint_every": 50, "keep_checkpoints": 5,
              "keep_worker_checkpoints": False, "sample_every": 50, "augment_transpose": 0},
    "eval": {"num_samples": 64, "qualified_min_steps": 2, "seed": 1234},
    "sample": {"num": 4, "tempo": 100.0, "programs": [0, 0, 0, 0], "track_names": ["soprano", "alto", "tenor", "bass"],
               "threshold": 0.0, "seed": 99, "audio": "auto", "sample_rate": 22050},
    "run": {"dir": "runs/default"},
}


# Format 2 (up to commit af23eba): format 3 without the keys added since. Those runs trained without them, so a
# format-1 or format-2 config that lacks one takes the value below (off), never default.yaml's. Frozen.
FORMAT_2_ADDED: dict[str, Any] = {"model": {"critic_chords": False}}

# Format 3 (up to commit 726cb3e): the chord path had one per-step layer. Frozen.
FORMAT_3_ADDED: dict[str, Any] = {"model": {"chord_layers": 1}}

# (format, the keys added after it with the values its runs trained with): a config of that format or older lacks
# them. A new format adds one row here.
ADDED_AFTER: tuple[tuple[int, dict[str, Any]], ...] = ((2, FORMAT_2_ADDED), (3, FORMAT_3_ADDED))


def upgrade_config_doc(doc: dict[str, Any], source: str = "") -> dict[str, Any]:
    """A config document in the current format (config_version: CONFIG_VERSION).

    - No config_version: format 1. Every key it lacks takes its FORMAT_1_DEFAULTS value, the one the run used.
    - Then, for each row of ADDED_AFTER whose format is this one or newer, every key it lacks takes that row's
      value (formats 1 and 2: FORMAT_2_ADDED; formats 1 to 3: FORMAT_3_ADDED).
    - config_version: CONFIG_VERSION: returned as it is; it must name every key (nothing is filled in).
    - Anything else was written by a newer chorus (or by hand) and is refused.
    """
    if not isinstance(doc, dict):
        return doc  # validation names the problem
    version = doc.get("config_version", 1)
    if isinstance(version, bool) or version not in tuple(range(1, CONFIG_VERSION + 1)):
        raise InputError(f"{source}config_version: this chorus reads formats 1 to {CONFIG_VERSION}, got {version!r}")
    rest = {k: v for k, v in doc.items() if k != "config_version"}
    if version == 1:
        rest = deep_merge(copy.deepcopy(FORMAT_1_DEFAULTS), rest)
    for last, added in ADDED_AFTER:
        if version <= last:
            rest = deep_merge(copy.deepcopy(added), rest)
    return {"config_version": CONFIG_VERSION, **rest}


# ---------------------------------------------------------------------------------------------- loading


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a syntax error is an InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{path}: YAML syntax error{where}: {problem}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a mapping of config sections at the top level, got {type(doc).__name__}")
    return doc


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """`train.g_lr=2e-4` -> (["train", "g_lr"], 2e-4); the value is parsed as YAML."""
    if "=" not in item:
        raise InputError(f"--set {item}: expected key=value, e.g. train.batch_size=32")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise InputError(f"--set {item}: expected a dotted key such as train.batch_size")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def set_key(doc: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of doc with the dotted key (`train.g_lr`) set to value, creating sections on the way."""
    nested: Any = value
    for part in reversed(key.split(".")):
        nested = {part: nested}
    return deep_merge(doc, nested)


def apply_overrides(doc: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`--set key=value` strings applied in order; the values are parsed as YAML."""
    for item in overrides:
        keys, value = parse_override(item)
        doc = set_key(doc, ".".join(keys), value)
    return doc


def _fields(cls: Any) -> dict[str, Any]:
    """{name: type} of a config dataclass (Annotated and `| None` unwrapped); {} for anything else."""
    if not dataclasses.is_dataclass(cls):
        return {}
    hints = typing.get_type_hints(cls)
    return {f.name: _unwrap(hints[f.name]) for f in dataclasses.fields(cls)}


def _unwrap(tp: Any) -> Any:
    while True:
        if typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) in (typing.Union, types.UnionType):
            inner = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(inner) != 1:
                return tp
            tp = inner[0]
        else:
            return tp


def _key(loc: tuple) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _first(errors: list[dict[str, Any]], cls: type) -> dict[str, Any]:
    """The error to report: the first in field order, depth first, an unknown key before its known siblings."""
    def order(error: dict[str, Any]) -> tuple:
        rank, tp = [], cls
        for part in error["loc"]:
            fields = _fields(tp)
            if isinstance(part, int):
                rank.append(part + 1)
                tp = typing.get_args(tp)[0] if typing.get_args(tp) else Any
            else:
                names = list(fields)
                rank.append(names.index(part) + 1 if part in names else 0)
                tp = fields.get(part, Any)
        return tuple(rank)

    return min(errors, key=order)


def _message(error: dict[str, Any], cls: type, source: str) -> str:
    """One line in chorus's words: `<file>: <dotted key>: <what was wrong>, got <value>`."""
    loc, kind, value, ctx = error["loc"], error["type"], error.get("input"), error.get("ctx") or {}
    key = _key(loc) or "config"
    parent = cls
    for part in loc[:-1]:
        parent = _fields(parent).get(part, Any) if not isinstance(part, int) else Any
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        prefix = _key(loc[:-1]) + "." if len(loc) > 1 else ""
        names = list(_fields(parent))
        near = difflib.get_close_matches(str(loc[-1]), names, n=1)
        hint = f" (did you mean {prefix}{near[0]}?)" if near else f" (known keys: {', '.join(names)})"
        return f"{source}{key}: unknown config key{hint}"
    if kind == "missing":
        return _missing_message(key, source)
    if kind == "literal_error":
        choices = typing.get_args(_fields(parent).get(loc[-1])) or (ctx.get("expected"),)
        return f"{source}{key}: expected one of {', '.join(map(str, choices))}, got {value!r}"
    bounds = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
              "less_than": ("<", "lt")}
    if kind in bounds:
        op, name = bounds[kind]
        return f"{source}{key}: must be {op} {ctx[name]}, got {value!r}"
    if kind == "nan":
        return f"{source}{key}: expected a number, got NaN"
    expected = {"int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
                "bool_type": "true or false", "bool_parsing": "true or false", "string_type": "a string",
                "list_type": "a list", "number": "a number", "float_type": "a number", "float_parsing": "a number",
                "dataclass_type": "a mapping", "dataclass_args_type": "a mapping", "dict_type": "a mapping",
                "model_type": "a mapping"}.get(kind)
    what = f"expected {expected}" if expected else error["msg"]
    return f"{source}{key}: {what}, got {value!r}"


def build_dataclass(cls: type, doc: Any, source: str = "") -> Any:
    """Validate a mapping into config dataclass `cls` (pydantic: types, ranges, choices, no unknown keys);
    an InputError names the first bad key and suggests the nearest known one for a misspelt key."""
    try:
        return TypeAdapter(cls).validate_python(doc)
    except ValidationError as exc:
        raise InputError(_message(_first(exc.errors(), cls), cls, source)) from None


def _missing_message(key: str, source: str) -> str:
    return f"{source}{key}: missing config key (a config_version {CONFIG_VERSION} config names every key)"


def _missing(cls: Any, doc: Any, prefix: str = "") -> str | None:
    """The first key of `cls` that `doc` lacks (DataConfig has defaults, so pydantic would fill them silently)."""
    fields = _fields(cls)
    if not fields or not isinstance(doc, dict):
        return None
    for name, tp in fields.items():
        if name not in doc:
            return f"{prefix}{name}"
        found = _missing(tp, doc[name], f"{prefix}{name}.")
        if found:
            return found
    return None


def check_consistency(cfg: Config, source: str = "") -> None:
    """Cross-field rules that no single key can express."""
    k = cfg.data.tracks
    for key in ("programs", "track_names"):
        if len(getattr(cfg.sample, key)) != k:
            raise InputError(f"{source}sample.{key}: expected {k} entries (one per data.tracks), "
                             f"got {len(getattr(cfg.sample, key))}")
    if any(not 0 <= p <= 127 for p in cfg.sample.programs):
        raise InputError(f"{source}sample.programs: MIDI programs must be in 0..127")
    # The U-Net halves time and pitch four times, then doubles back.
    for key, size in (("data.steps", cfg.data.steps), ("data.pitches", cfg.data.pitches)):
        if size % 16:
            raise InputError(f"{source}{key}: must be a multiple of 16 for the U-Net's four down blocks, got {size}")
    m = cfg.model
    if m.pitch_window % 16:
        raise InputError(f"{source}model.pitch_window: must be a multiple of 16 for the U-Net's four down blocks, "
                         f"got {m.pitch_window}")
    if m.pitch_low + m.pitch_window > cfg.data.pitches:
        raise InputError(f"{source}model.pitch_low: the window {m.pitch_low}..{m.pitch_low + m.pitch_window - 1} "
                         f"must lie inside the {cfg.data.pitches} pitches of data.pitches")
    if m.key_normalize and cfg.train.augment_transpose:
        raise InputError(f"{source}model.key_normalize: moves every window to C, which random transposition "
                         f"(train.augment_transpose: {cfg.train.augment_transpose}) would undo; set one of them off")
    if cfg.data.steps % m.hold_steps:
        raise InputError(f"{source}model.hold_steps: must divide data.steps ({cfg.data.steps}), got {m.hold_steps}")
    if cfg.data.steps % cfg.data.steps_per_bar and cfg.data.steps > cfg.data.steps_per_bar:
        raise InputError(f"{source}data.steps: must be a whole number of bars "
                         f"({cfg.data.steps_per_bar} steps each), got {cfg.data.steps}")
    if cfg.data.source in ("midi", "npy", "dataset") and not cfg.data.path:
        raise InputError(f"{source}data.path: required when data.source is {cfg.data.source}")


def default_config_path() -> Path:
    return CONFIG_DIR / "default.yaml"


def preset_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name: str | Path, *, next_to: Path | None = None, key: str = "--config") -> Path:
    """A config file: a path that exists (or one next to `next_to`), else a bundled preset by name.

    `tiny`, `tiny.yaml` and `configs/tiny.yaml` all name the bundled preset, from any working directory.
    """
    path = Path(name)
    candidates = [path]
    if next_to is not None and not path.is_absolute():
        candidates.append(next_to / path)
    if not path.is_absolute() and path.parent in (Path("."), Path("configs")):
        candidates.append(CONFIG_DIR / (path.name if path.suffix else path.name + ".yaml"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    where = f" here or next to {next_to}" if next_to else ""
    raise InputError(f"{key}: {name}: config file not found (not a path{where}, "
                     f"nor a bundled preset: {', '.join(preset_names())})")


def assemble_config(*docs: dict[str, Any], overrides: list[str] | None = None, source: str = "") -> Config:
    """The one way a training config is layered: default.yaml <- each of `docs` in turn (a preset, a search's
    base, a search file's sections) <- `--set` overrides; then validated. Used by `chorus train` and the search."""
    doc = {"config_version": CONFIG_VERSION, **read_yaml(default_config_path())}
    for layer in docs:
        doc = deep_merge(doc, layer)
    return config_from_dict(apply_overrides(doc, overrides or []), source=source)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """default.yaml <- preset file <- --set overrides, validated into a Config."""
    if path is None:
        return assemble_config(overrides=overrides)
    path = resolve_config_path(path)
    return assemble_config(read_yaml(path), overrides=overrides, source=f"{path}: ")


def config_from_dict(doc: dict[str, Any], values: dict[str, Any] | None = None, source: str = "") -> Config:
    """The one place a Config is validated (the CLI, saved runs, search trials): a document of sections, brought
    to the current format by upgrade_config_doc, then `values` as {dotted key: value} on top, validated (types,
    ranges, every key present, cross-field rules)."""
    doc = upgrade_config_doc(doc, source)
    for key, value in (values or {}).items():
        doc = set_key(doc, key, value)
    doc = {k: v for k, v in doc.items() if k != "config_version"} if isinstance(doc, dict) else doc
    cfg = build_dataclass(Config, doc, source=source)
    missing = _missing(Config, doc)
    if missing:
        raise InputError(_missing_message(missing, source))
    check_consistency(cfg, source)
    return cfg


def dump_config(cfg: Config) -> str:
    """The YAML a run saves: every setting and config_version, so that the run loads again as it trained."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def require_tf_config(strategy: str) -> None:
    """multi_worker needs TF_CONFIG; checked before TensorFlow starts (and again by the strategy)."""
    import os

    if strategy == "multi_worker" and not os.environ.get("TF_CONFIG"):
        raise InputError("train.strategy: multi_worker needs TF_CONFIG (the cluster's workers and this task's "
                         "place), which is not set; use auto, default or mirrored on one machine")
