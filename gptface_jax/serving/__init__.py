"""Using a trained model: loading workdirs (`inference`), the VQ image tokenizer's inference API,
feature extraction, the jitted scorers, and export with its standalone readers, which travel
into the export directory: `exported.py` (jax, numpy, safetensors), `torch_model.py` (a PyTorch
reference: torch, numpy, safetensors) and `export_format.py` (numpy); `torch_check` compares the
PyTorch reference with JAX; `web` is `gptface serve`, the local editing page. Imports `models`,
`runtime` and `generate`."""
