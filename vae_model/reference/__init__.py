"""The true held-out likelihood of a model with a 2-D latent, by quadrature
(:mod:`.quadrature`), over lattice tiles (:mod:`.tiles`); the MLP's decoding is :mod:`.fast`."""

from vae_model.reference.quadrature import reference_nll

__all__ = ["reference_nll"]
