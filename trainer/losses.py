"""WGAN-GP losses, per example. Callers average them over the GLOBAL batch (tf.nn.compute_average_loss),
so that summing the replicas' gradients gives the gradient of the global mean."""
from __future__ import annotations

from chorus.data import tfenv

tf = tfenv.tensorflow()



def d_wasserstein_loss(real_score: tf.Tensor, fake_score: tf.Tensor) -> tf.Tensor:
    """Critic: D(G(z|c)|c) - D(x|c), per example (batch,)."""
    return tf.reshape(fake_score - real_score, [-1])


def g_wasserstein_loss(fake_score: tf.Tensor) -> tf.Tensor:
    """Generator: -D(G(z|c)|c), per example (batch,)."""
    return -tf.reshape(fake_score, [-1])


def gradient_penalty(critic, real: tf.Tensor, fake: tf.Tensor, melody: tf.Tensor, eps: tf.Tensor) -> tf.Tensor:
    """(||grad_xhat D(xhat|c)||_2 - 1)^2 per example, xhat = eps*x + (1-eps)*G(z|c), eps ~ U(0,1) per example.

    The norm runs over all non-batch axes (steps, pitches, tracks), with 1e-8 inside the square root so the
    gradient of the norm stays finite where the critic's gradient vanishes.
    """
    xhat = eps * real + (1.0 - eps) * fake  # (batch, steps, pitches, tracks)
    with tf.GradientTape() as gp_tape:
        gp_tape.watch(xhat)
        score = critic([xhat, melody], training=True)
    grads = tf.cast(gp_tape.gradient(score, xhat), tf.float32)
    norm = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=tf.range(1, tf.rank(grads))) + 1e-8)
    return tf.square(norm - 1.0)
