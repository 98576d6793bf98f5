"""cluster.results' report without Ray: the best samples with WAVs beside the real harmonizations, <audio>
players, and the ladder (table and dashed lines), every value with its n (the full search is
tests/test_cluster_search.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tests_support import TINY

from chorus.cluster.results import TrialRow, copy_best, plot_curves, reference_ladder, table, write_html
from chorus.data.audio import read_wav
from chorus.trainer.codec import RollCodec
from chorus.trainer.config import dump_config, load_config
from chorus.trainer.ladder import REAL, UNTRAINED, WEAKEST
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


def test_report_plays_each_best_sample_beside_its_real_harmonization(tmp_path, data_cache):
    rng = np.random.default_rng(0)
    # the tiny preset's chorales, 30 % held out (~65 holdout windows), scored at n = 32
    cfg = load_config(TINY, [f"data.cache_dir={data_cache}", "data.holdout_fraction=0.3", "eval.num_samples=32",
                             "sample.audio=numpy"])
    holdout = _windows(5, rng)
    melody = RollCodec.user_rolls(RollCodec.melody(holdout[:2]))
    run = tmp_path / "ckpt"
    (run / "samples" / "step-000006").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(cfg))
    write_samples(_windows(2, rng), run / "samples" / "step-000006", cfg, real=real_harmonizations(holdout, melody))
    curve = [{"step": s, "music_distance": 1.5 - 0.05 * s, "d_loss": -1.0, "g_loss": 1.0} for s in (3, 6)]
    best = TrialRow("t0", "TERMINATED", {}, 6, 0.8, 0.8, 6, 1.0, 0, 0, last={"music_distance_n": 32}, curve=curve,
                    best_checkpoint=_Checkpoint(run))

    out = tmp_path / "results"
    out.mkdir()
    samples = copy_best(out, best)
    ladder = reference_ladder(out / "best" / "config.yaml", "music_distance", best)
    # real vs real is real music: far below every corruption (the old reference, real lower voices under the
    # holdout's melodies, scored as high as the mismatched-melody corruption), and the untrained generator on top
    names = [r.name for r in ladder.rungs]
    assert names == [REAL, "best trial t0", WEAKEST, UNTRAINED], names
    values = {r.name: r.value for r in ladder.rungs}
    assert values[REAL] * 3 < values[WEAKEST] < values[UNTRAINED] and values["best trial t0"] == 0.8
    assert {r.n for r in ladder.rungs} == {32}
    curves = plot_curves(out, [best], "music_distance", ladder)
    header, body = table([best], "music_distance", [])
    assert body[0][header.index("n")] == "32"
    write_html(out, experiment="x", metric="music_distance", mode="min", header=header, body=body,
               curves=curves, best=best, samples=samples, ladder=ladder)

    page = (out / "report.html").read_text()
    for name in ("sample-0", "sample-1", "real-0", "real-1"):
        assert f"<audio controls preload='none' src='samples/{name}.wav'>" in page
        audio, sr = read_wav(out / "samples" / f"{name}.wav")
        assert sr == cfg.sample.sample_rate and 4.8 <= len(audio) / sr <= 5.81  # 32 steps at 100 bpm + tail
        assert np.abs(audio).max() > 0.5  # normalised, not silent
    # each generated sample sits in one row with the real harmonization of its melody
    assert page.index("sample-0.wav") < page.index("real-0.wav") < page.index("sample-1.wav")
    ladder_html = page[page.index("<h3>Ladder"):page.index("<h2>Trials")]
    for r in ladder.rungs:
        assert f"{r.name}</td><td>{r.value:.3f}</td><td>32</td>" in ladder_html
    assert "<th>n</th>" in page
