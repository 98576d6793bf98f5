"""TensorFlow side of chorus: config, models, WGAN-GP step, strategies, checkpoints, generation.

`train(config, report=..., resume_from=...)` is the one entry point; it never imports Ray. Exports are lazy so
that `import trainer.config` (the CLI's config checks) does not pay for importing TensorFlow.
"""

__all__ = ["train", "Report", "RunResult"]


def __getattr__(name):
    if name in __all__:
        from chorus.trainer import run

        return getattr(run, name)
    raise AttributeError(name)
