"""Training: GPTFace pre-training (`trainer`), the VQ tokenizer (`vq_train`), the shared step loop,
ITM negatives mined in the step, and pre-tokenizing a dataset. Imports every room below it
(`evals` for the evaluators a run calls)."""
