"""make gpu-check: ../shared/GPU-CHECKS.md as one time-boxed command (plan.py: the parts;
__main__.py: running them; summary.py: what they measured, as summary.md)."""
