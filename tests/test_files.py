"""chorus.files: the one atomic writer. Outputs get the user's umask; a failed write leaves the old file whole."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from chorus.data.midi_io import write_midi
from chorus.data.plot import save_pianoroll_png
from chorus.files import atomic_path, write_text_atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_every_writer_keeps_the_users_umask(tmp_path, umask_022):
    roll = np.zeros((32, 128, 4), bool)
    roll[:, 60:64, :] = np.eye(4, dtype=bool)[None]  # one pitch per track
    paths = [
        write_text_atomic(tmp_path / "a.txt", "hello\n"),
        write_midi(roll, tmp_path / "s.mid", steps_per_beat=4, tempo=100, programs=[0] * 4, track_names=list("SATB")),
        save_pianoroll_png(roll, tmp_path / "s.png", track_names=list("SATB"), steps_per_beat=4, steps_per_bar=16),
    ]
    for path in paths:
        assert path.stat().st_size > 0
        assert _mode(path) == 0o644, (path, oct(_mode(path)))
    os.umask(0o077)
    assert _mode(write_text_atomic(tmp_path / "private.txt", "x")) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "private.txt", "s.mid", "s.png"]  # no temp left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = write_text_atomic(tmp_path / "metrics.jsonl", "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
