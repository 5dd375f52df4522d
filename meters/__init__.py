"""What is measured: time, memory, and the environment a run happened in."""
