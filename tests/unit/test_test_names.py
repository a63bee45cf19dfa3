"""`make test` collects every tier in one pytest run, where test modules are imported by their
basename (no packages): two modules of one name make the whole run a collection error."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_modules_share_a_basename() -> None:
    names = Counter(p.name for p in TESTS.rglob("*.py") if p.name != "__init__.py")
    names.pop("conftest.py", None)
    assert [name for name, count in names.items() if count > 1] == []
