"""Byte units, defined once. Records hold bytes; whoever displays a figure divides by one of
these and says which (GiB and MiB are binary, GB and MB decimal)."""

KIB = 2**10
MIB = 2**20
GIB = 2**30
MB = 10**6
GB = 10**9

BYTE_UNITS = {"GB": GB, "GiB": GIB, "MB": MB, "MiB": MIB}
"""The units a memory budget may be written in, by their spelling."""
