"""`chorus train --dry-run`: validate, build the models, name the strategy, train nothing."""
from __future__ import annotations

from chorus.trainer.config import Config
from chorus.trainer.distribute import choose_strategy, configure_devices
from chorus.trainer.model import build_critic, build_generator


def dry_run(cfg: Config) -> str:
    configure_devices(cfg.train.cpu_devices, cfg.train.threads)
    dist = choose_strategy(cfg.train.strategy)
    with dist.strategy.scope():
        g, d = build_generator(cfg), build_critic(cfg)
    return "\n".join([
        f"config ok; run dir {cfg.run.dir}",
        f"generator: {g.count_params():,} parameters (input melody {tuple(g.inputs[0].shape[1:])}, "
        f"z {tuple(g.inputs[1].shape[1:])}, output {tuple(g.output.shape[1:])})",
        f"critic:    {d.count_params():,} parameters",
        f"strategy:  {dist.describe()}",
        f"data:      source {cfg.data.source}{' ' + cfg.data.path if cfg.data.path else ''}; "
        f"global batch {cfg.train.batch_size}; {cfg.train.steps} iterations of "
        f"{cfg.train.n_critic} critic + 1 generator steps",
    ])
