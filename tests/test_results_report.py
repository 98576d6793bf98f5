"""cluster.results' report without Ray: the best samples with WAVs beside the real harmonizations, <audio>
players, and the metric curves' two reference lines (the full search is tests/test_cluster_search.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tests_support import TINY

from chorus.cluster.results import TrialRow, copy_best, plot_curves, reference_values, write_html
from chorus.data.audio import read_wav
from chorus.trainer.config import dump_config, load_config
from chorus.trainer.samples import real_harmonizations, write_samples


class _Checkpoint:
    """Stands in for a ray Checkpoint: to_directory copies a prepared run dir."""

    def __init__(self, src: Path):
        self.src = src

    def to_directory(self, dest: str) -> None:
        import shutil

        shutil.copytree(self.src, dest)


def _windows(n: int, rng) -> np.ndarray:
    x = np.zeros((n, 32, 128, 4), bool)
    for i in range(n):
        for k in range(4):
            for b in range(8):
                x[i, 4 * b : 4 * b + 4, 72 - 7 * k - int(rng.integers(0, 5)), k] = True
    return x


def test_report_plays_each_best_sample_beside_its_real_harmonization(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rolls.npz", x=_windows(24, rng))
    cfg = load_config(TINY, [f"data.cache_dir={tmp_path / 'cache'}", "data.source=npy",
                             f"data.path={tmp_path / 'rolls.npz'}", "sample.audio=numpy"])
    holdout = _windows(5, rng)
    melody = holdout[:2, ..., :1].astype(np.float32) * 2 - 1
    run = tmp_path / "ckpt"
    (run / "samples" / "step-000006").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(cfg))
    write_samples(_windows(2, rng), run / "samples" / "step-000006", cfg, real=real_harmonizations(holdout, melody))
    curve = [{"step": s, "music_distance": 3.0 - 0.1 * s, "d_loss": -1.0, "g_loss": 1.0} for s in (3, 6)]
    best = TrialRow("t0", "TERMINATED", {}, 6, 2.4, 2.4, 6, 1.0, 0, 0, curve=curve,
                    best_checkpoint=_Checkpoint(run))

    out = tmp_path / "results"
    out.mkdir()
    samples = copy_best(out, best)
    refs = reference_values(out / "best" / "config.yaml", "music_distance")
    assert set(refs) == {"real vs real", "untrained generator"} and all(np.isfinite(list(refs.values())))
    curves = plot_curves(out, [best], "music_distance", refs)
    write_html(out, experiment="x", metric="music_distance", mode="min", header=["trial_id"], body=[["t0"]],
               curves=curves, best=best, samples=samples, references=refs)

    page = (out / "report.html").read_text()
    for name in ("sample-0", "sample-1", "real-0", "real-1"):
        assert f"<audio controls preload='none' src='samples/{name}.wav'>" in page
        audio, sr = read_wav(out / "samples" / f"{name}.wav")
        assert sr == cfg.sample.sample_rate and 4.8 <= len(audio) / sr <= 5.81  # 32 steps at 100 bpm + tail
        assert np.abs(audio).max() > 0.5  # normalised, not silent
    # each generated sample sits in one row with the real harmonization of its melody
    assert page.index("sample-0.wav") < page.index("real-0.wav") < page.index("sample-1.wav")
    assert "real vs real" in page and "untrained generator" in page
