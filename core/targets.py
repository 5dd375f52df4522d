"""Registries name an implementation by "module:attribute" instead of importing it, so that
listing them (the command line's flags, `harness.py list`) imports nothing heavy."""

import importlib


def load(target: str):
    """The attribute a "module:attribute" target names, imported on first use."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
