"""The ladder of music_distance references (trainer.ladder) and a folder of real chorales placed on it.

    python benchmarks/ladder.py                       # default config: n = eval.num_samples = 256, 10 chorales
    python benchmarks/ladder.py --pieces 20 --set eval.num_samples=64
    python benchmarks/ladder.py --smoke-test          # 24 pieces, n = 16: checks that it runs

Writes every 25th piece of the train split (real chorales the holdout does not hold) to MIDI with music21's own
writer (pickups and all), then scores the folder as `chorus evaluate --midi DIR` does and prints the ladder.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from chorus.trainer.config import load_config
from chorus.trainer.ladder import MusicEvaluation, evaluate_music, read_music


def write_chorales(piece_ids: list[str], folder: Path) -> None:
    from music21 import corpus

    names = {n.split("/")[-1]: n for n in corpus.chorales.Iterator(returnType="filename")}
    for pid in piece_ids:
        corpus.parse(names[pid]).write("midi", fp=str(folder / f"{pid}.mid"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[], help="config override, e.g. eval.num_samples=64")
    parser.add_argument("--pieces", type=int, default=10, help="real chorales in the folder (default 10)")
    parser.add_argument("--smoke-test", action="store_true", help="24 pieces, 30 %% held out, n = 16, 3 chorales")
    args = parser.parse_args()
    smoke = ["data.max_pieces=24", "data.holdout_fraction=0.3", "eval.num_samples=16"] if args.smoke_test else []
    cfg = load_config(None, smoke + args.set)
    from chorus.trainer.run import load_training_data

    train_ids = load_training_data(cfg, verbose=True).manifest["piece_ids"]["train"]
    step = max(1, len(train_ids) // args.pieces) if not args.smoke_test else 1
    with tempfile.TemporaryDirectory() as tmp:
        write_chorales(train_ids[::step][:3 if args.smoke_test else args.pieces], Path(tmp))
        t = time.perf_counter()
        out = evaluate_music(read_music(tmp, cfg, kind="midi"), cfg)
        seconds = time.perf_counter() - t
    print(f"{out.music.describe()}")
    print(out.ladder.table(mark=MusicEvaluation.NAME))
    print(f"(scoring and the ladder took {seconds:.1f} s)")


if __name__ == "__main__":
    main()
