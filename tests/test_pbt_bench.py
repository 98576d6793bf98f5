"""benchmarks/pbt_vs_fifo.py --smoke-test: both searches run on a local Ray, the printed result is well-formed,
and PBT really exploited (a trial resumed from a cloned checkpoint with changed learning rates) while FIFO did not."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_pbt_vs_fifo_smoke_test(ray_env, data_cache):
    env = {**os.environ, "RAY_TMPDIR": ray_env}
    proc = subprocess.run([sys.executable, "benchmarks/pbt_vs_fifo.py", "--smoke-test",
                           "--set", f"data.cache_dir={data_cache}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout)
    trials, steps = out["trials"], out["steps"]
    assert out["smoke_test"] and finite(out["matmul_gflops_after"]) and out["matmul_gflops_after"] > 0

    for arm in ("fifo", "pbt"):
        res = out[arm]
        assert res["scheduler"] == arm and res["errors"] == 0
        assert 1 <= res["trials"] <= trials, res
        assert finite(res["wall_s"]) and res["wall_s"] > 0 and res["matmul_gflops_before"] > 0
        best = res["best_music_distance"]
        assert finite(best) and 0 < best
        assert res["best_final_music_distance"] is None or best <= res["best_final_music_distance"]
        assert res["best_trial"]["trial"] in res["initial_configs"]
        assert all(finite(v) and v > 0 for v in res["best_trial"]["config"].values())
        assert set(res["best_trial"]["config"]) == set(out["space"])
        assert res["steps_planned"] == trials * steps and res["steps_trained"] >= 0
    # the same seed: both arms start from the same sampled learning rates
    assert sorted(map(json.dumps, out["fifo"]["initial_configs"].values())) == \
        sorted(map(json.dumps, out["pbt"]["initial_configs"].values()))
    assert len({json.dumps(c) for c in out["fifo"]["initial_configs"].values()}) == trials

    fifo, pbt = out["fifo"], out["pbt"]
    assert fifo["config_changes"] == [] and fifo["restarts_from_checkpoint"] == [] and fifo["pbt_exploits"] == []
    assert fifo["steps_trained"] == trials * steps and fifo["trials_finished"] == trials
    # PBT's figure counts only what reached result.json, a lower bound that may be 0 (a CI run printed 0; the
    # likely path: every row written was the lone report of a trial restored from a final checkpoint, since PBT
    # exploits at the last step too, while results Tune paused or exploited on were never written).
    # PBT: Tune's own PBT log shows a trial that took another trial's checkpoint with perturbed rates. (Which
    # results reach result.json depends on timing: a function trainable runs on while Tune pauses it, so the
    # restarts and config changes seen there are not asserted.)
    assert pbt["pbt_exploits"], pbt
    assert all(e["trial"] != e["cloned"] and e["cloned_config"] != e["new_config"] for e in pbt["pbt_exploits"])
    # A restart resumes from a real checkpoint, never from scratch; it may be the final one (PBT also exploits at
    # the last step).
    assert all(0 < r["from_step"] <= steps for r in pbt["restarts_from_checkpoint"]), pbt["restarts_from_checkpoint"]
    assert math.isclose(out["pbt_minus_fifo_best"], pbt["best_music_distance"] - fifo["best_music_distance"])
