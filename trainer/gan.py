"""The WGAN-GP training step: n_critic critic updates, then one generator update, under a tf.distribute strategy.

The per-replica steps (d_step, g_step) read like single-device code; distribution wraps around them in
train_iteration (strategy.run + reductions). Losses are averaged over the global batch, so the all-reduced
gradients equal those of one big batch.
"""
from __future__ import annotations

from chorus.trainer.config import Config
from chorus.trainer.distribute import Distribution
from chorus.trainer.losses import d_wasserstein_loss, g_wasserstein_loss, gradient_penalty
from chorus.trainer.model import build_critic, build_generator, generate_batched, z_shape
from chorus.trainer.tfenv import keras, tf


def make_optimizer(lr: float, cfg: Config) -> keras.optimizers.Optimizer:
    opt = keras.optimizers.Adam(learning_rate=lr, beta_1=cfg.train.beta1, beta_2=cfg.train.beta2)
    return keras.mixed_precision.LossScaleOptimizer(opt) if cfg.train.mixed_precision else opt


class WGANGP:
    """Models, optimizers, RNG and counters of one run, all created inside strategy.scope()."""

    def __init__(self, cfg: Config, dist: Distribution):
        self.cfg, self.dist = cfg, dist
        self.global_batch = cfg.train.batch_size
        self.z_shape = z_shape(cfg)
        if cfg.train.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        with dist.strategy.scope():
            keras.utils.set_random_seed(cfg.train.seed)  # weight initialisers are seeded
            self.generator = build_generator(cfg)
            self.critic = build_critic(cfg)
            self.g_opt = make_optimizer(cfg.train.g_lr, cfg)
            self.d_opt = make_optimizer(cfg.train.d_lr, cfg)
            # Build optimizer slots now so that a restore fills them instead of deferring.
            self.g_opt.build(self.generator.trainable_variables)
            self.d_opt.build(self.critic.trainable_variables)
            self.rng = tf.random.Generator.from_seed(cfg.train.seed)  # z and eps; per-replica streams
            agg = tf.VariableAggregation.ONLY_FIRST_REPLICA
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, aggregation=agg, name="step")
            # Global batches consumed: the input pipeline restarts here on resume.
            self.data_position = tf.Variable(0, dtype=tf.int64, trainable=False, aggregation=agg,
                                             name="data_position")
        jit = cfg.train.jit_compile
        self._d_grads = tf.function(self._d_grads_eager, jit_compile=jit)
        self._g_grads = tf.function(self._g_grads_eager, jit_compile=jit)
        self.train_iteration = tf.function(self._train_iteration)

    # ------------------------------------------------------------------------------ per-replica steps

    def _average(self, per_example: tf.Tensor) -> tf.Tensor:
        return tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch)

    def _d_grads_eager(self, real, z, eps):
        melody = real[..., :1]  # (batch, steps, pitches, 1): the soprano conditions both G and D
        fake = self.generator([melody, z], training=True)  # outside the tape: no generator gradients here
        with tf.GradientTape() as tape:
            real_score = self.critic([real, melody], training=True)
            fake_score = self.critic([fake, melody], training=True)
            d_wd = self._average(d_wasserstein_loss(real_score, fake_score))
            d_gp = self._average(gradient_penalty(self.critic, real, fake, melody, eps))
            d_loss = d_wd + self.cfg.train.gp_weight * d_gp
            scaled = self.d_opt.get_scaled_loss(d_loss) if self.cfg.train.mixed_precision else d_loss
        grads = tape.gradient(scaled, self.critic.trainable_variables)
        if self.cfg.train.mixed_precision:
            grads = self.d_opt.get_unscaled_gradients(grads)
        return d_loss, d_wd, d_gp, grads

    def _g_grads_eager(self, real, z):
        melody = real[..., :1]
        with tf.GradientTape() as tape:
            fake = self.generator([melody, z], training=True)
            g_loss = self._average(g_wasserstein_loss(self.critic([fake, melody], training=True)))
            scaled = self.g_opt.get_scaled_loss(g_loss) if self.cfg.train.mixed_precision else g_loss
        grads = tape.gradient(scaled, self.generator.trainable_variables)
        if self.cfg.train.mixed_precision:
            grads = self.g_opt.get_unscaled_gradients(grads)
        return g_loss, grads

    def d_step(self, real):
        batch = tf.shape(real)[0]
        z = self.rng.truncated_normal(tf.concat([[batch], self.z_shape], 0))
        eps = self.rng.uniform([batch, 1, 1, 1])  # uniform in [0, 1), per example
        d_loss, d_wd, d_gp, grads = self._d_grads(real, z, eps)
        # In a replica context apply_gradients all-reduces the gradients across replicas first.
        self.d_opt.apply_gradients(zip(grads, self.critic.trainable_variables, strict=True))
        return d_loss, d_wd, d_gp

    def g_step(self, real):
        z = self.rng.truncated_normal(tf.concat([[tf.shape(real)[0]], self.z_shape], 0))
        g_loss, grads = self._g_grads(real, z)
        self.g_opt.apply_gradients(zip(grads, self.generator.trainable_variables, strict=True))
        return g_loss

    # ------------------------------------------------------------------------------ one iteration

    def _train_iteration(self, iterator):
        strategy = self.dist.strategy

        def total(x):
            return strategy.reduce(tf.distribute.ReduceOp.SUM, x, axis=None)

        d_loss = d_wd = d_gp = 0.0
        for _ in range(self.cfg.train.n_critic):  # the critic loop, unrolled into the graph
            losses = strategy.run(self.d_step, args=(next(iterator),))
            d_loss += total(losses[0])
            d_wd += total(losses[1])
            d_gp += total(losses[2])
        g_loss = total(strategy.run(self.g_step, args=(next(iterator),)))
        self.step.assign_add(1)
        self.data_position.assign_add(self.cfg.train.n_critic + 1)
        n = float(self.cfg.train.n_critic)
        return {"d_loss": d_loss / n, "wasserstein": -d_wd / n, "gradient_penalty": d_gp / n, "g_loss": g_loss}

    # ------------------------------------------------------------------------------ inference

    def generate(self, melody, z):
        return generate_batched(self.generator, melody, z)
