"""GPTFace-JAX: the generative pre-trained facial-linguistic transformer in JAX/Flax."""

__version__ = "0.1.0"
