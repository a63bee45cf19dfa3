"""The README's commands work as written: every ```sh block right after a
`<!-- test: run -->` comment is run with bash in the repository root, with the world's
environment (KUBECONFIG, kubectl/helm on PATH). `make demo` is not marked: test_demo.py runs it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from retrainer_world.world import World

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
MARKER = "<!-- test: run -->"
_BLOCK = re.compile(re.escape(MARKER) + r"\s*\n```sh\n(.*?)\n```", re.DOTALL)


def marked_blocks(text: str) -> list[str]:
    """The shell blocks marked for testing, in README order."""
    return [m.group(1) for m in _BLOCK.finditer(text)]


BLOCKS = marked_blocks(README.read_text(encoding="utf-8"))


def test_readme_starts_with_the_two_set_up_commands_and_marks_blocks_for_testing() -> None:
    text = README.read_text(encoding="utf-8")
    first_block = text[text.index("```sh") : text.index("```", text.index("```sh") + 5)]
    assert "make demo" in first_block and "make test" in first_block
    # Every marker must be followed by a sh block, or a command would silently go untested.
    assert text.count(MARKER) == len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=[b.splitlines()[0] for b in BLOCKS])
def test_marked_readme_commands_run_as_written(world: World, block: str) -> None:
    env = {**os.environ, **world.env()}
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"README block failed:\n{block}\n---\n{proc.stdout}{proc.stderr}"
