"""Registry of training methods: name -> Method. Adding a method is one file plus one line."""

from methods import adam8bit, full, lora, low_rank, relora

METHODS = {
    "full": full.METHOD,
    "adam8bit": adam8bit.METHOD,
    "lora": lora.METHOD,
    "relora": relora.METHOD,
    "low_rank": low_rank.METHOD,
}
