"""Typed options: a frozen dataclass per method and per workload, parsed from plain dicts.

Suite files, --set and --option give options as TOML values; each field's annotation says
what it accepts (int, float, bool, str, a tuple of strings, or any of these or None). A
wrong key or type is refused with a message naming the key and what is accepted, before
any run starts.
"""

import argparse
import math
import types
import typing
from dataclasses import MISSING, fields


class OptionError(ValueError):
    """An option a dataclass does not accept; the message names the key and what is accepted."""


def _accepts(annotation, value) -> bool:
    if annotation is typing.Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(member, value) for member in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is tuple:
        member = typing.get_args(annotation)[0]
        return isinstance(value, (list, tuple)) and all(_accepts(member, item) for item in value)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def describe(annotation) -> str:
    """How a field's type reads in an error line: "an integer or none"."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(member) for member in typing.get_args(annotation))
    if origin is tuple:
        return "a list of strings"
    names = {
        int: "an integer", float: "a number", bool: "a boolean", str: "a string", dict: "a table", type(None): "none"
    }
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def check_value(annotation, key: str, value):
    """An OptionError naming `key` unless `value` fits the annotation."""
    if not _accepts(annotation, value):
        raise OptionError(f"{key} = {value!r} must be {describe(annotation)}")


def option_fields(options_class) -> dict:
    """name -> resolved annotation of each field (string annotations evaluated)."""
    hints = typing.get_type_hints(options_class)
    return {f.name: hints[f.name] for f in fields(options_class)}


def check_values(options_class, values: dict, prefix: str = ""):
    """An OptionError naming the first key of `values` the dataclass has no field for, or
    whose value is of the wrong type (`prefix`, e.g. "data.", leads each key)."""
    accepted = option_fields(options_class)
    for key, value in values.items():
        if key not in accepted:
            raise OptionError(f"{prefix}{key} is not a known option; accepted: {', '.join(accepted) or 'none'}")
        check_value(accepted[key], prefix + key, value)


def parse_options(options_class, values: dict, prefix: str = ""):
    """The options dataclass built from `values`, or an OptionError naming the key that is
    unknown, missing or of the wrong type, or the dataclass's own complaint (its __post_init__;
    `prefix` leads it where it begins with one of the fields' names, as "time_limit_min = 0 ...")."""
    accepted = option_fields(options_class)
    required = [f.name for f in fields(options_class) if f.default is MISSING and f.default_factory is MISSING]
    for name in required:
        if name not in values:
            raise OptionError(f"{prefix}{name} is required: {describe(accepted[name])}")
    check_values(options_class, values, prefix)
    typed = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
    try:
        return options_class(**typed)
    except ValueError as error:
        complaint = str(error)
        raise OptionError(prefix + complaint if complaint.split(" ")[0] in accepted else complaint) from None


def describe_options(options_class) -> str:
    """`name=default` of every field (`name (required)` without one), for `harness.py list`."""
    return ", ".join(
        f"{field.name} (required)" if field.default is MISSING else f"{field.name}={field.default!r}"
        for field in fields(options_class)
    )


def at_least(minimum: int):
    """An argparse type: an integer of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be at least {minimum}")
        return value

    return parse


def number_in(low: float, high: float, high_included: bool = False, low_included: bool = True):
    """An argparse type: a finite number in the range [low, high) (the ends as given), said so
    when refused."""
    shown = f"{'[' if low_included else '('}{low:g}, {'inf' if high == math.inf else f'{high:g}'}" \
            f"{']' if high_included else ')'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; accepted: {shown}") from None
        inside = (low <= value if low_included else low < value) and (value <= high if high_included else value < high)
        if not (math.isfinite(value) and inside):
            raise argparse.ArgumentTypeError(f"{text} is out of range; accepted: {shown}")
        return value

    return parse
