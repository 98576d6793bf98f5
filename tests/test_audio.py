"""data.audio: the pip-only SoundFont player (FluidSynth is exercised in the Docker image, tests/test_docker.py)."""
from __future__ import annotations

import numpy as np
import pytest

from chorus.data import audio
from chorus.data.audio import load_soundfont, pip_soundfont, read_wav, render_midi, resolve_mode, try_render
from chorus.data.midi_io import write_midi

SR = 22050


def _file(tmp_path, roll, programs, name="s.mid"):
    return write_midi(roll, tmp_path / name, steps_per_beat=4, tempo=100.0, programs=programs,
                      track_names=[f"t{k}" for k in range(roll.shape[2])])


def _chorale(steps=32):
    roll = np.zeros((steps, 128, 4), bool)
    for k in range(4):
        for b in range(steps // 4):
            roll[4 * b : 4 * b + 4, 72 - 7 * k - 2 * (b % 3), k] = True
    return roll


def _peak_hz(audio, start_s, end_s):
    seg = audio[int(start_s * SR) : int(end_s * SR)]
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    return np.fft.rfftfreq(len(seg), 1 / SR)[np.argmax(spectrum)], spectrum


def test_the_pip_soundfont_parses_into_gm_presets():
    sf = load_soundfont(str(pip_soundfont()))
    assert all((0, p) in sf.presets for p in (0, 19, 32, 40, 52, 71))  # piano, organ, bass, violin, choir, clarinet
    assert sf.samples.dtype == np.int16 and sf.samples.size > 1_000_000


def test_numpy_render_of_a_two_bar_sample(tmp_path):
    """32 steps at 100 bpm = 4.8 s, plus the release tail (at most 1 s); non-silent, 16-bit, the asked rate."""
    mid = _file(tmp_path, _chorale(), [0, 40, 71, 32])
    wav = render_midi(mid, tmp_path / "s.wav", mode="numpy", sample_rate=SR)
    audio, sr = read_wav(wav)
    assert sr == SR and audio.shape[1] == 1
    assert 4.8 <= len(audio) / sr <= 4.8 + 1.0 + 0.01
    assert np.sqrt(np.mean(audio[: int(4.8 * SR)] ** 2)) > 0.05  # sounding throughout...
    assert np.sqrt(np.mean(audio[int(4.0 * SR) : int(4.8 * SR)] ** 2)) > 0.02  # ...to the end
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.mid", "s.wav"]  # no temp file left


@pytest.mark.parametrize(("program", "pitch"), [(0, 69), (40, 57), (32, 45)])
def test_notes_sound_at_their_pitch_with_real_instrument_timbres(tmp_path, program, pitch):
    roll = np.zeros((32, 128, 1), bool)
    roll[:, pitch, 0] = True  # one 4.8 s note
    audio, _ = read_wav(render_midi(_file(tmp_path, roll, [program]), tmp_path / "n.wav", mode="numpy"))
    audio = audio[:, 0]
    hz, spectrum = _peak_hz(audio, 0.3, 1.3)
    assert hz == pytest.approx(440 * 2 ** ((pitch - 69) / 12), rel=0.01)
    # a sampled instrument has overtones: a sine wave would put almost all energy in the fundamental's bins
    bins = np.fft.rfftfreq(int(SR * 1.0), 1 / SR)
    near = np.abs(bins - hz) < 0.1 * hz
    assert spectrum[~near].sum() > 0.2 * spectrum.sum()


def test_sustained_instruments_loop_and_instruments_differ(tmp_path):
    roll = np.zeros((32, 128, 1), bool)
    roll[:, 57, 0] = True
    violin, _ = read_wav(render_midi(_file(tmp_path, roll, [40], "v.mid"), tmp_path / "v.wav", mode="numpy"))
    piano, _ = read_wav(render_midi(_file(tmp_path, roll, [0], "p.mid"), tmp_path / "p.wav", mode="numpy"))
    late = slice(int(4.0 * SR), int(4.7 * SR))  # 4 s into a held note: past the end of any unlooped sample
    assert np.sqrt(np.mean(violin[late] ** 2)) > 0.1
    assert np.sqrt(np.mean(piano[late] ** 2)) < 0.5 * np.sqrt(np.mean(violin[late] ** 2))  # a piano decays


def test_rendering_failures_are_a_one_line_warning(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not midi")
    assert try_render(bad, tmp_path / "bad.wav", mode="numpy") is None
    err = capsys.readouterr().err
    assert err.startswith("warning: no audio for bad.mid:") and err.count("\n") == 1
    assert not (tmp_path / "bad.wav").exists()
    assert try_render(_file(tmp_path, _chorale(), [0] * 4), tmp_path / "off.wav", mode="none") is None
    assert not (tmp_path / "off.wav").exists()
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)  # a machine without FluidSynth (CI, laptops)
    assert try_render(tmp_path / "s.mid", tmp_path / "f.wav", mode="fluidsynth") is None
    assert "fluidsynth CLI" in capsys.readouterr().err and not (tmp_path / "f.wav").exists()
    assert resolve_mode("auto") == "numpy"
    with pytest.raises(ValueError, match="audio: expected one of"):
        resolve_mode("mp3")
