"""Collecting a finished (or interrupted) search into results/<experiment>/.

    trials.csv, trials.md   one row per trial: hyperparameters, final and best metric, steps, wall time, status
    best/                   the best trial's best checkpoint as a self-contained run dir (chorus generate --run)
    samples/                the best checkpoint's samples (MIDI, piano-roll PNG, WAV) and, as real-i.*, the real
                            holdout harmonizations of the same melodies, rendered the same way
    curves/                 PNG metric curves: one per trial and one with every trial's metric, with the ladder's
                            dashed lines: real vs real, the best trial, the weakest corruption, the untrained
                            generator (trainer.ladder, each at the trials' n = eval.num_samples)
    report.html             all of the above on one static page with relative links and <audio> players (opens
                            from the file system), and the ladder as a table

Reads the experiment through Tune's own state files (ExperimentAnalysis), so it works on a local path, a shared
volume or s3://, during the search's driver or later (`chorus results pull`).
"""
from __future__ import annotations

import csv
import html
import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chorus.errors import InputError
from chorus.trainer.ladder import REAL, UNTRAINED, WEAKEST, Ladder

SEARCH_FILE = "chorus-search.json"  # the search snapshot written next to Tune's experiment state
SHOWN_METRICS = ("d_loss", "g_loss", "samples_per_sec")


@dataclass
class TrialRow:
    trial_id: str
    status: str
    params: dict[str, Any]
    step: int | None
    metric: float | None  # last reported value
    best_metric: float | None  # of the best kept checkpoint
    best_step: int | None
    wall_s: float | None
    failures: int
    resumed_from_step: int
    last: dict[str, Any] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)  # rows of step, metric, d_loss, g_loss
    best_checkpoint: Any = None  # a ray Checkpoint
    error: str | None = None


# ----------------------------------------------------------------------------------------------- filesystem


def fs_and_path(uri_or_path: str):
    """pyarrow filesystem and path for a local path or a URI such as s3://bucket/prefix."""
    import pyarrow.fs

    if "://" in uri_or_path:
        return pyarrow.fs.FileSystem.from_uri(uri_or_path)
    return pyarrow.fs.LocalFileSystem(), os.path.abspath(uri_or_path)


def exists(uri_or_path: str) -> bool:
    import pyarrow.fs

    fs, path = fs_and_path(uri_or_path)
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def read_text(uri_or_path: str) -> str:
    fs, path = fs_and_path(uri_or_path)
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def write_text(uri_or_path: str, text: str) -> None:
    fs, path = fs_and_path(uri_or_path)
    fs.create_dir(os.path.dirname(path), recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(text.encode())


def copy_tree(src: str, dest: str) -> None:
    """Copy a directory between any two of: local path, s3://..., other pyarrow URIs."""
    import pyarrow.fs

    src_fs, src_path = fs_and_path(src)
    dest_fs, dest_path = fs_and_path(dest)
    dest_fs.create_dir(dest_path, recursive=True)
    pyarrow.fs.copy_files(src_path, dest_path, source_filesystem=src_fs, destination_filesystem=dest_fs)


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts]) if "://" in base else os.path.join(base, *parts)


# -------------------------------------------------------------------------------------------------- reading


