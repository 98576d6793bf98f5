"""MIDI -> WAV with General MIDI instruments, so samples can be heard.

Two renderers, one result (a 16-bit PCM WAV written atomically):

- ``fluidsynth``: the FluidSynth CLI with a GM soundfont (the Docker image installs the Debian packages
  fluidsynth + fluid-soundfont-gm, /usr/share/sounds/sf2/FluidR3_GM.sf2).
- ``numpy``: a small pure-numpy SoundFont 2 sample player for machines without FluidSynth (laptops, CI), using the
  GM soundfont TimGM6mb.sf2 that the pretty_midi wheel ships. It plays each note with the preset of its track's
  program (bank 0): the zone for its key and velocity, the sample resampled to pitch (root key, coarse/fine tune,
  sample rate), the sustain loop, a delay/attack/hold/decay/sustain/release volume envelope and the initial
  attenuation. Modulators, filters, effects and stereo are left out: it is for listening to samples, not mastering.

``audio`` setting: ``auto`` (fluidsynth when the CLI and its soundfont are present, else numpy), ``fluidsynth``,
``numpy`` or ``none``. ``try_render`` turns any failure into a one-line warning: a sample is never lost for audio.
"""
from __future__ import annotations

import functools
import shutil
import struct
import subprocess
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chorus.data.midi_io import read_midi
from chorus.files import atomic_path

MODES = ("auto", "fluidsynth", "numpy", "none")  # not "off": YAML reads a bare off as false
FLUIDSYNTH_SF2 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
TAIL_SECONDS = 1.0  # numpy renderer: release tail kept after the last note-off
PEAK = 0.9  # normalised peak amplitude
GAIN = 0.8  # fluidsynth -g
FLUIDSYNTH_TIMEOUT_S = 120


def pip_soundfont() -> Path:
    """TimGM6mb.sf2, shipped inside the pretty_midi wheel."""
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def resolve_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"audio: expected one of {', '.join(MODES)}, got {mode!r}")
    if mode == "auto":
        return "fluidsynth" if shutil.which("fluidsynth") and FLUIDSYNTH_SF2.is_file() else "numpy"
    return mode


def render_midi(midi_path: str | Path, wav_path: str | Path, *, mode: str = "auto",
                sample_rate: int = 22050) -> Path | None:
    """Render a MIDI file to a mono (numpy) or stereo (fluidsynth) 16-bit WAV; None when mode is none."""
    mode = resolve_mode(mode)
    if mode == "none":
        return None
    wav_path = Path(wav_path)
    if mode == "fluidsynth":
        exe = shutil.which("fluidsynth")
        if exe is None or not FLUIDSYNTH_SF2.is_file():
            raise RuntimeError(f"fluidsynth CLI or {FLUIDSYNTH_SF2} not found (audio: fluidsynth)")
        with atomic_path(wav_path) as tmp:
            cmd = [exe, "-ni", "-T", "wav", "-F", str(tmp), "-r", str(sample_rate), "-g", str(GAIN),
                   str(FLUIDSYNTH_SF2), str(midi_path)]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=FLUIDSYNTH_TIMEOUT_S)
            if done.returncode != 0 or tmp.stat().st_size <= 44:
                raise RuntimeError(f"fluidsynth exited {done.returncode}: {' '.join(done.stderr.split())[:200]}")
        return wav_path
    audio = synthesize(midi_path, sample_rate)
    write_wav(wav_path, audio, sample_rate)
    return wav_path


def try_render(midi_path: str | Path, wav_path: str | Path, *, mode: str = "auto",
               sample_rate: int = 22050) -> Path | None:
    """render_midi, but a failure is a one-line warning on stderr and None (the MIDI and PNG stay written)."""
    try:
        return render_midi(midi_path, wav_path, mode=mode, sample_rate=sample_rate)
    except Exception as e:  # noqa: BLE001 - audio is a courtesy: report it, never lose the sample over it
        print(f"warning: no audio for {Path(midi_path).name}: {' '.join(f'{type(e).__name__}: {e}'.split())}",
              file=sys.stderr, flush=True)
        return None


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Float audio (n,) in [-1, 1] -> mono 16-bit PCM WAV, atomically."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return Path(path)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV -> (float32 (frames, channels) in [-1, 1], sample rate)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{Path(path).name}: expected 16-bit PCM, got {8 * w.getsampwidth()}-bit")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return pcm.reshape(-1, w.getnchannels()).astype(np.float32) / 32768.0, w.getframerate()


