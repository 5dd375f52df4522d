"""Which runs: suite files (TOML grids), model configs, and the code that reads them."""
