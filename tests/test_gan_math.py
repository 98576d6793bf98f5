"""The WGAN-GP losses and gradient penalty against hand computations (numpy and closed forms), on critics whose
gradients are known exactly: a linear critic D(x) = <w, x> + <u, c> + b (gradient w everywhere) and a quadratic one
D(x) = 1/2 <a, x^2> (gradient a * x, different for every example). Also the critic step as WGANGP runs it
(d_loss = E[D(fake)] - E[D(real)] + lambda * GP, the penalty's gradient reaching the critic's weights through the
inner tape), the generator step (g_loss = -E[D(fake)]) and eps ~ U[0, 1) drawn once per example."""
from __future__ import annotations

import types

import numpy as np
import pytest

from chorus.data import tfenv
from chorus.trainer.gan import WGANGP
from chorus.trainer.losses import d_wasserstein_loss, g_wasserstein_loss, gradient_penalty

tf = tfenv.tensorflow()

SHAPE = (3, 4, 5, 2)  # (batch, steps, pitches, tracks): small, and every axis a different size
GP_WEIGHT = 10.0


class LinearCritic(tf.Module):
    """D(x | c) = <w, x> + <u, c> + b per example: its gradient in x is w for every x."""

    def __init__(self, w: np.ndarray, u: np.ndarray, b: float = 0.3):
        super().__init__()
        self.w = tf.Variable(w, dtype=tf.float32)
        self.u = tf.Variable(u, dtype=tf.float32)
        self.b = tf.Variable(b, dtype=tf.float32)

    def __call__(self, inputs, training=False):
        x, c = inputs
        return (tf.reduce_sum(self.w * x, axis=[1, 2, 3]) + tf.reduce_sum(self.u * c, axis=[1, 2, 3]) + self.b)[
            :, None]  # (batch, 1), like the Keras critic


class QuadraticCritic:
    """D(x | c) = 1/2 <a, x^2> per example: its gradient in x is a * x."""

    def __init__(self, a: np.ndarray):
        self.a = tf.constant(a, dtype=tf.float32)

    def __call__(self, inputs, training=False):
        return 0.5 * tf.reduce_sum(self.a * tf.square(inputs[0]), axis=[1, 2, 3])[:, None]


def _np_penalty(grads: np.ndarray) -> np.ndarray:
    """(||g||_2 - 1)^2 per example, the norm over every non-batch axis, 1e-8 inside the square root."""
    norms = np.sqrt((grads.astype(np.float64) ** 2).reshape(len(grads), -1).sum(axis=1) + 1e-8)
    return (norms - 1.0) ** 2


@pytest.fixture
def rng():
    return np.random.default_rng(19)


def _batch(rng):
    real = rng.choice([-1.0, 1.0], size=SHAPE).astype(np.float32)
    fake = rng.uniform(-1, 1, size=SHAPE).astype(np.float32)
    eps = rng.uniform(0, 1, size=(SHAPE[0], 1, 1, 1)).astype(np.float32)
    return real, fake, eps


def test_penalty_of_a_linear_critic_is_closed_form(rng):
    real, fake, eps = _batch(rng)
    w = rng.normal(size=SHAPE[1:]).astype(np.float32) * 0.2
    critic = LinearCritic(w, rng.normal(size=(*SHAPE[1:3], 1)))
    got = gradient_penalty(critic, tf.constant(real), tf.constant(fake), tf.constant(real[..., :1]),
                           tf.constant(eps)).numpy()
    expected = (np.sqrt((w.astype(np.float64) ** 2).sum() + 1e-8) - 1.0) ** 2  # the same for every example
    assert got.shape == (SHAPE[0],)
    np.testing.assert_allclose(got, np.full(SHAPE[0], expected), rtol=1e-5)
    # A unit-norm gradient costs nothing (up to the 1e-8 inside the root).
    unit = LinearCritic(w / np.linalg.norm(w), np.zeros((*SHAPE[1:3], 1)))
    assert gradient_penalty(unit, tf.constant(real), tf.constant(fake), tf.constant(real[..., :1]),
                            tf.constant(eps)).numpy().max() < 1e-10


def test_penalty_interpolates_per_example_and_norms_over_all_non_batch_axes(rng):
    real, fake, eps = _batch(rng)
    a = rng.uniform(0.05, 0.6, size=SHAPE[1:]).astype(np.float32)
    got = gradient_penalty(QuadraticCritic(a), tf.constant(real), tf.constant(fake), tf.constant(real[..., :1]),
                           tf.constant(eps)).numpy()
    xhat = eps * real + (1.0 - eps) * fake  # eps weighs the REAL roll, one eps per example
    np.testing.assert_allclose(got, _np_penalty(a * xhat), rtol=1e-5)
    # The slips reference.md warns of give other numbers here: eps on the fake side, or a norm over fewer axes.
    swapped = (1.0 - eps) * real + eps * fake
    assert not np.allclose(got, _np_penalty(a * swapped), rtol=1e-3)
    per_track = np.sqrt(((a * xhat) ** 2).sum(axis=(1, 2)) + 1e-8)  # (batch, tracks): norm over fixed axes
    assert not np.allclose(got, ((per_track - 1.0) ** 2).mean(axis=1), rtol=1e-3)


