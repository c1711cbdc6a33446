"""Measuring a model: the in-training evaluators, held-out ITM and retrieval, linear probes and
fine-tuning, text-to-face, edits and captions judged by the attribute classifier. Imports
`serving`, `generate`, `models` and `runtime`; never the trainers."""
