"""Every package a registered method imports has its license stated (methods/licenses.py)."""

from methods import REGISTERED
from methods.licenses import PACKAGE_LICENSES, method_licenses


def test_every_method_package_has_a_license():
    missing = sorted({p for registered in REGISTERED.values() for p in registered.packages} - set(PACKAGE_LICENSES))
    assert not missing, f"methods/licenses.py lacks {missing}"


def test_a_non_commercial_license_says_so():
    assert method_licenses(REGISTERED["apollo"].packages) == "apollo-torch: CC-BY-NC-4.0 (non-commercial)"
    assert method_licenses(REGISTERED["full"].packages) == "torch: BSD-3-Clause"
