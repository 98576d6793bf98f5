"""Training throughput of the WGAN-GP step, after warm-up, beside the machine's own matmul rate. Prints JSON.

Samples are counted as the lab counts an iteration: (n_critic + 1) * batch_size.

    python benchmarks/train_throughput.py --config configs/lab.yaml --iterations 3
    python benchmarks/train_throughput.py --config configs/lab.yaml --lab-step
    python benchmarks/train_throughput.py --config configs/lab.yaml --compare --iterations 2

--lab-step runs the lab notebook's step as published (LabStepGAN, without XLA). --compare runs the lab's step and
chorus's (the config's own jit_compile, false by default) back to back, each in a fresh process, and prints both
beside the matmul rate each process measured right after its timing.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from chorus.data import tfenv  # noqa: E402
from chorus.data.pipeline import make_dataset  # noqa: E402
from chorus.trainer.config import load_config  # noqa: E402
from chorus.trainer.distribute import choose_strategy, configure_devices  # noqa: E402
from chorus.trainer.gan import WGANGP  # noqa: E402
from chorus.trainer.losses import d_wasserstein_loss, g_wasserstein_loss, gradient_penalty  # noqa: E402
from chorus.trainer.model import pipeline_options  # noqa: E402

tf = tfenv.tensorflow()


class LabStepGAN(WGANGP):
    """The lab notebook's training step as published (reference.md), for a side-by-side comparison.

    Critic: the generator runs with training=False outside any tape; the Wasserstein gradients come from one tape
    and the gradient penalty's (times gp_weight) from a second, and the two gradient lists are added. Generator:
    generator training=True and critic training=False on one tape. No XLA: the lab used plain tf.function.
    """

    def _d_grads_eager(self, real, z, eps):
        melody = real[..., :1]
        fake = self.generator([melody, z], training=False)
        with tf.GradientTape() as wd_tape:
            fake_score = self.critic([fake, melody], training=True)
            real_score = self.critic([real, melody], training=True)
            d_wd = self._average(d_wasserstein_loss(real_score, fake_score))
        wd_grads = wd_tape.gradient(d_wd, self.critic.trainable_variables)
        with tf.GradientTape() as gp_tape:
            d_gp = self._average(gradient_penalty(self.critic, real, fake, melody, eps))
            gp_loss = self.cfg.train.gp_weight * d_gp
        # The penalty does not depend on the last bias: its gradient there is zero, not None.
        gp_grads = gp_tape.gradient(gp_loss, self.critic.trainable_variables,
                                    unconnected_gradients=tf.UnconnectedGradients.ZERO)
        grads = [a + b for a, b in zip(wd_grads, gp_grads, strict=True)]
        return d_wd + gp_loss, d_wd, d_gp, grads

    def _g_grads_eager(self, real, z):
        melody = real[..., :1]
        with tf.GradientTape() as tape:
            fake = self.generator([melody, z], training=True)
            g_loss = self._average(g_wasserstein_loss(self.critic([fake, melody], training=False)))
        return g_loss, tape.gradient(g_loss, self.generator.trainable_variables)


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    f = tf.function(lambda a, b: tf.matmul(a, b))
    f(a, b).numpy()
    tick = time.perf_counter()
    for _ in range(repeats):
        f(a, b).numpy()
    return 2 * n ** 3 * repeats / (time.perf_counter() - tick) / 1e9


def compare(args: argparse.Namespace) -> None:
    """Both variants back to back, each in its own process (no shared TensorFlow state), one summary line per
    round; rounds alternate which variant goes first, since the machine's load drifts."""
    base = [sys.executable, __file__, "--iterations", str(args.iterations), "--warmup", str(args.warmup)]
    base += ["--config", args.config] if args.config else []
    base += [a for o in args.overrides for a in ("--set", o)] + (["--synthetic"] if args.synthetic else [])
    variants = [("lab_step", ["--lab-step"]), ("chorus", [])]
    for r in range(args.rounds):
        results = {}
        for name, extra in variants if r % 2 == 0 else variants[::-1]:
            out = subprocess.run(base + extra, check=True, stdout=subprocess.PIPE, text=True).stdout
            results[name] = json.loads(out)
            print(out, flush=True)
        lab, ours = results["lab_step"], results["chorus"]
        print(f"round {r + 1}: lab step {lab['seconds_per_iteration']:.1f} s/iteration "
              f"(matmul {lab['matmul_gflops']:.0f} GFLOP/s), chorus (jit_compile={ours['jit_compile']}) "
              f"{ours['seconds_per_iteration']:.1f} s/iteration (matmul {ours['matmul_gflops']:.0f} GFLOP/s): "
              f"speed-up {lab['seconds_per_iteration'] / ours['seconds_per_iteration']:.2f}x", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None)
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--iterations", type=int, default=3, help="timed iterations after warm-up")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations (tracing, XLA compilation)")
    ap.add_argument("--lab-step", action="store_true", help="the lab's critic step (generator on the tape)")
    ap.add_argument("--synthetic", action="store_true", help="random monophonic rolls instead of the dataset")
    ap.add_argument("--compare", action="store_true", help="the lab's step, then chorus's, in fresh processes")
    ap.add_argument("--rounds", type=int, default=1, help="with --compare: rounds, alternating which goes first")
    args = ap.parse_args()
    if args.compare:
        compare(args)
        return
    overrides = args.overrides + (["train.jit_compile=false"] if args.lab_step else [])
    cfg = load_config(args.config, overrides)
    configure_devices(cfg.train.cpu_devices, cfg.train.threads)
    dist = choose_strategy(cfg.train.strategy)
    if args.synthetic:
        rng = np.random.default_rng(0)
        rolls = np.zeros((512, cfg.data.steps, cfg.data.pitches, cfg.data.tracks), bool)
        pitch = rng.integers(40, 80, size=(512, cfg.data.steps, cfg.data.tracks))
        np.put_along_axis(rolls, pitch[:, :, None, :], True, axis=2)
    else:
        from chorus.trainer.run import load_training_data

        rolls = load_training_data(cfg, verbose=False).train
    gan = (LabStepGAN if args.lab_step else WGANGP)(cfg, dist)
    ds = dist.strategy.distribute_datasets_from_function(
        lambda ctx: make_dataset(rolls, global_batch=cfg.train.batch_size, seed=0, **pipeline_options(cfg),
                                 num_replicas=dist.num_replicas, input_context=ctx))
    it = iter(ds)
    tick = time.perf_counter()
    for _ in range(args.warmup):
        {k: float(v) for k, v in gan.train_iteration(it).items()}
    warmup_s = time.perf_counter() - tick
    times = []
    for _ in range(args.iterations):
        tick = time.perf_counter()
        {k: float(v) for k, v in gan.train_iteration(it).items()}
        times.append(time.perf_counter() - tick)
    per_it = float(np.median(times))
    samples = (cfg.train.n_critic + 1) * cfg.train.batch_size
    print(json.dumps({
        "config": args.config or "configs/default.yaml", "overrides": args.overrides,
        "lab_step": args.lab_step, "jit_compile": cfg.train.jit_compile, "strategy": dist.name,
        "replicas": dist.num_replicas, "batch_size": cfg.train.batch_size, "n_critic": cfg.train.n_critic,
        "generator_params": gan.generator.count_params(), "critic_params": gan.critic.count_params(),
        "warmup_seconds": round(warmup_s, 2), "seconds_per_iteration": round(per_it, 3),
        "iteration_times": [round(t, 3) for t in times],
        "samples_per_second": round(samples / per_it, 2),
        "matmul_gflops": round(matmul_gflops(), 1),
        "devices": [d.name for d in tf.config.list_logical_devices()],
    }, indent=2))


if __name__ == "__main__":
    main()
