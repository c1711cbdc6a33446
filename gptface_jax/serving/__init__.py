"""Using a trained model: loading workdirs (`inference`), the VQ image tokenizer's inference API,
feature extraction, the jitted scorers, and export with its standalone reader (`exported.py`,
which imports only jax, numpy and safetensors). Imports `models`, `runtime` and `generate`."""
