"""Memory without running: traced training steps on fake tensors, the paper's analytic table and 7B figures."""
