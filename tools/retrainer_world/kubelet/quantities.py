"""Kubernetes resource quantities as the runtime wants them ("3Gi" -> bytes, "500m" -> 0.5).

Container limits and emptyDir sizeLimits are quantities in the pod spec; podman and the
eviction check want numbers. Only the forms pod specs use are parsed (no exponents).
"""

from __future__ import annotations

import re

__all__ = ["cpus", "memory_bytes"]

_QUANTITY = re.compile(r"^([0-9.]+)([A-Za-z]*)$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity ("3Gi", "512M", "1e9" aside) in bytes."""
    match = _QUANTITY.match(str(quantity).strip())
    if not match:
        raise ValueError(f"memory quantity {quantity!r} is not supported")
    number, suffix = float(match.group(1)), match.group(2)
    if suffix in _BINARY:
        return int(number * _BINARY[suffix])
    if suffix == "m":
        return int(number / 1000)
    if suffix in _DECIMAL:
        return int(number * _DECIMAL[suffix])
    raise ValueError(f"memory quantity {quantity!r} has an unknown suffix")


def cpus(quantity: str) -> str:
    """A CPU quantity ("500m", "2") as podman's --cpus value."""
    text = str(quantity).strip()
    value = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    return f"{value:g}"