def _num(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _int(value: Any) -> int | None:
    value = _num(value)
    return None if value is None else int(value)


def _better(a: float | None, b: float | None, mode: str) -> bool:
    """Is a strictly better than b (None is worst)?"""
    if a is None:
        return False
    if b is None:
        return True
    return a < b if mode == "min" else a > b


def _checkpoint_candidates(result, metric: str) -> list[tuple[Any, dict[str, Any]]]:
    """(Checkpoint, metrics) pairs kept for a trial: Tune's own, or those of the trial's inner Ray Train run."""
    if result.best_checkpoints:
        return list(result.best_checkpoints)
    df = result.metrics_dataframe
    if df is None or "checkpoint_path" not in df.columns:
        return []
    import pyarrow.fs
    from ray.tune import Checkpoint

    fs = result.filesystem
    out = []
    for row in df.to_dict("records"):
        path = row.get("checkpoint_path")
        if not isinstance(path, str) or not path:
            continue
        if fs.get_file_info(path).type == pyarrow.fs.FileType.NotFound:  # pruned by num_to_keep
            continue
        out.append((Checkpoint(path, filesystem=fs), row))
    return out


def read_trials(experiment_path: str, metric: str, mode: str, param_keys: list[str] | None) -> list[TrialRow]:
    from ray.tune import ExperimentAnalysis, ResultGrid

    try:
        analysis = ExperimentAnalysis(experiment_path, default_metric=metric, default_mode=mode)
    except Exception as exc:  # noqa: BLE001 - Ray raises several types for a missing or broken experiment
        raise InputError(f"{experiment_path}: not a readable Ray Tune experiment ({exc})") from None
    grid = ResultGrid(analysis)
    rows = []
    for trial, result in zip(analysis.trials, grid, strict=True):
        config = result.config or {}
        keys = param_keys if param_keys is not None else sorted(config)
        last = dict(result.metrics or {})
        df = result.metrics_dataframe
        curve = []
        if df is not None and "step" in df.columns:
            cols = [c for c in ("step", metric, *SHOWN_METRICS) if c in df.columns]
            curve = df[cols].to_dict("records")
        best_ckpt, best_metrics = None, None
        for ckpt, m in _checkpoint_candidates(result, metric):
            if best_ckpt is None or _better(_num(m.get(metric)), _num(best_metrics.get(metric)), mode):
                best_ckpt, best_metrics = ckpt, m
        resumed = 0
        if df is not None and "resumed_from_step" in df.columns:
            resumed = int(df["resumed_from_step"].fillna(0).max())
        rows.append(TrialRow(
            trial_id=trial.trial_id, status=trial.status, params={k: config.get(k) for k in keys},
            step=_int(last.get("step")),
            metric=_num(last.get(metric)),
            best_metric=_num(best_metrics.get(metric)) if best_metrics else None,
            best_step=_int(best_metrics.get("step")) if best_metrics else None,
            wall_s=_num(last.get("time_total_s")), failures=int(getattr(trial, "num_failures", 0) or 0),
            resumed_from_step=resumed, last=last, curve=curve, best_checkpoint=best_ckpt,
            error=str(result.error).splitlines()[0][:200] if result.error else None))
    return sorted(rows, key=lambda r: r.trial_id)


def best_trial(rows: list[TrialRow], mode: str) -> TrialRow | None:
    best = None
    for row in rows:
        if row.best_checkpoint is not None and (best is None or _better(row.best_metric, best.best_metric, mode)):
            best = row
    return best


# -------------------------------------------------------------------------------------------------- writing


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(rows: list[TrialRow], metric: str, param_keys: list[str]) -> tuple[list[str], list[list[str]]]:
    """One row per trial; n is the number of samples its evaluations scored (music_distance depends on it)."""
    header = ["trial_id", "status", *param_keys, "step", metric, f"best_{metric}", "best_step", "n",
              *SHOWN_METRICS, "wall_s", "failures", "resumed_from_step"]
    body = []
    for r in rows:
        body.append([r.trial_id, r.status, *(_fmt(r.params.get(k)) for k in param_keys), _fmt(r.step),
                     _fmt(r.metric), _fmt(r.best_metric), _fmt(r.best_step), _fmt(_int(r.last.get("music_distance_n"))),
                     *(_fmt(_num(r.last.get(k))) for k in SHOWN_METRICS), _fmt(r.wall_s), str(r.failures),
                     str(r.resumed_from_step)])
    return header, body


def write_tables(out: Path, header: list[str], body: list[list[str]]) -> None:
    with open(out / "trials.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(body)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
    (out / "trials.md").write_text("\n".join(lines) + "\n")


def reference_ladder(cfg_path: Path, metric: str, best: TrialRow) -> Ladder | None:
    """The best trial placed on the ladder of its config's data (trainer.ladder): real vs real, the weakest
    calibration corruption and the untrained generator, each at the config's n = eval.num_samples. None (with a
    one-line warning) for another metric, or if the dataset or TensorFlow is not available here."""
    if metric != "music_distance":
        print(f"warning: report without the ladder: it places music_distance, and the search ranks by {metric}",
              file=sys.stderr, flush=True)
        return None
    try:
        from chorus.trainer.config import config_from_dict, read_yaml
        from chorus.trainer.ladder import build_ladder
        from chorus.trainer.run import load_training_data

        cfg = config_from_dict(read_yaml(cfg_path), source=f"{cfg_path}: ")
        data = load_training_data(cfg, verbose=False)
        ladder = build_ladder(data.train, data.holdout, cfg)
    except Exception as e:  # noqa: BLE001 - the report is still written, without the ladder
        print(f"warning: report without the ladder: {' '.join(f'{type(e).__name__}: {e}'.split())[:200]}",
              file=sys.stderr, flush=True)
        return None
    if best.best_metric is None:
        return ladder
    n = _int(best.last.get("music_distance_n")) or cfg.eval.num_samples
    try:  # a value of another objective version than this chorus's ladder does not go on it
        return ladder.placed(_best_name(best), best.best_metric, n, f"at step {_fmt(best.best_step)}",
                             version=_int(best.last.get("music_distance_version")))
    except ValueError as e:
        print(f"warning: report without the best trial on the ladder: {e}", file=sys.stderr, flush=True)
        return ladder


def _best_name(best: TrialRow) -> str:
    return f"best trial {best.trial_id}"


def plot_curves(out: Path, rows: list[TrialRow], metric: str, ladder: Ladder | None = None) -> dict[str, str]:
    """curves/<trial>.png (metric and losses over steps) and curves/all.png, with a labelled dashed line per rung of
    the ladder (on a log scale: the rungs span 30x); returns trial id -> relative path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = out / "curves"
    curves.mkdir(exist_ok=True)
    paths = {}
    fig_all, ax_all = plt.subplots(figsize=(7, 4))
    for r in rows:
        pts = [c for c in r.curve if _num(c.get("step")) is not None]
        if not pts:
            continue
        fig, (ax_m, ax_l) = plt.subplots(1, 2, figsize=(9, 3.2))
        m = [(c["step"], _num(c.get(metric))) for c in pts if _num(c.get(metric)) is not None]
        if m:
            ax_m.plot(*zip(*m, strict=True), marker="o", ms=3)
            ax_all.plot(*zip(*m, strict=True), marker="o", ms=3, label=r.trial_id)
        _reference_lines(ax_m, ladder)
        ax_m.set(title=f"{r.trial_id}: {metric}", xlabel="step")
        for key in ("d_loss", "g_loss"):
            vals = [(c["step"], _num(c.get(key))) for c in pts if _num(c.get(key)) is not None]
            if vals:
                ax_l.plot(*zip(*vals, strict=True), label=key)
        ax_l.set(title="losses", xlabel="step")
        ax_l.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(curves / f"{r.trial_id}.png", dpi=80)
        plt.close(fig)
        paths[r.trial_id] = f"curves/{r.trial_id}.png"
    _reference_lines(ax_all, ladder)
    n = f" (n={ladder.rungs[0].n})" if ladder else ""
    ax_all.set(title=f"{metric}{n} of every trial", xlabel="step", ylabel=metric)
    if paths or ladder:
        ax_all.legend(fontsize=7)
    fig_all.tight_layout()
    fig_all.savefig(curves / "all.png", dpi=80)
    plt.close(fig_all)
    return paths


LADDER_STYLE = {REAL: "tab:green", WEAKEST: "tab:orange", UNTRAINED: "tab:red"}  # other rungs: the model, in black


def _reference_lines(ax, ladder: Ladder | None) -> None:
    if not ladder:
        return
    for r in ladder.rungs:
        ax.axhline(r.value, color=LADDER_STYLE.get(r.name, "black"), linestyle="--" if r.name in LADDER_STYLE else ":",
                   linewidth=1, label=f"{r.name} ({r.value:.3g}, n={r.n})")
    if all(r.value > 0 for r in ladder.rungs):
        from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=7)


def copy_best(out: Path, best: TrialRow) -> list[Path]:
    """best/ = the best checkpoint (a run dir); samples/ = its MIDI, PNG and WAV files. Returns the sample files."""
    best_dir = out / "best"
    shutil.rmtree(best_dir, ignore_errors=True)
    best.best_checkpoint.to_directory(str(best_dir))
    samples = out / "samples"
    shutil.rmtree(samples, ignore_errors=True)
    samples.mkdir()
    files = []
    for f in sorted((best_dir / "samples").glob("*/*")):
        if f.suffix in (".mid", ".png", ".wav"):
            shutil.copy2(f, samples / f.name)
            files.append(samples / f.name)
    return files


def write_html(out: Path, *, experiment: str, metric: str, mode: str, header: list[str], body: list[list[str]],
               curves: dict[str, str], best: TrialRow | None, samples: list[Path],
               ladder: Ladder | None = None) -> None:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>chorus search: {e(experiment)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}"
             "img{max-width:100%}.best{background:#e8f6e8}figure{display:inline-block;margin:6px}</style>",
             "</head><body>", f"<h1>chorus search: {e(experiment)}</h1>",
             f"<p>{len(body)} trials, ranked by <b>{e(metric)}</b> ({e(mode)}). "
             "Files: <a href='trials.csv'>trials.csv</a>, <a href='trials.md'>trials.md</a>"
             + (", <a href='best/'>best/</a> (run dir for <code>chorus generate --run</code>)" if best else "")
             + "</p>"]
    if best is not None:
        parts.append(f"<h2>Best trial: {e(best.trial_id)}</h2><p>{e(metric)} {_fmt(best.best_metric)} at step "
                     f"{_fmt(best.best_step)}; " + ", ".join(f"{e(k)}={e(_fmt(v))}" for k, v in best.params.items())
                     + "</p>")
    if ladder:
        parts.append(_ladder_table(ladder, _best_name(best) if best is not None else None))
    parts.append("<h2>Trials</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
    for row in body:
        cls = " class='best'" if best is not None and row[0] == best.trial_id else ""
        parts.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
    parts.append("</table>")
    if curves:
        parts.append("<h2>Metric curves</h2>")
        if ladder:
            parts.append("<p>Dashed lines: the ladder above.</p>")
        parts.append("<img src='curves/all.png' alt='metric of every trial'><br>")
        parts += [f"<figure><img src='{e(p)}' alt='{e(t)}'><figcaption>{e(t)}</figcaption></figure>"
                  for t, p in curves.items()]
    pngs = [p for p in samples if p.suffix == ".png" and not p.name.startswith("real-")]
    if pngs:
        parts.append("<h2>Samples of the best checkpoint</h2><p>Each generated harmonization (left) beside the "
                     "real holdout harmonization of the same melody (right), rendered the same way.</p><table>")
        for png in pngs:
            real = png.with_name("real-" + png.stem.rsplit("-", 1)[-1] + ".png")
            cells = [_sample_cell(png, samples, png.stem)]
            if real in samples:
                cells.append(_sample_cell(real, samples, f"real harmonization ({real.stem})"))
            parts.append("<tr>" + "".join(f"<td style='text-align:center'>{c}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    (out / "report.html").write_text("\n".join(parts) + "\n")


def _ladder_table(ladder: Ladder, mark: str | None) -> str:
    """The ladder as an HTML table, lowest first; the best trial's row highlighted."""
    e = html.escape
    rows = "".join(f"<tr{' class=best' if r.name == mark else ''}><td style='text-align:left'>{e(r.name)}</td>"
                   f"<td>{r.value:.3f}</td><td>{r.n}</td><td style='text-align:left'>{e(r.detail)}</td></tr>"
                   for r in ladder.rungs)
    return (f"<h3>Ladder: music_distance (version {ladder.version}) of references at the same n, against the same "
            "holdout</h3><table><tr><th>rung</th><th>music_distance</th><th>n</th><th>what</th></tr>"
            f"{rows}</table>")


def _sample_cell(png: Path, samples: list[Path], caption: str) -> str:
    """A piano roll with its <audio> player and MIDI link, for the files of it that exist."""
    e = html.escape
    mid, wav = png.with_suffix(".mid"), png.with_suffix(".wav")
    link = f" <a href='samples/{e(mid.name)}'>MIDI</a>" if mid in samples else ""
    audio = (f"<br><audio controls preload='none' src='samples/{e(wav.name)}'></audio>" if wav in samples
             else "<br>(no audio)")
    return (f"<figure><img src='samples/{e(png.name)}' alt='{e(png.stem)}'>"
            f"<figcaption>{e(caption)}{link}{audio}</figcaption></figure>")


# ------------------------------------------------------------------------------------------------- collect


def load_search_snapshot(experiment_path: str) -> dict[str, Any] | None:
    path = join(experiment_path, SEARCH_FILE)
    return json.loads(read_text(path)) if exists(path) else None


def collect(experiment_path: str, dest: str, *, metric: str | None = None, mode: str | None = None,
            param_keys: list[str] | None = None, experiment: str | None = None) -> str:
    """Write the results folder of a Tune experiment to dest (a local path or a URI); returns dest."""
    snapshot = load_search_snapshot(experiment_path)
    spec = (snapshot or {}).get("spec", {})
    metric = metric or spec.get("metric") or "music_distance"
    mode = mode or spec.get("mode") or "min"
    if param_keys is None and snapshot is not None:
        param_keys = list(spec.get("space", {}))
    experiment = experiment or spec.get("experiment") or experiment_path.rstrip("/").rsplit("/", 1)[-1]
    rows = read_trials(experiment_path, metric, mode, param_keys)
    keys = param_keys if param_keys is not None else sorted({k for r in rows for k in r.params})

    remote = "://" in dest
    # written whole into a temporary folder, then moved in place: a kill mid-export leaves the old results or
    # none, never half of them (the next export clears the leftovers)
    out = Path(tempfile.mkdtemp(prefix="chorus-results-")) if remote else _staging_dir(Path(dest))
    try:
        header, body = table(rows, metric, keys)
        write_tables(out, header, body)
        best = best_trial(rows, mode)
        samples = copy_best(out, best) if best is not None else []
        ladder = reference_ladder(out / "best" / "config.yaml", metric, best) if best is not None else None
        curves = plot_curves(out, rows, metric, ladder)
        write_html(out, experiment=experiment, metric=metric, mode=mode, header=header, body=body,
                   curves=curves, best=best, samples=samples, ladder=ladder)
        if snapshot is not None:
            (out / "search.json").write_text(json.dumps(snapshot, indent=2) + "\n")
        if remote:
            copy_tree(str(out), dest)
        else:
            _swap_in(out, Path(dest))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return dest


def _staging_dir(dest: Path) -> Path:
    """An empty folder beside dest, with the permissions the user's umask gives (mkdtemp's are 0700)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.*-partial"):
        shutil.rmtree(stale, ignore_errors=True)
    out = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix="-partial", dir=dest.parent))
    umask = os.umask(0)
    os.umask(umask)
    out.chmod(0o777 & ~umask)
    return out


def _swap_in(staged: Path, dest: Path) -> None:
    """Put staged where dest is: the old folder moves aside, the new one in, then the old one goes."""
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix="-partial", dir=dest.parent))
        os.replace(dest, old / dest.name)
    os.replace(staged, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def point_latest(results_dir: str, experiment: str) -> None:
    """<results_dir>/latest names the newest experiment: a relative symlink (a text file on a URI), replaced
    atomically."""
    if "://" in results_dir:
        write_text(join(results_dir, "latest"), experiment + "\n")
        return
    link = Path(results_dir) / "latest"
    tmp = link.with_name(f".latest.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(experiment)
    os.replace(tmp, link)


def pull(src: str, dest: str) -> str:
    """`chorus results pull SRC DEST`: bring results home into DEST/<name of SRC>.

    SRC is a collected results folder (has trials.csv) or a Ray Tune experiment dir (local, shared volume or
    s3://...), which is then collected on the way.
    """
    if not exists(src):
        raise InputError(f"{src}: not found")
    target = str(Path(dest) / src.rstrip("/").rsplit("/", 1)[-1])
    if exists(join(src, "trials.csv")):
        copy_tree(src, target)
    elif exists(join(src, SEARCH_FILE)) or _has_experiment_state(src):
        collect(src, target)
    else:
        raise InputError(f"{src}: neither a results folder (trials.csv) nor a Ray Tune experiment")
    return target


def _has_experiment_state(path: str) -> bool:
    import pyarrow.fs

    fs, p = fs_and_path(path)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(p, allow_not_found=True))
    return any(os.path.basename(i.path).startswith("experiment_state") for i in infos)