def test_wasserstein_losses_per_example():
    real_score = tf.constant([[1.5], [-0.5], [2.0]])
    fake_score = tf.constant([[0.25], [1.0], [-3.0]])
    np.testing.assert_allclose(d_wasserstein_loss(real_score, fake_score).numpy(), [-1.25, 1.5, -5.0])
    np.testing.assert_allclose(g_wasserstein_loss(fake_score).numpy(), [-0.25, -1.0, 3.0])


def _stand_in(critic, generator, batch: int, n_critic: int = 5):
    """What WGANGP's per-replica step methods read from self, with plain stand-ins for the models."""
    cfg = types.SimpleNamespace(train=types.SimpleNamespace(gp_weight=GP_WEIGHT, mixed_precision=False,
                                                            n_critic=n_critic))
    return types.SimpleNamespace(
        cfg=cfg, critic=critic, generator=generator,
        _average=lambda per_example: tf.nn.compute_average_loss(per_example, global_batch_size=batch))


class ShiftGenerator(tf.Module):
    """G(z | c) = s * z: one weight, so dg_loss/ds is known."""

    def __init__(self, s: float):
        super().__init__()
        self.s = tf.Variable(s, dtype=tf.float32)

    def __call__(self, inputs, training=False):
        return self.s * inputs[1]


def test_critic_step_loss_and_gradient_match_the_hand_computation(rng):
    real, z, eps = _batch(rng)
    w = rng.normal(size=SHAPE[1:]).astype(np.float32) * 0.1
    u = rng.normal(size=(*SHAPE[1:3], 1)).astype(np.float32)
    critic, generator = LinearCritic(w, u), ShiftGenerator(0.7)
    me = _stand_in(critic, generator, SHAPE[0])
    d_loss, d_wd, d_gp, grads = WGANGP._d_grads_eager(me, tf.constant(real), tf.constant(z), tf.constant(eps))

    fake = 0.7 * z
    melody = real[..., :1]

    def score(x):  # (batch,)
        return (w * x).sum(axis=(1, 2, 3)) + (u * melody).sum(axis=(1, 2, 3)) + 0.3

    norm = np.sqrt((w.astype(np.float64) ** 2).sum() + 1e-8)
    wd = score(fake).mean() - score(real).mean()  # E[D(fake)] - E[D(real)]
    gp = (norm - 1.0) ** 2
    np.testing.assert_allclose(d_wd.numpy(), wd, rtol=1e-5)
    np.testing.assert_allclose(d_gp.numpy(), gp, rtol=1e-5)
    np.testing.assert_allclose(d_loss.numpy(), wd + GP_WEIGHT * gp, rtol=1e-5)
    # d/dw: the Wasserstein part plus the penalty's own gradient (second order, through the inner tape).
    by_shape = {g.shape: g.numpy() for g in grads}  # w, u and b have different shapes
    assert len(by_shape) == 3
    expected_w = (fake - real).mean(axis=0) + GP_WEIGHT * 2.0 * (norm - 1.0) * w / norm
    np.testing.assert_allclose(by_shape[SHAPE[1:]], expected_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(by_shape[(*SHAPE[1:3], 1)], 0.0, atol=1e-6)  # melody enters both scores alike
    np.testing.assert_allclose(by_shape[()], 0.0, atol=1e-6)  # so does the bias


def test_generator_step_loss_and_gradient(rng):
    real, z, _ = _batch(rng)
    w = rng.normal(size=SHAPE[1:]).astype(np.float32) * 0.1
    critic, generator = LinearCritic(w, np.ones((*SHAPE[1:3], 1))), ShiftGenerator(0.7)
    me = _stand_in(critic, generator, SHAPE[0])
    g_loss, (g_s,) = WGANGP._g_grads_eager(me, tf.constant(real), tf.constant(z))
    melody = real[..., :1]
    fake_score = (w * 0.7 * z).sum(axis=(1, 2, 3)) + melody.sum(axis=(1, 2, 3)) + 0.3
    np.testing.assert_allclose(g_loss.numpy(), -fake_score.mean(), rtol=1e-5)  # g_loss = -E[D(fake)]
    np.testing.assert_allclose(g_s.numpy(), -(w * z).sum(axis=(1, 2, 3)).mean(), rtol=1e-4)


def test_critic_step_draws_eps_uniform_once_per_example():
    batch = 4096
    seen = {}

    def fake_grads(real, z, eps):
        seen["eps"], seen["z"] = eps.numpy(), z.numpy()
        return 0.0, 0.0, 0.0, []

    me = types.SimpleNamespace(rng=tf.random.Generator.from_seed(3), z_shape=[2, 1, 3], _d_grads=fake_grads,
                               critic=types.SimpleNamespace(trainable_variables=[]),
                               d_opt=types.SimpleNamespace(apply_gradients=lambda pairs: list(pairs)))
    WGANGP.d_step(me, tf.zeros((batch, 2, 3, 1)))
    eps = seen["eps"]
    assert eps.shape == (batch, 1, 1, 1)  # one weight per example, broadcast over steps, pitches and tracks
    assert eps.min() >= 0.0 and eps.max() < 1.0
    # U[0, 1): mean 1/2, variance 1/12; a normal draw (the keras-io slip) has negatives and variance 1.
    assert abs(eps.mean() - 0.5) < 0.02 and abs(eps.var() - 1 / 12) < 0.01
    assert seen["z"].shape == (batch, 2, 1, 3)
