"""The README and the CLI docs stay true: every failure reason is explained, every link resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from retrainer_contract import champion
from retrainer_operator import conditions, upkeep

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", REPO / "docs" / "cli.md", REPO / "docs" / "troubleshooting.md"]


def _reasons() -> list[str]:
    """The RetrainJob's reasons, the ModelLine upkeep's and the champion's."""
    return sorted(
        {
            v
            for reasons in (conditions.Reason, upkeep.Reason)
            for k, v in vars(reasons).items()
            if not k.startswith("_") and isinstance(v, str)
        }
        | set(champion.REASONS)
    )


@pytest.mark.parametrize("reason", _reasons())
def test_every_condition_reason_is_explained_in_troubleshooting(reason: str) -> None:
    assert f"`{reason}`" in (REPO / "docs" / "troubleshooting.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_relative_links_point_at_files_that_exist(doc: Path) -> None:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8"))
    local = [link for link in links if "://" not in link]
    assert local, f"{doc.name} links nothing"
    missing = [link for link in local if not (doc.parent / link).exists()]
    assert not missing, f"{doc.name} links missing files: {missing}"
