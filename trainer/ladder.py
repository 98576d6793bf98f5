"""Where a music_distance value sits: references scored like it, against the same holdout, at the same n.

    real vs real          n real windows of other pieces (the train split), each with its own melody: what music
                          as close to Bach as Bach scores at this n (not 0: n windows are a sample)
    weakest corruption    the lowest-scoring corruption of data.calibration's set, applied to the n holdout windows
                          whose melodies an evaluation completes (calibrate()'s rule)
    untrained generator   the config's generator with its seeded initial weights (training's step 0)

Every rung draws its n = eval.num_samples windows by the evaluation's rule (eval.seed; with replacement only when
there are fewer than n) and is scored by the objective against the holdout, so a rung compares with a trial's value.
The search report places its best trial on this ladder, and `chorus evaluate` places a run or any music on it
(`evaluate_music`: a folder of MIDI files or an array of rolls). A folder of few pieces also gets "real, P pieces":
the median over draws of P real train pieces, since real music of few pieces scores above real vs real (10 chorales
at n = 256: 0.20 to 0.43 against 0.158, by which ten).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chorus.data.calibration import CORRUPTIONS, Meter
from chorus.data.music_files import MusicWindows, read_array_windows, read_midi_windows
from chorus.data.objective import MUSIC_DISTANCE_VERSION, music_distance
from chorus.files import write_text_atomic
from chorus.trainer.config import Config
from chorus.trainer.evaluation import Evaluation, draw_windows, evaluate, reference_features, score

REAL, WEAKEST, UNTRAINED = "real vs real", "weakest corruption", "untrained generator"


@dataclass(frozen=True)
class Rung:
    name: str
    value: float  # music_distance
    n: int  # samples scored
    detail: str = ""


@dataclass
class Ladder:
    rungs: list[Rung]  # lowest value first
    version: int = MUSIC_DISTANCE_VERSION

    def get(self, name: str) -> Rung | None:
        return next((r for r in self.rungs if r.name == name), None)

    def placed(self, name: str, value: float, n: int, detail: str = "", version: int | None = None) -> Ladder:
        """This ladder with one more rung (the value being judged), in its place. version: the objective version a
        stored value was measured with; a value of another version than the ladder's never goes on it (ValueError)."""
        if version is not None and int(version) != self.version:
            raise ValueError(f"{name}: music_distance version {version} does not compare with this ladder's "
                             f"version {self.version}; score it again")
        return Ladder(sorted([*self.rungs, Rung(name, float(value), n, detail)], key=lambda r: r.value), self.version)

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.rungs]

    def table(self, mark: str | None = None) -> str:
        """One line per rung, lowest first; the rung named mark gets an arrow."""
        width = max(len(r.name) for r in self.rungs)
        lines = [f"music_distance ladder (version {self.version}; lower = nearer the holdout):"]
        for r in self.rungs:
            arrow = "->" if r.name == mark else "  "
            lines.append(f" {arrow} {r.value:7.3f}  n={r.n:<4} {r.name:<{width}}  {r.detail}".rstrip())
        return "\n".join(lines)


def _meter(cfg: Config) -> dict[str, int]:
    return {"steps_per_bar": cfg.data.steps_per_bar, "steps_per_beat": cfg.data.steps_per_beat}


def real_vs_real(train: np.ndarray, cfg: Config, ref_features: np.ndarray) -> Rung:
    n = cfg.eval.num_samples
    value = music_distance(draw_windows(train, n, cfg.eval.seed), None, ref_features=ref_features, **_meter(cfg))
    return Rung(REAL, value, n, f"real windows of other pieces (train split, {len(train)}), each with its own melody")


def weakest_corruption(holdout: np.ndarray, cfg: Config, ref_features: np.ndarray) -> Rung:
    n = cfg.eval.num_samples
    sample = draw_windows(holdout, n, cfg.eval.seed)  # the windows whose melodies an evaluation completes
    meter = Meter(steps_per_beat=cfg.data.steps_per_beat, steps_per_bar=cfg.data.steps_per_bar)
    values = {name: music_distance(corrupt(sample, np.random.default_rng(cfg.eval.seed), meter), None,
                                   ref_features=ref_features, **_meter(cfg))
              for name, (_, corrupt) in CORRUPTIONS.items()}
    name = min(values, key=values.get)
    return Rung(WEAKEST, values[name], n, f"{name}: {CORRUPTIONS[name][0]} (lowest of {len(values)})")


def real_of_size(pieces: int, train: np.ndarray, train_piece: np.ndarray, cfg: Config, ref_features: np.ndarray,
                 draws: int = 25) -> Rung:
    """Real vs real for a folder of few pieces: the windows of `pieces` random train pieces, n drawn from them by the
    evaluation's rule; the median over draws (few pieces cover less of Bach's range than a draw over all of them)."""
    n, rng = cfg.eval.num_samples, np.random.default_rng(cfg.eval.seed)
    ids = np.unique(train_piece)
    values = []
    for _ in range(draws):
        windows = train[np.isin(train_piece, rng.choice(ids, size=min(pieces, len(ids)), replace=False))]
        values.append(music_distance(draw_windows(windows, n, cfg.eval.seed), None, ref_features=ref_features,
                                     **_meter(cfg)))
    lo, hi = np.percentile(values, [10, 90])
    return Rung(f"real, {pieces} pieces", float(np.median(values)), n,
                f"median of {draws} draws of {pieces} train pieces (10-90 %: {lo:.3f}-{hi:.3f})")


