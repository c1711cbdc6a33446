"""The networks and their objectives: the GPTFace transformer, the VQ image tokenizer and the
pre-training losses. Pure Flax/JAX; imports nothing else from the package."""
