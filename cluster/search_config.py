"""The search YAML: a training preset plus what to search, validated with the same loader as training configs.

A search file holds two kinds of top-level keys:
- the training config sections (data, model, train, eval, sample, run), exactly as in a preset; they override
  `base` (itself over configs/default.yaml);
- the search settings below (`SearchSpec`): the space, the scheduler, resources, storage, and so on.

`--set` overrides are routed by their first key: `--set train.steps=20` changes the training config,
`--set num_samples=2` the search. Nothing here imports Ray; `cluster.tune_adapter` turns a `Search` into Tune
objects.
"""
import dataclasses
import difflib
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, with_config

from chorus.data.settings import SECTION, Bool, Int, Num, Str
from chorus.errors import InputError
from chorus.trainer.config import (
    Config,
    apply_overrides,
    assemble_config,
    build_dataclass,
    config_from_dict,
    read_yaml,
    resolve_config_path,
    upgrade_config_doc,
)

TRAINING_SECTIONS = tuple(f.name for f in dataclasses.fields(Config))  # data, model, train, eval, sample, run
DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "randint")
ALWAYS_REPORTED = ("d_loss", "g_loss", "step", "samples_per_sec")  # in every trainer report, not only at evals


@with_config(SECTION)
@dataclass
class SchedulerSpec:
    type: Literal["fifo", "asha", "pbt"] = "fifo"
    grace_period: Annotated[Int, Field(ge=1)] = 1  # asha: steps before a trial may be stopped
    reduction_factor: Annotated[Num, Field(gt=1.0)] = 2.0  # asha: keep 1/factor per rung
    perturbation_interval: Annotated[Int, Field(ge=0)] = 0  # pbt: steps per exploit; 0 = checkpoint_every
    quantile_fraction: Annotated[Num, Field(ge=0.0, le=0.5)] = 0.25  # pbt: share that copies the top


@with_config(SECTION)
@dataclass
class ResourcesSpec:
    cpus: Annotated[Num, Field(gt=0.0)] = 1.0  # CPUs per trial (per worker when workers > 1)
    gpus: Annotated[Num, Field(ge=0.0)] = 0.0  # GPUs per trial (per worker when workers > 1)
    workers: Annotated[Int, Field(ge=1)] = 1  # > 1: each trial is a multi-worker TensorflowTrainer run


# The search settings have no file of defaults: each is written once, here.
@with_config(SECTION)
@dataclass
class SearchSpec:
    experiment: Str = "chorus-search"  # results/<experiment>/ and the Ray experiment name (what --resume takes)
    base: Str | None = None  # training preset under this file (CWD, this file's dir, repo); null = default.yaml
    space: Any = field(default_factory=dict)  # dotted config key -> {choice|grid|uniform|loguniform|randint: [...]}
    num_samples: Annotated[Int, Field(ge=1)] = 1  # samples of the space (times every grid combination)
    metric: Str = "music_distance"  # reported metric that ranks trials and checkpoints
    mode: Literal["min", "max"] = "min"
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    max_concurrent_trials: Annotated[Int, Field(ge=0)] = 0  # 0 = as many as the resources allow
    max_failures: Annotated[Int, Field(ge=-1)] = 2  # retries per trial from its checkpoint; -1 = forever
    num_to_keep: Annotated[Int, Field(ge=1)] = 2  # checkpoints kept per trial: best by metric (+ latest)
    storage_path: Str | None = None  # Ray storage: dir, shared volume or s3://; null = $CHORUS_STORAGE_PATH or runs/ray
    results_dir: Str | None = None  # <results_dir>/<experiment>/ (path or s3://); null = $CHORUS_RESULTS_DIR or results
    threads: Annotated[Int, Field(ge=0)] = 0  # TF threads per trial (per worker); 0 = from resources.cpus
    time_budget_s: Annotated[Num, Field(ge=0.0)] = 0.0  # stop every trial after this long; 0 = none
    reuse_actors: Bool = True  # a trial process runs the next trial: TensorFlow stays imported, the step traced
    seed: Annotated[Int, Field(ge=0)] | None = None  # draws of the space; null = different each search


@dataclass
class Search:
    """A validated search: settings, the resolved training config (as a plain dict) and where it came from."""

    spec: SearchSpec
    base_config: dict[str, Any]  # the full training config every trial starts from (paths made absolute)
    source: str = ""  # the file it was read from, for messages


# --------------------------------------------------------------------------------------------- loading


def is_uri(path: str | None) -> bool:
    return bool(path) and "://" in str(path)


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """Route `--set` items: training-config keys (train.steps=...) vs search keys (num_samples=...)."""
    training, search = [], []
    for item in overrides:
        head = item.split("=", 1)[0].strip().split(".", 1)[0]
        (training if head in TRAINING_SECTIONS else search).append(item)
    return training, search


def _resolve_base(base: str, search_file: Path | None, source: str) -> Path:
    """`base` is a file (relative to the working directory or to the search file) or a bundled preset name."""
    return resolve_config_path(base, next_to=search_file.parent if search_file else None, key=f"{source}base")


