"""The GaLore paper's published figures that estimates are compared with, in one place
(../shared/REFERENCE.md cites the tables)."""

# REFERENCE.md, Table 6 (weights, states) and Table 2 (total), in G.
PAPER_WEIGHTS_STATES_G = {
    "full": ((0.12, 0.23), (0.25, 0.51), (0.68, 1.37), (2.60, 5.20)),
    "galore": ((0.12, 0.13), (0.25, 0.28), (0.68, 0.54), (2.60, 1.78)),
    "low_rank": ((0.08, 0.17), (0.18, 0.37), (0.36, 0.72), (1.19, 2.38)),
    "lora": ((0.20, 0.17), (0.44, 0.37), (1.04, 0.72), (3.79, 2.38)),
    "relora": ((0.20, 0.17), (0.44, 0.37), (1.04, 0.72), (3.79, 2.38)),
}
PAPER_TOTAL_G = {
    "full": (0.36, 0.76, 2.06, 7.80),
    "galore": (0.24, 0.52, 1.22, 4.38),
    "low_rank": (0.26, 0.54, 1.08, 3.57),
    "lora": (0.36, 0.80, 1.76, 6.17),
    "relora": (0.36, 0.80, 1.76, 6.17),
}

# The 7B figures of the introduction and section 5, as the paper states them.
PAPER_7B_LINES = (
    "paper, BF16 AdamW, batch 1, seq 2048: at least 58 GB = 14 weights + 42 Adam states and gradients + 2 activations",
    "paper, 8-bit GaLore layer-wise r=1024: 22.0 GB (token batch up to 500); saves 37.92 GB (63.3%) vs BF16 "
    "AdamW and 24.5 GB (52.3%) vs 8-bit Adam; the projection saves 9.6 GB (65.5%) of optimizer state; "
    "layer-wise updates save 13.5 GB of gradients",
)

# REFERENCE.md, Table 2: validation perplexity on C4 at 60M, 130M, 350M, 1B (same order as above).
PAPER_SIZES = ("60m", "130m", "350m", "1b")
PAPER_RANKS = (128, 256, 256, 512)
"""Table 2's r row: the rank of GaLore, LoRA, ReLoRA and Low-Rank at each size."""
PAPER_PERPLEXITY = {
    "full": (34.06, 25.08, 18.80, 15.56),
    "galore": (34.88, 25.36, 18.95, 15.64),
    "low_rank": (78.18, 45.51, 37.41, 142.53),
    "lora": (34.99, 33.92, 25.58, 19.21),
    "relora": (37.04, 29.37, 29.08, 18.33),
}

# 7B training peaks, BF16, batch 1, in 10^9 bytes, by (method, sequence length, rank or None).
# full: "at least 58 GB"; galore8bit_layerwise r=1024: 22.0 GB at a token batch up to 500;
# adam8bit is derived: 22.0 GB + the 24.5 GB the paper says GaLore saves against it.
PAPER_7B_PEAK_GB = {
    ("full", 2048, None): 58.0,
    ("adam8bit", 2048, None): 46.5,
    ("galore8bit_layerwise", 512, 1024): 22.0,
}

# REFERENCE.md, "Table 11": LLaMA 1B, a 256-token batch, BF16, one GPU: (memory GB, tokens/s)
# by method, not layer-wise but for galore8bit_layerwise. The paper: 8-bit GaLore's throughput
# is 17% below 8-bit Adam's.
PAPER_TABLE_11 = {
    "full": (13.60, 1256.98),
    "adam8bit": (9.54, 1569.89),
    "galore8bit": (7.95, 1109.38),
    "galore8bit_layerwise": (5.63, 1019.63),
}

# REFERENCE.md, "Successors": each paper's own 7B claim, in its own setting (batch, sequence,
# quantized weights, GPU), so ours is compared as a ratio, never as a match. Per method:
# (the claim as stated, what its figure measures, the figure). What it measures:
#   peak_gb          training memory in GB (10^9 bytes): ours is our traced peak
#   peak_vs_adamw    training memory as a fraction of AdamW's: ours is our peak / full's
#   state_vs_adamw   optimizer state as a fraction of AdamW's: ours is our state / full's
#   state_vs_galore  optimizer state as a fraction of GaLore's: ours is our state / galore's
#   weights_grads_state_gb  weights, gradients and optimizer state in GB: ours is theirs at our peak
SUCCESSOR_CLAIMS = {
    "apollo": ("SGD-like optimizer memory (APOLLO, MLSys 2025)", "state_vs_adamw", None),
    "apollo_mini": ("7B under 12 GB with quantized weights (APOLLO README, Q-APOLLO-Mini)", "peak_gb", 12.0),
    "apollo_layerwise": ("about 11 GB layer-wise (APOLLO README)", "peak_gb", 11.0),
    "adam_mini": ("45-50% less optimizer memory than AdamW (Adam-mini authors)", "state_vs_adamw", 0.55),
    "fira": ("optimizer state 8x smaller than GaLore's (Fira abstract)", "state_vs_galore", 1 / 8),
    "torchao_adamw8bit": ("Llama2-7B, A100: ao 8-bit 39.1 GB vs fused AdamW 51.6 GB (torchao README)",
                          "peak_vs_adamw", 39.1 / 51.6),
    "torchao_adamw4bit": ("Llama2-7B, A100: ao 4-bit 33.2 GB vs fused AdamW 51.6 GB (torchao README)",
                          "peak_vs_adamw", 33.2 / 51.6),
    # BAdam's 2M + 16M/D bytes with M = 6.74e9 (LLaMA-7B's parameters) and D = 32 blocks, one per layer.
    "badam": ("Llama 2-7B in 2M + 16M/D bytes, D = 32 layer blocks (BAdam paper)", "weights_grads_state_gb",
              (2 * 6.74e9 + 16 * 6.74e9 / 32) / 1e9),
    "q_galore": ("LLaMA-7B pre-training in 15.26 GB, batch 16, activation checkpointing, per-layer updates "
                 "(Q-GaLore README)", "peak_gb", 15.26),
    "cpu_offload_adamw": ("ViT-giant: 9.82 GB to 5.24 GB with the optimizer on the host (torchao README)",
                          "peak_vs_adamw", 5.24 / 9.82),
}
