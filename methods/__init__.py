"""Registry of training methods: name -> Method. Adding a method is one file plus one line."""

from methods import adam8bit, full, galore, layerwise, lora, low_rank, relora

METHODS = {
    "full": full.METHOD,
    "adam8bit": adam8bit.METHOD,
    "lora": lora.METHOD,
    "relora": relora.METHOD,
    "low_rank": low_rank.METHOD,
    "galore": galore.GALORE,
    "galore8bit": galore.GALORE_8BIT,
    "galore_layerwise": galore.GALORE_LAYERWISE,
    "galore8bit_layerwise": galore.GALORE_8BIT_LAYERWISE,
    "galore_ref": galore.GALORE_REFERENCE,
    "full_layerwise": layerwise.FULL_METHOD,
    "adam8bit_layerwise": layerwise.ADAM8BIT_METHOD,
}