def default_storage_path() -> str:
    """Where Ray keeps a search when the YAML does not say: the node's CHORUS_STORAGE_PATH (the compose image sets
    the shared volume), else runs/ray under the working directory."""
    return _absolute(os.environ.get("CHORUS_STORAGE_PATH") or os.path.join("runs", "ray"))


def default_results_dir() -> str:
    """CHORUS_RESULTS_DIR (the compose head sets its results mount), else results/ under the working directory."""
    return _absolute(os.environ.get("CHORUS_RESULTS_DIR") or "results")


def _absolute(path: str | None) -> str | None:
    if path is None or is_uri(path) or os.path.isabs(path):
        return path
    return os.path.abspath(path)


def config_field(key: str) -> dataclasses.Field | None:
    """The dataclass field a dotted training-config key names, or None when it names no leaf setting."""
    cls: Any = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(cls):
            return None
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            return None
        hints = typing.get_type_hints(cls)
        if i == len(parts) - 1:
            return None if dataclasses.is_dataclass(hints[part]) else fields[part]
        cls = hints[part]
    return None


def _check_dimension(key: str, spec: Any, source: str) -> tuple[str, list[Any]]:
    """Validate one space entry; return its kind and the values that must each be a valid setting."""
    where = f"{source}space.{key}"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise InputError(f"{where}: expected one of {{{'|'.join(DISTRIBUTIONS)}: [...]}}, got {spec!r}")
    kind, args = next(iter(spec.items()))
    if kind not in DISTRIBUTIONS:
        raise InputError(f"{where}: unknown distribution {kind!r} (expected one of {', '.join(DISTRIBUTIONS)})")
    if not isinstance(args, list) or not args:
        raise InputError(f"{where}.{kind}: expected a non-empty list, got {args!r}")
    if kind in ("choice", "grid"):
        return kind, list(args)
    if len(args) != 2 or any(isinstance(a, bool) or not isinstance(a, (int, float)) for a in args):
        raise InputError(f"{where}.{kind}: expected [low, high] numbers, got {args!r}")
    low, high = args
    if not low < high:
        raise InputError(f"{where}.{kind}: low must be < high, got {args!r}")
    if kind == "loguniform" and low <= 0:
        raise InputError(f"{where}.loguniform: bounds must be > 0, got {args!r}")
    if kind == "randint":
        if not all(isinstance(a, int) for a in args):
            raise InputError(f"{where}.randint: expected integer bounds [low, high), got {args!r}")
        return kind, [low, high - 1]
    return kind, [float(low), float(high), float(math.sqrt(low * high)) if kind == "loguniform" else (low + high) / 2]


def trial_config(base_config: dict[str, Any], params: dict[str, Any], source: str = "") -> Config:
    """The validated training config of one trial: the base with the sampled values of the space applied."""
    return config_from_dict(base_config, params, source=source)


def _check_space(spec: SearchSpec, base_config: dict[str, Any], source: str) -> None:
    for key, dim in spec.space.items():
        if not isinstance(key, str) or config_field(key) is None:
            raise InputError(f"{source}space.{key}: not a training config setting (expected a dotted key such as "
                             f"train.g_lr or model.width)")
        kind, values = _check_dimension(key, dim, source)
        for value in values:  # each value must be a valid setting: type, range, cross-field rules
            trial_config(base_config, {key: value}, source=f"{source}space: ")
        if spec.scheduler.type == "pbt" and kind == "grid":
            raise InputError(f"{source}space.{key}: pbt cannot mutate a grid; use choice")


# what Tune adds to every result, and what cluster.tune_adapter adds to the trainer's report
TUNE_REPORTED = ("training_iteration", "time_this_iter_s", "time_total_s", "time_since_restore",
                 "iterations_since_restore", "timestamp", "pid")
ADAPTER_REPORTED = ("resumed_from_step", "ray_report_s", "ray_setup_s", "rank0_pid")


def reported_metrics(cfg: Config) -> set[str]:
    """Every number a trial of this config reports to Tune: the trainer's row (losses, speed), its evaluation
    (music_distance, its groups, per-track metrics, tonal distances) and what Tune and the adapter add."""
    from chorus.data import metrics, objective

    names = {*ALWAYS_REPORTED, *TUNE_REPORTED, *ADAPTER_REPORTED, "wall_seconds", "start_up_s", "warm_start",
             "music_distance", "music_distance_version", "music_distance_n"}
    if cfg.train.ema_decay:
        names.add("music_distance_raw")
    specs = objective.VOICE_FEATURES | objective.PAIR_FEATURES | objective.SAMPLE_FEATURES
    names |= {f"music_distance_{group}" for group, _ in specs.values()}
    tracks = list(cfg.sample.track_names)
    names |= {f"{track}_{m}" for track in tracks for m in metrics.PER_TRACK}
    names |= {f"tonal_distance_{pair}" for pair in metrics._pair_names(tracks).values()}
    return names


