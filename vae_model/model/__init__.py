"""The model: validated settings, the verified data, the seed notebook's networks as
distributions, and the two -ELBO objectives (one per KL estimator)."""
