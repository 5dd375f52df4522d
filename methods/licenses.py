"""The license of each package a method imports (its SPDX id, from the project's LICENSE file;
package metadata is too uneven to read it from), so that `harness.py list` and the README can
say what a user may do with each method. A method with no package runs on torch's own code."""

TORCH_LICENSE = "BSD-3-Clause"
"""torch's own optimizers and autograd (its LICENSE file: BSD-style, three clauses)."""

PACKAGE_LICENSES = {
    "bitsandbytes": "MIT",
    "peft": "Apache-2.0",
    "galore-torch": "Apache-2.0",
    "apollo-torch": "CC-BY-NC-4.0 (non-commercial)",
    "adam-mini": "MIT",
    "torchao": "BSD-3-Clause",
    "fira": "Apache-2.0 (its package metadata; no license file shipped)",
    "badam": "Apache-2.0 (its LICENSE.txt; its PyPI classifier says MIT)",
    "lomo-optim": "MIT",
}
"""pip name -> license; tests/methods/test_licenses.py fails on a method package missing here."""


def method_licenses(packages: tuple[str, ...]) -> str:
    """"package: license" of each package a method imports; torch's where it imports none."""
    if not packages:
        return f"torch: {TORCH_LICENSE}"
    return ", ".join(f"{package}: {PACKAGE_LICENSES[package]}" for package in packages)
