"""The WGAN-GP training step: n_critic critic updates, then one generator update, under a tf.distribute strategy.

One iteration (`train_iteration`) is Algorithm 1 of Gulrajani et al. 2017, "Improved Training of Wasserstein
GANs", with the critic D and the generator G conditioned on the melody c (track 0 of the real roll,
RollCodec.melody) and with each symbol read from the config:

    for _ in range(n_critic):                        # d_step, each on a fresh batch of m real rolls
        x ~ data, z ~ p(z), eps ~ U[0, 1] per example
        x_fake = G(z | c);  x_hat = eps * x + (1 - eps) * x_fake                       # the interpolates
        d_loss = mean(D(x_fake | c) - D(x | c)) + lambda * mean((||grad_x_hat D(x_hat | c)||_2 - 1)^2)
        critic <- Adam(alpha_d, beta1, beta2) step on d_loss
    z ~ p(z)                                          # g_step, on a fresh batch (for its melodies c)
    g_loss = -mean(D(G(z | c) | c));  generator <- Adam(alpha_g, beta1, beta2) step on g_loss

    paper symbol    chorus                      paper's value
    n_critic        train.n_critic              5
    lambda          train.gp_weight             10
    m               train.batch_size (global)   -
    alpha           train.d_lr, train.g_lr      1e-4 (one rate for both; chorus decays both linearly to
                                                train.lr_end_fraction of themselves at the last step)
    beta1, beta2    train.beta1, train.beta2    0, 0.9
    p(z)            truncated normal (2 sd) of shape z_shape(cfg): (data.steps / 16, model.pitch_window / 16,
                    model.z_channels)

In the code: d_wasserstein_loss and gradient_penalty (trainer/losses.py; the norm runs over all non-batch
axes, checked by hand in tests/test_gan_math.py) make d_loss in `_d_grads`, g_wasserstein_loss makes g_loss in
`_g_grads`. Beyond the algorithm: train.ema_decay keeps a moving average of G for sampling, and
train.mixed_precision scales the losses. The per-replica steps (d_step, g_step) read like single-device code;
distribution wraps around them in train_iteration (strategy.run + reductions). Losses are averaged over the global
batch, so the all-reduced gradients equal those of one big batch.
"""
from __future__ import annotations

import dataclasses
import json

from chorus.data import tfenv
from chorus.trainer.codec import RollCodec
from chorus.trainer.config import Config
from chorus.trainer.distribute import Distribution
from chorus.trainer.losses import d_wasserstein_loss, g_wasserstein_loss, gradient_penalty
from chorus.trainer.model import build_critic, build_generator, generate_batched, z_shape

tf = tfenv.tensorflow()
keras = tfenv.keras()


def make_optimizer(lr: float, cfg: Config) -> keras.optimizers.Optimizer:
    opt = keras.optimizers.Adam(learning_rate=lr, beta_1=cfg.train.beta1, beta_2=cfg.train.beta2)
    return keras.mixed_precision.LossScaleOptimizer(opt) if cfg.train.mixed_precision else opt


def structure_key(cfg: Config, dist: Distribution) -> str | None:
    """Everything the traced step depends on besides variable values: two runs with the same key can share one
    WGANGP (models, optimizers, traced functions), reset in between. None: never share (mixed precision keeps
    loss-scale state this reset does not cover)."""
    t = cfg.train
    if t.mixed_precision:
        return None
    return json.dumps({"model": dataclasses.asdict(cfg.model), "shape": [cfg.data.steps, cfg.data.pitches,
                       cfg.data.tracks], "train": [t.batch_size, t.n_critic, t.gp_weight, t.beta1, t.beta2,
                       t.jit_compile, t.ema_decay], "strategy": id(dist.strategy)}, sort_keys=True)


def set_precision_policy(cfg: Config) -> None:
    """Always set, never only switched on: a process that trains again must not inherit float16 layers."""
    keras.mixed_precision.set_global_policy("mixed_float16" if cfg.train.mixed_precision else "float32")