# ------------------------------------------------------------------------------------------ SoundFont 2 parser
# Generator numbers (SF2.04 section 8.1.2) the player uses.
START_OFS, END_OFS, LOOP_START_OFS, LOOP_END_OFS, START_COARSE = 0, 1, 2, 3, 4
END_COARSE, LOOP_START_COARSE, LOOP_END_COARSE = 12, 45, 50
DELAY, ATTACK, HOLD, DECAY, SUSTAIN, RELEASE = 33, 34, 35, 36, 37, 38
INSTRUMENT, KEY_RANGE, VEL_RANGE, ATTENUATION = 41, 43, 44, 48
COARSE_TUNE, FINE_TUNE, SAMPLE_ID, SAMPLE_MODES, SCALE_TUNING, ROOT_KEY = 51, 52, 53, 54, 56, 58
UNSIGNED = (KEY_RANGE, VEL_RANGE, INSTRUMENT, SAMPLE_ID)  # amounts read as unsigned (ranges: lo | hi << 8)
ADDITIVE = (ATTENUATION, COARSE_TUNE, FINE_TUNE, DELAY, ATTACK, HOLD, DECAY, SUSTAIN, RELEASE)  # preset level adds


@dataclass
class Zone:
    gens: dict[int, int]  # generator -> signed amount (ranges as lo | hi << 8)
    key: tuple[int, int]
    vel: tuple[int, int]


@dataclass
class SoundFont:
    samples: np.ndarray  # int16, every sample of the font
    headers: list[tuple]  # shdr: (name, start, end, loop start, loop end, rate, root key, correction, link, type)
    presets: dict[tuple[int, int], list[Zone]]  # (bank, program) -> preset zones (gens hold INSTRUMENT)
    instruments: list[list[Zone]]  # instrument zones (gens hold SAMPLE_ID)


def _chunks(data: bytes, start: int, size: int) -> dict[str, tuple[int, int]]:
    """RIFF sub-chunks in data[start:start + size] -> id -> (offset, size); a LIST is keyed by its type."""
    out, pos = {}, start
    while pos + 8 <= start + size:
        cid, n = struct.unpack_from("<4sI", data, pos)
        cid = cid.decode("latin1")
        if cid == "LIST":
            out[data[pos + 8 : pos + 12].decode("latin1")] = (pos + 12, n - 4)
        else:
            out[cid] = (pos + 8, n)
        pos += 8 + n + (n & 1)
    return out


def _zones(bags: list[int], gens: list[tuple[int, int]], first: int, last: int, terminal: int) -> list[Zone]:
    """Zones of one preset or instrument (bags first..last-1); a first zone without `terminal` is global and
    is merged into the others."""
    zones, glob = [], {}
    for b in range(first, last):
        g = dict(gens[bags[b] : bags[b + 1]])
        if terminal not in g:
            if b == first:
                glob = g
            continue
        zones.append({**glob, **g})
    out = []
    for g in zones:
        rk, rv = g.get(KEY_RANGE, 127 << 8), g.get(VEL_RANGE, 127 << 8)
        out.append(Zone(g, (rk & 255, (rk >> 8) & 255), (rv & 255, (rv >> 8) & 255)))
    return out


