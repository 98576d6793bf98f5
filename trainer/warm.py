"""Warm runs: a process that trains run after run (a reused Ray Tune actor, a benchmark, a notebook) keeps the
last run's WGANGP and, when the next run has the same structure, resets it instead of building and tracing anew.

Tracing and compiling the step is most of a run's start-up once TensorFlow is imported (seconds per run). What a
reset restores is exactly what a fresh build creates (gan.WGANGP.reset); tests/test_warm.py checks that a run
after another in one process ends bit for bit where it ends in a fresh process. One WGANGP is kept: a search's
trials mostly share a structure, and a different one replaces it.
"""
from __future__ import annotations

from chorus.data import tfenv
from chorus.trainer.config import Config
from chorus.trainer.distribute import Distribution
from chorus.trainer.gan import WGANGP, structure_key

keras = tfenv.keras()

_last: WGANGP | None = None


def acquire_gan(cfg: Config, dist: Distribution) -> tuple[WGANGP, bool]:
    """This run's WGANGP and whether it was reused (reset) rather than built."""
    global _last
    key = structure_key(cfg, dist)
    if key is not None and _last is not None and _last.key == key:
        _last.reset(cfg)
        return _last, True
    if _last is not None:
        _last = None
        keras.backend.clear_session()  # drop the previous run's Keras graph state before building afresh
    gan = WGANGP(cfg, dist)
    _last = gan if key is not None else None
    return gan, False