def untrained_generator(holdout: np.ndarray, cfg: Config, ref_features: np.ndarray) -> Rung:
    """The config's generator at training's step 0, evaluated as training evaluates (imports TensorFlow)."""
    from chorus.data import tfenv
    from chorus.trainer.model import build_generator, generate_batched, z_shape

    keras = tfenv.keras()

    keras.utils.set_random_seed(cfg.train.seed)  # as trainer.gan.WGANGP seeds its initialisers
    generator = build_generator(cfg)
    result = evaluate(lambda m, z: generate_batched(generator, m, z), holdout, cfg, z_shape(cfg), {}, ref_features)
    return Rung(UNTRAINED, result.music_distance, result.n, f"seeded initial weights (train.seed {cfg.train.seed})")


def build_ladder(train: np.ndarray, holdout: np.ndarray, cfg: Config, *, untrained: bool = True,
                 ref_features: np.ndarray | None = None) -> Ladder:
    """The three references of a config's data at n = eval.num_samples (untrained=False: without TensorFlow)."""
    if ref_features is None:
        ref_features = reference_features(holdout, cfg)
    rungs = [real_vs_real(train, cfg, ref_features), weakest_corruption(holdout, cfg, ref_features)]
    if untrained:
        rungs.append(untrained_generator(holdout, cfg, ref_features))
    return Ladder(sorted(rungs, key=lambda r: r.value))


# ----------------------------------------------------------------------------------------- any music on the scale


@dataclass
class MusicEvaluation:
    evaluation: Evaluation  # scored at n = eval.num_samples
    music: MusicWindows
    ladder: Ladder  # with the music placed on it, as NAME
    order_by_pitch: bool
    with_replacement: bool  # fewer windows than n: drawn with replacement

    NAME = "this music"

    def voices_line(self) -> str:
        """How the tracks became voices; with order_by_pitch, each file whose order changed."""
        if not self.order_by_pitch:
            return "voices: each file's tracks in their order, top to bottom (soprano first)"
        moved = {p: o for p, o in self.music.orders.items() if o != sorted(o)}
        shown = "; ".join(f"{p}: tracks {','.join(map(str, o))}" for p, o in list(moved.items())[:5])
        more = f"; and {len(moved) - 5} more" if len(moved) > 5 else ""
        return (f"voices: ordered by mean pitch, highest = soprano (--order-by-pitch); {len(moved)} of "
                f"{len(self.music.pieces)} {self.music.kind} reordered" + (f" ({shown}{more})" if moved else ""))

    def to_json(self) -> dict[str, Any]:
        return {"source": self.music.source, "pieces": self.music.pieces, "windows": len(self.music.windows),
                "order_by_pitch": self.order_by_pitch, "track_orders": self.music.orders or None,
                "with_replacement": self.with_replacement, **self.evaluation.to_json(),
                "ladder": self.ladder.to_json()}


def read_music(path: str | Path, cfg: Config, *, kind: str, order_by_pitch: bool = False) -> MusicWindows:
    """kind "midi": a folder of MIDI files; "npz": an .npy/.npz array of rolls. No TensorFlow."""
    read = read_midi_windows if kind == "midi" else read_array_windows
    return read(path, cfg.data, order_by_pitch=order_by_pitch)


def evaluate_music(music: MusicWindows, cfg: Config, *, order_by_pitch: bool = False, untrained: bool = True,
                   json_path: str | Path | None = None) -> MusicEvaluation:
    """Score music's windows against the config's holdout as `chorus evaluate --run` scores a model: n =
    eval.num_samples windows drawn by the evaluation's rule, the same metrics and groups, placed on the ladder
    (written to json_path if given)."""
    if cfg.data.source != "dataset":
        from chorus.data.sources import source_identity

        source_identity(cfg.data)  # a missing data.path costs one line, before TensorFlow starts
    from chorus.trainer.run import load_training_data  # imports TensorFlow, as the untrained rung does

    data = load_training_data(cfg, verbose=True)
    ref = reference_features(data.holdout, cfg)
    n = cfg.eval.num_samples
    result = score(draw_windows(music.windows, n, cfg.eval.seed), data.holdout, cfg, ref_features=ref)
    ladder = build_ladder(data.train, data.holdout, cfg, untrained=untrained, ref_features=ref)
    with_replacement = len(music.windows) < n
    detail = f"{len(music.windows)} windows, drawn with{'' if with_replacement else 'out'} replacement"
    ladder = ladder.placed(MusicEvaluation.NAME, result.music_distance, n, detail)
    if len(music.pieces) < len(np.unique(data.train_piece)):  # a small folder: what as few real pieces score
        same = real_of_size(len(music.pieces), data.train, data.train_piece, cfg, ref)
        ladder = ladder.placed(same.name, same.value, same.n, same.detail)
    out = MusicEvaluation(result, music, ladder, order_by_pitch, with_replacement)
    if json_path:
        write_text_atomic(Path(json_path), json.dumps(out.to_json(), indent=2) + "\n")
    return out
