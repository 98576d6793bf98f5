"""Real multi-device and multi-worker training: MirroredStrategy over 2 logical CPUs, and
MultiWorkerMirroredStrategy over 2 local processes joined by TF_CONFIG."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from tests_support import REPO, TINY, checkpoint_tensors, free_ports, run_chorus

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]


def test_mirrored_with_xla_over_two_logical_cpus(tiny_overrides, tmp_path):
    """The XLA path (jit_compile: true, the option for GPUs) under MirroredStrategy on 2 logical CPUs."""
    proc = run_chorus("train", "--config", str(TINY), *sum((["--set", o] for o in tiny_overrides), []),
                      "--set", "train.strategy=mirrored", "--set", "train.cpu_devices=2",
                      "--set", "train.jit_compile=true", check=True)
    assert "mirrored (2 replica(s)" in proc.stderr and "CPU:1" in proc.stderr
    assert "not applied" not in proc.stderr
    assert (tmp_path / "run" / "checkpoints" / "ckpt-6.index").is_file()


def test_multi_worker_replicas_agree_and_resume(tiny_overrides, tmp_path):
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    args = [sys.executable, "-m", "chorus", "train", "--config", str(TINY)]
    for o in tiny_overrides + ["train.keep_worker_checkpoints=true"]:
        args += ["--set", o]
    procs = []
    for i in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                                      "task": {"type": "worker", "index": i}})}
        procs.append(subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "multi_worker (2 replica(s), worker 1/2" in outs[0][1]
    run = tmp_path / "run"
    chief = checkpoint_tensors(run / "checkpoints")
    other = checkpoint_tensors(run / ".worker_tmp" / "worker1")
    assert chief.keys() == other.keys() and any(k.startswith("ema_generator/") for k in chief)
    for name in chief:
        if "rng" in name:
            continue  # each worker draws its own noise stream, by design
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
    # The multi-worker checkpoint resumes in a single process, at the step it reached.
    proc = run_chorus("train", "--config", str(TINY), *sum((["--set", o] for o in tiny_overrides), []),
                      "--set", "train.steps=9", check=True)
    assert "resuming at step 6" in proc.stderr
    assert (run / "checkpoints" / "ckpt-9.index").is_file()
