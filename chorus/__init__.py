"""chorus: containerized, distributed training of a melody-conditioned piano-roll GAN."""
