"""Downstream face benchmarks read from the files users download themselves (official layouts)."""