def _check_metric(spec: SearchSpec, cfg: Config, source: str) -> None:
    """The metric is one that trials report, and every checkpoint is scored by its own evaluation, so that
    `best by metric` means what it says."""
    known = reported_metrics(cfg)
    if spec.metric not in known:
        near = difflib.get_close_matches(spec.metric, sorted(known), n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise InputError(f"{source}metric: trials do not report {spec.metric!r}; {hint}expected one of "
                         f"music_distance, music_distance_<group>, <track>_<metric>, d_loss, g_loss, ... "
                         f"(see chorus.cluster.search_config.reported_metrics)")
    if spec.metric in ALWAYS_REPORTED:
        return
    if cfg.train.checkpoint_every % cfg.train.eval_every:
        raise InputError(f"{source}train.checkpoint_every: must be a multiple of train.eval_every "
                         f"({cfg.train.eval_every}) so that each checkpoint carries its {spec.metric}; "
                         f"got {cfg.train.checkpoint_every}")


def build_search(doc: dict[str, Any], *, search_file: str | Path | None = None,
                 overrides: list[str] | None = None) -> Search:
    """Validate a search document (already read from YAML) into a Search."""
    source = f"{search_file}: " if search_file else ""
    search_file = Path(search_file) if search_file else None
    training_sets, search_sets = split_overrides(overrides or [])
    doc = apply_overrides(doc, search_sets)
    training_doc = {k: doc[k] for k in TRAINING_SECTIONS if k in doc}
    search_doc = {k: v for k, v in doc.items() if k not in TRAINING_SECTIONS}
    # space keys are dotted and must stay flat; apply_overrides would have nested `--set space.x=...`
    spec = build_dataclass(SearchSpec, search_doc, source=source)
    if not isinstance(spec.space, dict):
        raise InputError(f"{source}space: expected a mapping of dotted config keys, got {spec.space!r}")
    spec.space = _flatten_space(spec.space)
    if not spec.experiment or "/" in spec.experiment or spec.experiment.startswith(".") or spec.experiment == "latest":
        raise InputError(f"{source}experiment: expected a plain name (no '/', not 'latest'), got {spec.experiment!r}")

    # training config: default.yaml <- base <- sections in this file <- --set train.x=...
    base_doc = {}
    if spec.base is not None:
        spec.base = str(_resolve_base(spec.base, search_file, source))
        base_doc = read_yaml(spec.base)
    cfg = assemble_config(base_doc, training_doc, overrides=training_sets, source=source)
    # trials run in their own working directories, possibly on other machines: relative paths would break
    cfg.data.cache_dir = _absolute(cfg.data.cache_dir)
    cfg.data.path = _absolute(cfg.data.path)
    spec.storage_path = _absolute(spec.storage_path) if spec.storage_path else default_storage_path()
    spec.results_dir = _absolute(spec.results_dir) if spec.results_dir else default_results_dir()
    base_config = cfg.to_dict()

    _check_space(spec, base_config, source)
    _check_metric(spec, cfg, source)
    if spec.resources.workers > 1 and spec.scheduler.type == "pbt":
        raise InputError(f"{source}scheduler.type: pbt is not supported with resources.workers > 1")
    if spec.scheduler.type == "pbt" and 0 < spec.max_concurrent_trials < spec.num_samples:
        # Tune creates trials only as others finish: PBT would never see its whole population
        raise InputError(f"{source}max_concurrent_trials: pbt needs 0 or at least num_samples "
                         f"({spec.num_samples}) so that every trial of the population exists; got "
                         f"{spec.max_concurrent_trials}")
    return Search(spec=spec, base_config=base_config, source=str(search_file or ""))


def _flatten_space(space: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Accept both `train.g_lr: {...}` and nested `train: {g_lr: {...}}`."""
    flat: dict[str, Any] = {}
    for key, value in space.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and config_field(full) is None and not set(value) & set(DISTRIBUTIONS):
            flat.update(_flatten_space(value, f"{full}."))
        else:
            flat[full] = value
    return flat


def load_search(path: str | Path, overrides: list[str] | None = None) -> Search:
    """Read and validate a search YAML (a file, or a bundled preset such as `search` or `configs/search.yaml`);
    errors are InputError naming the file and the key."""
    path = resolve_config_path(path, key="chorus search")
    return build_search(read_yaml(path), search_file=path, overrides=overrides)


def search_to_dict(search: Search) -> dict[str, Any]:
    """A JSON-able snapshot that `--resume` can rebuild the search from without the original file."""
    return {"spec": dataclasses.asdict(search.spec), "base_config": search.base_config, "source": search.source}


def search_from_dict(doc: dict[str, Any]) -> Search:
    """The snapshot's base_config is a saved training config: one of an older format is upgraded by its rule."""
    spec = build_dataclass(SearchSpec, doc["spec"], source="saved search: ")
    base_config = upgrade_config_doc(doc["base_config"], source="saved search: base_config: ")
    return Search(spec=spec, base_config=base_config, source=doc.get("source", ""))
