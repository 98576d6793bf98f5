"""Helpers shared by test modules (importable because pytest puts tests/ on sys.path)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "configs" / "tiny.yaml"


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports: all n sockets are bound before any is closed, so none repeats."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """A free loopback port (free now: another process may take it before it is used)."""
    return free_ports(1)[0]


def run_chorus(*args: str, env: dict | None = None, timeout: float = 900, check: bool = False
               ) -> subprocess.CompletedProcess:
    """The CLI in a fresh process (TensorFlow device settings are per process)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "chorus", *args], cwd=REPO, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"chorus {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc


def checkpoint_tensors(path) -> dict[str, np.ndarray]:
    """Numeric tensors of the latest checkpoint in a run or checkpoint dir (config string and counters left out)."""
    from chorus.data import tfenv
    from chorus.trainer.checkpoints import latest_checkpoint

    tf = tfenv.tensorflow()

    reader = tf.train.load_checkpoint(latest_checkpoint(path))
    tensors = {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
               if "config" not in n and "save_counter" not in n}
    return {n: t for n, t in tensors.items() if np.issubdtype(np.asarray(t).dtype, np.number)}


def listing(path) -> list[tuple[str, int]]:
    """Every file and folder under path with its size: equal before and after means nothing was touched."""
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in Path(path).rglob("*"))


def mono_rolls(n=6, seed=0):
    """Monophonic 4-voice windows (n, 32, 128, 4) in MIDI 40..79, with some rests."""
    rng = np.random.default_rng(seed)
    rolls = np.zeros((n, 32, 128, 4), bool)
    pitch = rng.integers(40, 80, size=(n, 32, 4))
    np.put_along_axis(rolls, pitch[:, :, None, :], True, axis=2)
    rolls[:, ::7, :, 1] = False  # rests in the alto
    return rolls


def scale_melodies(low=32):
    """(12, 32, 64, 4) windows of a pitch window from MIDI `low`: window t's melody walks up the major scale on
    tonic t from MIDI 60 + t (ambiguity-free: the whole scale), its bass an octave and a fifth lower."""
    rolls = np.zeros((12, 32, 64, 4), bool)
    for t in range(12):
        for i, step in enumerate((0, 2, 4, 5, 7, 9, 11, 12)):
            rolls[t, 4 * i:4 * i + 4, 60 + t + step - low, 0] = True
            rolls[t, 4 * i:4 * i + 4, 41 + t + step - low, 3] = True
    return rolls


def pipeline_batches(rolls, n, **kw):
    """The first n batches of data.pipeline.make_dataset(rolls, global batch 4, seed 5), as arrays."""
    from chorus.data.pipeline import make_dataset

    return [b.numpy() for b in make_dataset(rolls, global_batch=4, seed=5, **kw).take(n)]
