"""The ladder of references (trainer.ladder) on real chorales: real vs real is real music, each window with its own
melody, and the rungs stand in the order a musician would put them."""
from __future__ import annotations

import numpy as np
import pytest
from tests_support import TINY

from chorus.data.dataset import build_dataset, load_dataset
from chorus.data.objective import MUSIC_DISTANCE_VERSION, music_distance
from chorus.trainer.codec import RollCodec
from chorus.trainer.config import load_config
from chorus.trainer.evaluation import draw_windows, evaluate, reference_features
from chorus.trainer.ladder import REAL, UNTRAINED, WEAKEST, Ladder, Rung, build_ladder

# The tiny preset's 24 chorales with 30 % held out: ~190 train and ~65 holdout windows, parsed in ~8 s.
N = 32


@pytest.fixture(scope="module")
def chorales(data_cache):
    cfg = load_config(TINY, [f"data.cache_dir={data_cache}", "data.holdout_fraction=0.3", f"eval.num_samples={N}"])
    return cfg, load_dataset(build_dataset(cfg.data, progress=False))


def test_real_vs_real_is_real_windows_with_their_own_melodies(chorales):
    cfg, ds = chorales
    ladder = build_ladder(ds.train, ds.holdout, cfg, untrained=False)
    real = ladder.get(REAL)
    assert real.n == N and 0 < real.value < 1
    # a second sample of real windows scores alike
    second = music_distance(draw_windows(ds.train, N, cfg.eval.seed + 1), None,
                            ref_features=reference_features(ds.holdout, cfg))
    assert 0.5 <= second / real.value <= 2.0
    # The old reference: train windows through evaluate(), which puts the holdout melody on top of their lower
    # voices (the mismatched-melody corruption). Real music must score far below it.
    rng = np.random.default_rng(cfg.eval.seed)

    def old_real(melody, z):
        idx = rng.choice(len(ds.train), size=len(melody), replace=len(melody) > len(ds.train))
        return RollCodec.user_rolls(ds.train[idx])

    mismatched = evaluate(old_real, ds.holdout, cfg, (2, 4, 8)).music_distance
    assert real.value * 3 < mismatched, (real.value, mismatched)
    weakest = ladder.get(WEAKEST)
    assert weakest.n == N and real.value * 3 < weakest.value and "lowest of" in weakest.detail
    assert [r.name for r in ladder.rungs] == [REAL, WEAKEST]


def test_a_placed_value_takes_its_place_and_keeps_its_n():
    ladder = Ladder([]).placed("a", 2.0, 64).placed("b", 0.5, 64).placed("model", 1.0, 64, "step 9")
    assert [r.name for r in ladder.rungs] == ["b", "model", "a"]
    table = ladder.table(mark="model")
    assert "->   1.000  n=64" in table and "step 9" in table and "version" in table
    assert ladder.to_json()[1] == {"name": "model", "value": 1.0, "n": 64, "detail": "step 9"}


def test_a_value_of_another_objective_version_never_goes_on_the_ladder():
    ladder = Ladder([Rung(REAL, 0.2, 64)])
    assert ladder.placed("same", 1.0, 64, version=MUSIC_DISTANCE_VERSION).get("same").value == 1.0
    with pytest.raises(ValueError, match="version 2 does not compare"):
        ladder.placed("old trial", 1.0, 64, version=2)


@pytest.mark.slow
def test_the_ladder_stands_real_then_weakest_corruption_then_untrained(chorales):
    cfg, ds = chorales
    ladder = build_ladder(ds.train, ds.holdout, cfg)  # with the tiny preset's untrained generator (TensorFlow)
    assert [r.name for r in ladder.rungs] == [REAL, WEAKEST, UNTRAINED]
    assert ladder.rungs[0].value * 3 < ladder.rungs[1].value < ladder.rungs[2].value
    assert {r.n for r in ladder.rungs} == {N}
