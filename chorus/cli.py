"""The `chorus` command: a thin shell. Each subcommand parses its arguments, loads config, calls one function."""
from __future__ import annotations

import argparse
import os
import sys

from chorus.data import tfenv
from chorus.errors import InputError

EXIT_INPUT = 2


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="preset YAML on top of configs/default.yaml")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="override one setting, e.g. --set train.batch_size=32 (repeatable)")


def cmd_train(args: argparse.Namespace) -> int:
    from chorus.trainer.config import load_config, require_tf_config

    overrides = list(args.overrides) + ([f"run.dir={args.run_dir}"] if args.run_dir else [])
    cfg = load_config(args.config, overrides)
    require_tf_config(cfg.train.strategy)
    if args.dry_run:
        from chorus.trainer.dryrun import dry_run

        print(dry_run(cfg))
        return 0
    from chorus.trainer import train

    try:
        result = train(cfg)
    except KeyboardInterrupt:
        print(f"\nchorus: interrupted; run the same command to resume {cfg.run.dir} from its last checkpoint",
              file=sys.stderr)
        return 130
    print(f"run dir: {result.run_dir} (step {result.step}, music_distance "
          f"{result.metrics.get('music_distance', float('nan')):.4f})")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    # bad input costs one line, before TensorFlow starts: the run dir, then the melody against the run's settings
    from chorus.data.midi_io import read_melody
    from chorus.trainer.config import config_from_dict, read_yaml
    from chorus.trainer.rundir import require_run_dir

    if args.num < 1:
        raise InputError(f"--num: expected a positive number of samples, got {args.num}")
    run = require_run_dir(args.run)
    if args.melody is not None:
        data = config_from_dict(read_yaml(run / "config.yaml"), source=f"{run / 'config.yaml'}: ").data
        read_melody(args.melody, steps=data.steps, steps_per_beat=data.steps_per_beat)
    from chorus.trainer.generate import generate_from_run

    paths = generate_from_run(args.run, melody=args.melody, num=args.num, out=args.out, seed=args.seed,
                              pianoroll=args.pianoroll)
    for p in paths:
        print(f"{p}  {p.with_suffix('.png')}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    def print_scored(result, ladder, name: str, label: str = "generated") -> None:
        print(result.table(label))
        print(f"music_distance: {result.music_distance:.4f}  (n={result.n}, version {result.version}; 0 = "
              "indistinguishable from the holdout by these features)")
        print(ladder.table(mark=name))

    if args.run:
        if args.config or args.overrides or args.order_by_pitch:
            raise InputError("--config, --set and --order-by-pitch go with --midi or --npz (a run is scored with "
                             "its own config)")
        from chorus.trainer.rundir import require_run_dir

        require_run_dir(args.run)  # a wrong folder costs one line, before TensorFlow starts
        from chorus.trainer.generate import evaluate_run

        result, json_path, step, ladder = evaluate_run(args.run, args.json)
        print(f"{args.run} at step {step}: generated samples vs holdout data")
        print_scored(result, ladder, f"this run (step {step})")
        print(f"written: {json_path}")
        return 0
    from chorus.trainer.config import load_config
    from chorus.trainer.ladder import MusicEvaluation, evaluate_music, read_music

    cfg = load_config(args.config, args.overrides)
    music = read_music(args.midi or args.npz, cfg, kind="midi" if args.midi else "npz",
                       order_by_pitch=args.order_by_pitch)  # every file checked here, before TensorFlow loads
    out = evaluate_music(music, cfg, order_by_pitch=args.order_by_pitch, json_path=args.json)
    print(f"{music.describe()}: vs the holdout of data.source {cfg.data.source}")
    print(out.voices_line())
    print_scored(out.evaluation, out.ladder, MusicEvaluation.NAME, label="scored")
    if args.json:
        print(f"written: {args.json}")
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from chorus.data.dataset import build_dataset
    from chorus.trainer.config import load_config

    overrides = list(args.overrides) + [f"data.source={args.source}"]
    if args.path:
        overrides.append(f"data.path={args.path}")
    cfg = load_config(args.config, overrides)
    out = build_dataset(cfg.data, args.out)
    print(out)
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from chorus.data.dataset import describe_dataset

    print(describe_dataset(args.dir))
    return 0


def _add_train(sub) -> None:
    """`chorus train`."""
    p = sub.add_parser("train", help="train one run (resumes if the run dir has a checkpoint)",
                       description="Train the GAN. Running the same command again resumes from the last checkpoint.")
    _config_args(p)
    p.add_argument("--run-dir", metavar="DIR", help="where the run is written (default: run.dir of the config)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the config, build the models, print parameter counts and the strategy, then exit")
    p.set_defaults(func=cmd_train)


def _add_generate(sub) -> None:
    """`chorus generate`."""
    p = sub.add_parser("generate", help="write 4-track MIDI + PNG conditioned on melodies",
                       description="Complete melodies with a trained generator. Without --melody, melodies come "
                                   "from the holdout set. Track 0 of the output is the melody itself.")
    p.add_argument("--run", required=True, metavar="DIR", help="a run directory (or an exported checkpoint dir)")
    p.add_argument("--melody", metavar="FILE.mid", help="a one-track melody; the first 32 steps after leading "
                                                        "silence condition the generator")
    p.add_argument("--num", type=int, default=4, help="number of samples (default 4)")
    p.add_argument("--out", metavar="DIR", help="output folder (default RUN/generated)")
    p.add_argument("--seed", type=int, default=0, help="seed for the noise (and holdout melodies)")
    p.add_argument("--pianoroll", action="store_true",
                   help="also write each sample as a pypianoroll .npz multitrack (MuseGAN's format)")
    p.set_defaults(func=cmd_generate)


def _add_evaluate(sub) -> None:
    """`chorus evaluate`."""
    p = sub.add_parser("evaluate", help="music_distance of a run, or of any 4-part music, vs the holdout set",
                       description="Score a trained run's samples (--run), a folder of 4-part MIDI files (--midi) or "
                                   "an array of rolls (--npz) against the holdout set, as training evaluates: per-"
                                   "track music metrics beside the holdout's, and music_distance with its groups at "
                                   "n = eval.num_samples, beside a ladder of references at the same n (real vs "
                                   "real, the weakest corruption, the untrained generator).")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", metavar="DIR", help="a run directory (or an exported checkpoint dir)")
    what.add_argument("--midi", metavar="DIR", help="a folder of MIDI files, each with 4 non-empty tracks: the "
                                                    "voices top to bottom (soprano first)")
    what.add_argument("--npz", metavar="FILE", help="an .npz/.npy array of rolls (N, T >= 32, 128, 4), values "
                                                    "{-1, 1}, {0, 1} or bool")
    p.add_argument("--order-by-pitch", action="store_true",
                   help="with --midi/--npz: sort each file's tracks by mean pitch (highest = soprano)")
    _config_args(p)  # with --midi/--npz: the data whose holdout (and eval settings) score the music
    p.add_argument("--json", metavar="FILE", help="where to write the JSON (default RUN/evaluation.json with --run; "
                                                  "none otherwise)")
    p.set_defaults(func=cmd_evaluate)


def _add_data(sub) -> None:
    """`chorus data build|info`."""
    p = sub.add_parser("data", help="build or describe a dataset", description="Build or describe datasets.")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    b = data_sub.add_parser("build", help="build a dataset (.npz + manifest) from a source",
                            description="Read a source, validate it, cut windows, split by piece and cache it. "
                                        "A second build with the same inputs and settings is instant.")
    b.add_argument("--source", choices=["chorales", "midi", "npy", "pypianoroll"], default="chorales")
    b.add_argument("--path", metavar="P", help="MIDI folder (midi) or .npy/.npz file (npy)")
    b.add_argument("--out", metavar="DIR", help="output folder (default: the cache under data.cache_dir)")
    _config_args(b)
    b.set_defaults(func=cmd_data_build)
    i = data_sub.add_parser("info", help="describe a built dataset", description="Shape, counts, split, metrics.")
    i.add_argument("dir", metavar="DIR")
    i.set_defaults(func=cmd_data_info)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chorus", description="Train, search and use a melody-conditioned piano-roll GAN (WGAN-GP).")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show TensorFlow's native start-up logs (also CHORUS_VERBOSE=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(sub)
    _add_generate(sub)
    _add_evaluate(sub)
    _add_data(sub)

    # Part of the package, and it imports no Ray at import time: if it fails, that is a bug to show, not hide.
    from chorus.cluster.commands import register

    register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ["CHORUS_VERBOSE"] = "1"
    tfenv.configure()  # before anything imports TensorFlow, here or in the processes this one starts
    # every subcommand: train, generate, evaluate and data import TensorFlow here, and search may (its export
    # scores the untrained generator); the processes that Ray starts for trials filter their own
    tfenv.quiet_native_logs()
    try:
        return args.func(args)
    except InputError as exc:
        print(f"chorus: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())

