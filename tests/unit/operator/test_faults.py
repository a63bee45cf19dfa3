"""Fault points kill the operator (or the trainer) exactly where a test names them, and nowhere
otherwise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from retrainer_contract import faults as shared
from retrainer_operator import faults

SCRIPT = "from retrainer_operator import faults; faults.point({!r}); print('passed')"


@pytest.mark.parametrize("name", faults.POINTS + shared.TRAINER_POINTS)
def test_the_named_point_kills_the_process_with_sigkill(name: str) -> None:
    env = {**os.environ, faults.ENV: name}
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(name)], env=env, check=False)
    assert done.returncode == -signal.SIGKILL


def test_any_other_point_or_none_lets_the_process_go_on() -> None:
    env = {**os.environ, faults.ENV: faults.AFTER_JOB_CREATE}
    other = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(faults.AFTER_ALLOCATION)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert other.returncode == 0 and other.stdout.strip() == "passed"
    env.pop(faults.ENV)
    unset = subprocess.run([sys.executable, "-c", SCRIPT.format(faults.AFTER_JOB_CREATE)], env=env)
    assert unset.returncode == 0
