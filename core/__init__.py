"""The contracts every other package imports, importing nothing of ours: the run spec (which
validates itself), typed option parsing, the plan of a suite's runs, statuses and units."""
