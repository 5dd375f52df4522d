"""Micro-benchmarks of our own parts against their references (make bench-optim)."""