class WGANGP:
    """Models, optimizers, RNG and counters of one run, all created inside strategy.scope()."""

    def __init__(self, cfg: Config, dist: Distribution):
        self.cfg, self.dist = cfg, dist
        self.key = structure_key(cfg, dist)
        self.global_batch = cfg.train.batch_size
        self.z_shape = z_shape(cfg)
        set_precision_policy(cfg)
        with dist.strategy.scope():
            keras.utils.set_random_seed(cfg.train.seed)  # weight initialisers are seeded
            self.generator = build_generator(cfg)
            self.critic = build_critic(cfg)
            self.g_opt = make_optimizer(cfg.train.g_lr, cfg)
            self.d_opt = make_optimizer(cfg.train.d_lr, cfg)
            # Build optimizer slots now so that a restore fills them instead of deferring.
            self.g_opt.build(self.generator.trainable_variables)
            self.d_opt.build(self.critic.trainable_variables)
            # Built after the others so that their initial weights do not depend on whether EMA is on.
            self.ema_generator = build_generator(cfg) if cfg.train.ema_decay else None
            if self.ema_generator is not None:
                self.ema_generator.set_weights(self.generator.get_weights())
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

    def reset(self, cfg: Config) -> None:
        """Become what WGANGP(cfg, dist) would build, keeping the traced step: cfg must have this one's key.

        Fresh models built from the same seed give the initial weights (the same initialiser calls in the same
        order), optimizer slots and counters go to zero, the learning rates and the RNG follow cfg.
        """
        if structure_key(cfg, self.dist) != self.key or self.key is None:
            raise ValueError("WGANGP.reset: the config changes the model's structure; build a new WGANGP")
        self.cfg = cfg
        set_precision_policy(cfg)
        keras.utils.set_random_seed(cfg.train.seed)
        self.generator.set_weights(build_generator(cfg).get_weights())
        self.critic.set_weights(build_critic(cfg).get_weights())
        if self.ema_generator is not None:
            self.ema_generator.set_weights(self.generator.get_weights())
        for opt, lr in ((self.g_opt, cfg.train.g_lr), (self.d_opt, cfg.train.d_lr)):
            for v in opt.variables:
                v.assign(tf.zeros_like(v))
            opt.learning_rate.assign(lr)
        self.rng.reset_from_seed(cfg.train.seed)
        self.step.assign(0)
        self.data_position.assign(0)

    # ------------------------------------------------------------------------------ per-replica steps

    def _average(self, per_example: tf.Tensor) -> tf.Tensor:
        return tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch)

    def _d_grads_eager(self, real, z, eps):
        melody = RollCodec.melody(real)  # (batch, steps, pitches, 1): the soprano conditions both G and D
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
        melody = RollCodec.melody(real)
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
        if self.ema_generator is not None:
            self._update_ema()
        self.step.assign_add(1)
        self.data_position.assign_add(self.cfg.train.n_critic + 1)
        n = float(self.cfg.train.n_critic)
        return {"d_loss": d_loss / n, "wasserstein": -d_wd / n, "gradient_penalty": d_gp / n, "g_loss": g_loss}

    def _update_ema(self):
        """ema <- d * ema + (1 - d) * weights, BatchNorm statistics included, with d = min(ema_decay, (1 + t) /
        (10 + t)) after t updates: early on the average follows the weights closely instead of holding on to the
        random initialisation for ~1 / (1 - ema_decay) steps. Cross-replica context: every replica holds the same
        weights after the all-reduced update, so one assignment serves all."""
        t = tf.cast(self.step, tf.float32)  # updates before this one
        decay = tf.minimum(self.cfg.train.ema_decay, (1.0 + t) / (10.0 + t))
        for avg, w in zip(self.ema_generator.weights, self.generator.weights, strict=True):
            avg.assign(decay * avg + (1.0 - decay) * tf.cast(w, avg.dtype))

    # ------------------------------------------------------------------------------ inference

    @property
    def sampler(self):
        """The generator that samples, evaluation and `chorus generate` use: the moving average when it is on."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def generate(self, melody, z):
        return generate_batched(self.sampler, melody, z)
