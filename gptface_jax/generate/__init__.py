"""Generation: MaskGIT decoding with ITM/ITC and classifier-free guidance, its per-task defaults,
face editing, captioning and the named face regions. Imports `models` and `runtime`."""
