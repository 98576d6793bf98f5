"""Piano-roll pictures (matplotlib, Agg backend): one panel per track, bar lines, pitch axis cropped to use."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from chorus.data.music_basics import note_name
from chorus.files import atomic_path

MARGIN = 2  # semitones of air above and below the used pitch range


def save_pianoroll_png(
    roll: np.ndarray,
    path: str | Path,
    *,
    track_names: list[str],
    steps_per_beat: int,
    steps_per_bar: int,
    title: str | None = None,
    onsets: np.ndarray | None = None,
) -> Path:
    """Draw a roll (T, 128, K) (bool, or binarized at > 0) as a PNG, written atomically; return the path.

    ``onsets`` (bool (T, 128, K), as write_midi takes them): a white line splits a held bar where a note starts
    again at the same pitch, so the picture shows the notes the MIDI file holds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roll = np.asarray(roll)
    if roll.ndim != 3:
        raise ValueError(f"save_pianoroll_png: expected a roll (T, 128, K), got shape {roll.shape}")
    if roll.dtype != bool:
        roll = roll > 0
    t, p, k = roll.shape
    used = np.nonzero(roll.any(axis=(0, 2)))[0]
    lo, hi = (int(used.min()), int(used.max())) if used.size else (60, 72)
    lo, hi = max(lo - MARGIN, 0), min(hi + MARGIN, p - 1)

    fig, axes = plt.subplots(k, 1, figsize=(max(6.0, t / 6), 1.2 + 1.6 * k), sharex=True, squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        # rows = pitches lo..hi (low at the bottom), columns = steps
        ax.imshow(roll[:, lo : hi + 1, i].T, origin="lower", aspect="auto", cmap="Blues", vmin=0, vmax=1.25,
                  interpolation="nearest", extent=(-0.5, t - 0.5, lo - 0.5, hi + 0.5))
        if onsets is not None:  # repeated notes: a new onset on a pitch that sounded the step before
            again = np.argwhere((np.asarray(onsets)[1:, :, i] > 0) & roll[1:, :, i] & roll[:-1, :, i])  # (n, 2)
            ax.vlines(again[:, 0] + 0.5, again[:, 1] - 0.5, again[:, 1] + 0.5, colors="white", lw=1.5)
        for s in range(0, t + 1, steps_per_beat):
            bar = s % steps_per_bar == 0
            ax.axvline(s - 0.5, color="0.2" if bar else "0.8", lw=1.2 if bar else 0.5)
        for c in range((lo // 12 + 1) * 12, hi + 1, 12):  # C lines help read the pitch
            ax.axhline(c - 0.5, color="0.85", lw=0.5, zorder=0)
        name = track_names[i] if i < len(track_names) else f"track {i}"
        ax.set_ylabel(name)
        ticks = [c for c in range(lo, hi + 1) if c % 12 == 0] or [lo, hi]
        ax.set_yticks(ticks, [note_name(c) for c in ticks], fontsize=7)
    bars = list(range(0, t, steps_per_bar))
    axes[-1, 0].set_xticks([b - 0.5 for b in bars], [str(b // steps_per_bar + 1) for b in bars])
    axes[-1, 0].set_xlabel("bar")
    if title:
        fig.suptitle(title)
    fig.tight_layout()

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return Path(path)
