"""Warm runs (chorus.trainer.warm): a process that trains again reuses the traced step, and leaks nothing.

A run that follows others in one process must end bit for bit where it ends in a fresh process: same weights,
optimizer slots, RNG state and metrics. The runs before it differ in seed, learning rates, dataset, augmentation
and precision policy, which is what a reused Ray Tune actor sees between trials.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tests_support import REPO, TINY

SCRIPT = """
import hashlib, json, sys
import numpy as np
from chorus.trainer import train
from chorus.trainer.config import load_config
from tests_support import checkpoint_tensors
out = []
for i, overrides in enumerate(json.loads(sys.argv[1])):
    cfg = load_config(sys.argv[2], overrides + [f"run.dir={sys.argv[3]}/run-{i}"])
    result = train(cfg)
    digest = hashlib.sha256()
    for name, tensor in sorted(checkpoint_tensors(result.run_dir).items()):
        digest.update(name.encode()); digest.update(np.ascontiguousarray(tensor).tobytes())
    rows = [json.loads(line) for line in open(f"{result.run_dir}/metrics.jsonl")]
    out.append({"warm": rows[-1].get("warm_start"), "start_up_s": rows[-1].get("start_up_s"),
                "weights": digest.hexdigest(), "music_distance": result.metrics["music_distance"],
                "d_loss": result.metrics["d_loss"]})
print("RESULT " + json.dumps(out))
"""


def run_in_one_process(runs: list[list[str]], tmp_path, name: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(runs), str(TINY), str(tmp_path / name)],
                          cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(REPO / "tests")})
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@pytest.mark.slow
def test_a_run_after_others_in_one_process_equals_a_fresh_run(tmp_path, data_cache):
    common = [f"data.cache_dir={data_cache}", "train.steps=4", "train.eval_every=2", "train.checkpoint_every=2",
              "train.sample_every=4", "sample.audio=none",
              "model.key_normalize=false"]  # run a's random transposition excludes it; all three share the model
    b = common + ["train.seed=3", "train.g_lr=0.0007", "train.d_lr=0.0003"]
    a = common + ["train.seed=1", "train.g_lr=0.002", "train.d_lr=0.002", "data.max_pieces=12",
                  "train.augment_transpose=2", "train.steps=3"]  # same structure as b: its WGANGP is reused
    mixed = common + ["train.mixed_precision=true", "train.steps=2"]  # float16 policy; never reused
    fresh, = run_in_one_process([b], tmp_path, "fresh")
    after = run_in_one_process([a, b, mixed, b], tmp_path, "after")

    assert [r["warm"] for r in after] == [0.0, 1.0, 0.0, 0.0]
    for r in (after[1], after[3]):  # after a same-structure run (reset), and after a float16 run (rebuilt)
        assert r["weights"] == fresh["weights"]
        assert r["music_distance"] == fresh["music_distance"] and r["d_loss"] == fresh["d_loss"]
    assert after[0]["weights"] != fresh["weights"]  # the runs before did differ
    assert all(r["start_up_s"] is not None and r["start_up_s"] > 0 for r in after)


def test_reset_refuses_another_structure():
    from chorus.trainer.config import load_config
    from chorus.trainer.distribute import choose_strategy
    from chorus.trainer.gan import WGANGP, structure_key

    cfg = load_config(str(TINY), [])
    dist = choose_strategy("default")
    wide = load_config(str(TINY), ["model.width=8"])
    assert structure_key(cfg, dist) != structure_key(wide, dist)
    assert structure_key(cfg, dist) == structure_key(load_config(str(TINY), ["train.seed=5", "train.g_lr=0.01"]),
                                                     dist)
    assert structure_key(load_config(str(TINY), ["train.mixed_precision=true"]), dist) is None
    gan = WGANGP(cfg, dist)
    with pytest.raises(ValueError, match="structure"):
        gan.reset(wide)

