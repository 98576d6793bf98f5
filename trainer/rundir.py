"""Files of a run directory: config snapshot, versions, metrics.jsonl. Every write is temp file + rename.

No TensorFlow here: the CLI checks a run dir with `require_run_dir` before TensorFlow is imported."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from chorus.errors import InputError
from chorus.files import write_text_atomic
from chorus.trainer.config import upgrade_config_doc
from chorus.versions import versions

STATE_FILE = "checkpoint"  # tf.train.CheckpointManager's state file, beside the checkpoint files


def require_run_dir(path: str | Path) -> Path:
    """A run dir (config.yaml + checkpoints/) or an exported checkpoint dir (config.yaml + checkpoint files) that
    holds a saved checkpoint; InputError naming the folder otherwise."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise InputError(f"{path}: not a chorus run directory (expected config.yaml and checkpoints/)")
    if not any((d / STATE_FILE).is_file() for d in (path / "checkpoints", path)):
        raise InputError(f"{path}: not a chorus run or checkpoint directory "
                         f"(expected checkpoints/{STATE_FILE} or {STATE_FILE} with a saved checkpoint)")
    return path


def versions_text() -> str:
    return json.dumps(versions(), indent=2) + "\n"


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill -9
    return rows


def truncate_metrics(run_dir: str | Path, step: int) -> None:
    """On resume, drop rows logged after the checkpoint we resume from; they will be logged again."""
    rows = [r for r in read_metrics(run_dir) if r.get("step", 0) <= step]
    write_text_atomic(Path(run_dir) / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def append_metrics(run_dir: str | Path, row: dict[str, Any]) -> None:
    with open(Path(run_dir) / "metrics.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


# Keys a resumed run may change: they do not alter what has been trained so far.
RESUMABLE_CHANGES = (
    "train.steps", "train.log_every", "train.eval_every", "train.checkpoint_every", "train.sample_every",
    "train.keep_checkpoints", "train.keep_worker_checkpoints", "train.threads", "train.strategy",
    "train.cpu_devices", "train.jit_compile", "run.dir", "data.cache_dir", "eval.num_samples",
    "sample.num", "sample.tempo", "sample.programs", "sample.track_names",
)


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in doc.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resumable(run_dir: Path, config_doc: dict[str, Any]) -> None:
    """A run dir is resumed only by the config that made it (up to RESUMABLE_CHANGES); a config saved in an older
    format is compared as its format's rule reads it (chorus.trainer.config.upgrade_config_doc)."""
    saved_path = run_dir / "config.yaml"
    saved = flatten(upgrade_config_doc(yaml.safe_load(saved_path.read_text()) or {}, source=f"{saved_path}: "))
    new = flatten(config_doc)
    diffs = [k for k in sorted(set(saved) | set(new))
             if k not in RESUMABLE_CHANGES and saved.get(k) != new.get(k)]
    if diffs:
        k = diffs[0]
        raise InputError(f"{saved_path}: this run was made with {k}={saved.get(k)!r}, not {new.get(k)!r}; "
                         f"resume with the same config, or pass --run-dir for a new run")


def check_run_dir_usable(run_dir: Path) -> None:
    """Refuse to write into a non-empty directory that is not a chorus run."""
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"{run_dir}: run dir exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / "config.yaml").is_file():
        raise InputError(f"{run_dir}: directory is not empty and holds no chorus run (no config.yaml); "
                         f"choose another --run-dir")