@functools.lru_cache(maxsize=2)
def load_soundfont(path: str) -> SoundFont:
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise ValueError(f"{Path(path).name}: not a SoundFont 2 file")
    top = _chunks(data, 12, len(data) - 12)
    so, ss = _chunks(data, *top["sdta"])["smpl"]
    samples = np.frombuffer(data, dtype="<i2", count=ss // 2, offset=so)
    pdta = _chunks(data, *top["pdta"])

    def records(name: str, fmt: str) -> list[tuple]:
        off, size = pdta[name]
        n = struct.calcsize(fmt)
        return [struct.unpack_from(fmt, data, off + i * n) for i in range(size // n)]

    def gen_list(name: str) -> list[tuple[int, int]]:
        return [(op, amt if op not in UNSIGNED else lo_hi) for op, amt, lo_hi in
                ((op, amt, struct.unpack("<H", struct.pack("<h", amt))[0]) for op, amt in records(name, "<Hh"))]

    phdr, inst = records("phdr", "<20sHHHIII"), records("inst", "<20sH")
    pbag, ibag = [r[0] for r in records("pbag", "<HH")], [r[0] for r in records("ibag", "<HH")]
    pgen, igen = gen_list("pgen"), gen_list("igen")
    presets = {(h[2], h[1]): _zones(pbag, pgen, h[3], phdr[i + 1][3], INSTRUMENT) for i, h in enumerate(phdr[:-1])}
    instruments = [_zones(ibag, igen, h[1], inst[i + 1][1], SAMPLE_ID) for i, h in enumerate(inst[:-1])]
    return SoundFont(samples, records("shdr", "<20sIIIIIBbHH")[:-1], presets, instruments)


# ------------------------------------------------------------------------------------------ the sample player


def _seconds(timecents: int) -> float:
    return 0.0 if timecents <= -12000 else 2.0 ** (timecents / 1200.0)


def _voice(sf: SoundFont, g: dict[int, int], pitch: int, velocity: int, held: float, sr: int) -> np.ndarray:
    """One sample zone playing `pitch` for `held` seconds plus its release (capped by TAIL_SECONDS)."""
    _, start, end, loop_a, loop_b, rate, root, correction, _, _ = sf.headers[g[SAMPLE_ID]]
    start += g.get(START_OFS, 0) + 32768 * g.get(START_COARSE, 0)
    end += g.get(END_OFS, 0) + 32768 * g.get(END_COARSE, 0)
    loop_a += g.get(LOOP_START_OFS, 0) + 32768 * g.get(LOOP_START_COARSE, 0)
    loop_b += g.get(LOOP_END_OFS, 0) + 32768 * g.get(LOOP_END_COARSE, 0)
    root = g[ROOT_KEY] if g.get(ROOT_KEY, -1) >= 0 else root
    cents = (pitch - root) * g.get(SCALE_TUNING, 100) + 100 * g.get(COARSE_TUNE, 0) + g.get(FINE_TUNE, 0) + correction
    step = 2.0 ** (cents / 1200.0) * rate / sr  # source samples per output sample
    release = min(_seconds(g.get(RELEASE, -12000)), TAIL_SECONDS)
    n = int((held + release) * sr)
    pos = step * np.arange(n)  # (n,) position in the sample, from its start
    length, loop_len = end - start, loop_b - loop_a
    if g.get(SAMPLE_MODES, 0) & 1 and loop_len > 1:  # 1 = loop, 3 = loop then play on at release: both loop here
        rel = pos - (loop_a - start)
        pos = np.where(rel >= 0, (loop_a - start) + np.mod(rel, loop_len), pos)
    else:
        n = min(n, int(max(length - 1, 0) / step))
        pos = pos[:n]
    i = pos.astype(np.int64)
    frac = (pos - i).astype(np.float32)
    src = sf.samples[start : max(end, start + 2)].astype(np.float32) / 32768.0
    i = np.minimum(i, len(src) - 2)
    wav = src[i] * (1 - frac) + src[i + 1] * frac  # linear interpolation
    # volume envelope: delay, linear attack, hold, decay in dB to the sustain level, release in dB after note-off
    t = np.arange(n) / sr
    delay, attack, hold = (_seconds(g.get(k, -12000)) for k in (DELAY, ATTACK, HOLD))
    decay = max(_seconds(g.get(DECAY, -12000)), 1e-3)
    sustain_db = -min(max(g.get(SUSTAIN, 0), 0), 1440) / 10.0
    te = t - delay
    db = np.maximum(-100.0 * np.maximum(te - attack - hold, 0.0) / decay, sustain_db)
    env = np.clip(te / max(attack, 1e-4), 0.0, 1.0) * 10.0 ** (db / 20.0)
    off = t >= held
    if off.any():
        level = env[~off][-1] if (~off).any() else 0.0
        env[off] = level * 10.0 ** (-5.0 * (t[off] - held) / max(release, 1e-3))
    gain = 10.0 ** (-max(g.get(ATTENUATION, 0), 0) / 200.0) * (velocity / 127.0) ** 2
    return wav * env * gain


def _zones_for(sf: SoundFont, program: int, pitch: int, velocity: int) -> list[dict[int, int]]:
    """Generators of every instrument zone that sounds for (program, pitch, velocity); preset values added."""
    preset = sf.presets.get((0, program)) or sf.presets.get((0, 0)) or next(iter(sf.presets.values()))
    out = []
    for pz in preset:
        if not (pz.key[0] <= pitch <= pz.key[1] and pz.vel[0] <= velocity <= pz.vel[1]):
            continue
        for iz in sf.instruments[pz.gens[INSTRUMENT]]:
            if iz.key[0] <= pitch <= iz.key[1] and iz.vel[0] <= velocity <= iz.vel[1]:
                g = dict(iz.gens)
                for k in ADDITIVE:
                    if k in pz.gens:
                        g[k] = g.get(k, 0 if k not in (DELAY, ATTACK, HOLD, DECAY, RELEASE) else -12000) + pz.gens[k]
                out.append(g)
    return out


def synthesize(midi_path: str | Path, sample_rate: int = 22050, soundfont: str | Path | None = None) -> np.ndarray:
    """Render a MIDI file with the numpy sample player -> float32 mono (n,), peak-normalised to PEAK."""
    sf = load_soundfont(str(soundfont or pip_soundfont()))
    data = read_midi(midi_path)
    notes = [(t, n) for t in data.tracks if not t.is_drum for n in t.notes]  # no GM drum kit here
    starts = data.seconds([n[0] for _, n in notes])
    ends = data.seconds([n[1] for _, n in notes])
    total = int((float(ends.max(initial=0.0)) + TAIL_SECONDS) * sample_rate) + 1
    out = np.zeros(total, dtype=np.float32)  # (frames,)
    for (track, (_, _, pitch, velocity)), a, b in zip(notes, starts, ends, strict=True):
        for g in _zones_for(sf, track.program, pitch, velocity):
            v = _voice(sf, g, pitch, velocity, float(b - a), sample_rate)
            i = int(a * sample_rate)
            v = v[: total - i]
            out[i : i + len(v)] += v
    peak = float(np.abs(out).max(initial=0.0))
    return out * (PEAK / peak) if peak > 0 else out
