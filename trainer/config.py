"""Typed run configuration: YAML files and dotted overrides, validated into dataclasses.

Every default lives in configs/default.yaml; the dataclass defaults below mirror it so that a preset only
needs to name what it changes. Unknown keys, wrong types and out-of-range values raise InputError naming the key.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chorus.data.errors import InputError
from chorus.data.settings import DataConfig

# The bundled presets ship as package data (chorus.configs), so an installed wheel finds them from any directory.
CONFIG_DIR = Path(str(importlib.resources.files("chorus.configs")))


@dataclass
class ModelConfig:
    width: int = field(default=16, metadata={"min": 1})  # filters of the first down block; the lab uses 64
    z_channels: int = field(default=128, metadata={"min": 1})  # noise channels at the 2x8 bottleneck; lab 512
    kernel_size: int = field(default=4, metadata={"min": 1})
    leaky_slope: float = field(default=0.2, metadata={"min": 0.0, "max": 1.0})
    bn_momentum: float = field(default=0.8, metadata={"min": 0.0, "max": 1.0})
    head: str = field(default="categorical", metadata={"choices": ["tanh", "categorical"]})  # the lab: tanh
    pitch_low: int = field(default=32, metadata={"min": 0, "max": 127})  # lowest pitch the model sees; lab 0
    pitch_window: int = field(default=64, metadata={"min": 16, "max": 128})  # pitches the model sees; lab 128
    copy_melody: bool = True  # track 0 of the output is the conditioning melody; the lab: false
    hold_steps: int = field(default=1, metadata={"min": 1})  # the head decides once per this many steps; lab 1
    critic_harmony: bool = False  # the critic also sees each step's pitch classes per voice; the lab: false
    key_normalize: bool = False  # train and generate in C: each window moved by its melody's key; the lab: false


@dataclass
class TrainConfig:
    steps: int = field(default=300, metadata={"min": 1})
    batch_size: int = field(default=32, metadata={"min": 1})
    n_critic: int = field(default=5, metadata={"min": 1})
    gp_weight: float = field(default=10.0, metadata={"min": 0.0})
    d_lr: float = field(default=1e-3, metadata={"min_exclusive": 0.0})
    g_lr: float = field(default=1e-3, metadata={"min_exclusive": 0.0})
    lr_end_fraction: float = field(default=1.0, metadata={"min": 0.0, "max": 1.0})  # linear decay; 1 = constant
    # samples, evaluation and `chorus generate` use an exponential moving average of the generator's weights
    ema_decay: float = field(default=0.0, metadata={"min": 0.0, "max": 0.9999})  # 0 = off (the lab)
    beta1: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    beta2: float = field(default=0.9, metadata={"min": 0.0, "max": 1.0})
    strategy: str = field(default="auto", metadata={"choices": ["auto", "default", "mirrored", "multi_worker"]})
    jit_compile: bool = False
    mixed_precision: bool = False
    seed: int = 0
    threads: int = field(default=0, metadata={"min": 0})
    cpu_devices: int = field(default=1, metadata={"min": 1})
    log_every: int = field(default=10, metadata={"min": 1})
    eval_every: int = field(default=50, metadata={"min": 1})
    checkpoint_every: int = field(default=50, metadata={"min": 1})
    keep_checkpoints: int = field(default=5, metadata={"min": 1})
    keep_worker_checkpoints: bool = False
    sample_every: int = field(default=50, metadata={"min": 1})
    augment_transpose: int = field(default=0, metadata={"min": 0, "max": 24})  # random shift, +-semitones


@dataclass
class EvalConfig:
    num_samples: int = field(default=64, metadata={"min": 1})
    qualified_min_steps: int = field(default=2, metadata={"min": 1})
    seed: int = 1234


@dataclass
class SampleConfig:
    num: int = field(default=4, metadata={"min": 1})
    tempo: float = field(default=100.0, metadata={"min_exclusive": 0.0})
    programs: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    track_names: list[str] = field(default_factory=lambda: ["soprano", "alto", "tenor", "bass"])
    threshold: float = field(default=0.0, metadata={"min": -1.0, "max": 1.0})
    seed: int = 99
    audio: str = field(default="auto", metadata={"choices": ["auto", "fluidsynth", "numpy", "none"]})
    sample_rate: int = field(default=22050, metadata={"min": 8000})


@dataclass
class RunConfig:
    dir: str = "runs/default"


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, meta: dict[str, Any], source: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, meta, source)
    if origin is list:
        if not isinstance(value, list):
            raise InputError(f"{source}{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]", {}, source) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(f"{source}{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{source}{key}: expected an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 2e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{source}{key}: expected a number, got {value!r}")
        value = float(value)
        if value != value:
            raise InputError(f"{source}{key}: expected a number, got NaN")
    elif tp is str:
        if not isinstance(value, str):
            raise InputError(f"{source}{key}: expected a string, got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        raise InputError(f"{source}{key}: expected one of {', '.join(map(str, meta['choices']))}, got {value!r}")
    if "min" in meta and value < meta["min"]:
        raise InputError(f"{source}{key}: must be >= {meta['min']}, got {value!r}")
    if "min_exclusive" in meta and value <= meta["min_exclusive"]:
        raise InputError(f"{source}{key}: must be > {meta['min_exclusive']}, got {value!r}")
    if "max" in meta and value > meta["max"]:
        raise InputError(f"{source}{key}: must be <= {meta['max']}, got {value!r}")
    return value


def build_dataclass(cls: type, doc: Any, prefix: str = "", source: str = "") -> Any:
    """Validate a mapping into dataclass `cls`; errors name the dotted key and suggest near misses."""
    if not isinstance(doc, dict):
        raise InputError(f"{source}{prefix.rstrip('.') or 'config'}: expected a mapping, got {doc!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in doc:
        if key not in fields:
            near = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {prefix}{near[0]}?)" if near else f" (known keys: {', '.join(fields)})"
            raise InputError(f"{source}{prefix}{key}: unknown config key{hint}")
    kwargs = {}
    for name, f in fields.items():
        if name not in doc:
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = build_dataclass(tp, doc[name], f"{prefix}{name}.", source)
        else:
            kwargs[name] = _coerce(doc[name], tp, f"{prefix}{name}", dict(f.metadata), source)
    return cls(**kwargs)


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


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """default.yaml <- preset file <- --set overrides, validated into a Config."""
    doc = read_yaml(default_config_path()) if default_config_path().is_file() else {}
    source = ""
    if path is not None:
        path = resolve_config_path(path)
        source = f"{path}: "
        if path != default_config_path().resolve():
            doc = deep_merge(doc, read_yaml(path))
    return config_from_dict(apply_overrides(doc, overrides or []), source=source)


def config_from_dict(doc: dict[str, Any], values: dict[str, Any] | None = None, source: str = "") -> Config:
    """The one place a Config is assembled (the CLI, saved runs, search trials): a document of sections, then
    `values` as {dotted key: value} on top, validated (types, ranges, cross-field rules)."""
    for key, value in (values or {}).items():
        doc = set_key(doc, key, value)
    cfg = build_dataclass(Config, doc, source=source)
    check_consistency(cfg, source)
    return cfg


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def require_tf_config(strategy: str) -> None:
    """multi_worker needs TF_CONFIG; checked before TensorFlow starts (and again by the strategy)."""
    import os

    if strategy == "multi_worker" and not os.environ.get("TF_CONFIG"):
        raise InputError("train.strategy: multi_worker needs TF_CONFIG (the cluster's workers and this task's "
                         "place), which is not set; use auto, default or mirrored on one machine")
