"""The layout holds: one contract that imports no program, three programs that share only it.

Two rules from docs/architecture.md, checked on the source (every import, also the lazy ones
inside functions):

- the trainer and the CLI never import the operator, and the contract imports none of the
  programs nor the test world;
- a contract literal (an environment variable name, an MLflow tag key, a label, annotation or
  finalizer key, a metric key, an exit code) is written only in the contract: the programs
  refer to the contract's constant, so the writer and the reader cannot drift apart;
- the CLI reads status in the contract's words: a condition type, condition status, phase or
  reason (`retrainer_contract.status`, the champion's reasons) is never spelled in its code.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from retrainer_contract import api, champion, documents, exits, metrics, tracking
from retrainer_contract import env as trainer_env
from retrainer_contract import status as vocabulary

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "retrainer_contract": ROOT / "contract" / "retrainer_contract",
    "retrainer_operator": ROOT / "operator" / "retrainer_operator",
    "retrainer_trainer": ROOT / "trainer" / "retrainer_trainer",
    "retrainer_cli": ROOT / "cli" / "retrainer_cli",
}
PROGRAMS = ("retrainer_operator", "retrainer_trainer", "retrainer_cli")
WORLD = ("retrainer_world", "retrainer_demo", "retrainer_docgen")


def sources(package: str) -> list[Path]:
    return sorted(PACKAGES[package].rglob("*.py"))


def imported(tree: ast.AST) -> Iterator[str]:
    """Every module an AST imports (absolute imports; the packages use no relative ones)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def top_packages(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported(ast.parse(path.read_text()))}


# ---- imports --------------------------------------------------------------------------------


@pytest.mark.parametrize("package", ["retrainer_trainer", "retrainer_cli"])
def test_the_trainer_and_the_cli_never_import_the_operator(package: str) -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in sources(package)
        if "retrainer_operator" in top_packages(p)
    ]
    assert offenders == [], f"{package} imports retrainer_operator in {offenders}"


def test_the_contract_imports_no_program_and_no_test_world() -> None:
    forbidden = set(PROGRAMS) | set(WORLD)
    offenders = {
        str(p.relative_to(ROOT)): sorted(top_packages(p) & forbidden)
        for p in sources("retrainer_contract")
        if top_packages(p) & forbidden
    }
    assert offenders == {}


def test_the_contract_needs_only_the_standard_library_and_minio() -> None:
    import sys

    # minio is imported lazily by objectstore.minio_client, with urllib3, which minio brings.
    allowed = set(sys.stdlib_module_names) | {"retrainer_contract", "minio", "urllib3"}
    extra = {
        str(p.relative_to(ROOT)): sorted(top_packages(p) - allowed)
        for p in sources("retrainer_contract")
        if top_packages(p) - allowed
    }
    assert extra == {}


@pytest.mark.parametrize("package", PROGRAMS)
def test_every_program_imports_the_contract(package: str) -> None:
    users = [p for p in sources(package) if "retrainer_contract" in top_packages(p)]
    assert users, f"{package} does not use the contract at all"


# ---- contract literals ----------------------------------------------------------------------


def contract_literals() -> dict[str, str]:
    """literal -> the contract constant that owns it."""
    owned: dict[str, str] = {}
    owned.update({value: "env.NAMES" for value in trainer_env.NAMES})
    names = [(trainer_env, n) for n in ("SECRET_ACCESS_KEY_FIELD", "SECRET_SECRET_KEY_FIELD")]
    names += [(tracking, n) for n in dir(tracking) if n.startswith("TAG_")]
    names += [(api, n) for n in dir(api) if n.startswith(("LABEL_", "QUEUE_", "GPU_"))]
    names += [(api, n) for n in ("UID_ANNOTATION", "ATTEMPTS_ANNOTATION", "FINALIZER")]
    names += [(metrics, n) for n in ("PRECISION", "RECALL", "MAP50", "MAP50_95")]
    names += [(documents, n) for n in ("VERSION_CONFLICT", "CORRUPTED_WEIGHTS", "STORAGE_FULL")]
    for module, name in names:
        value = getattr(module, name)
        assert isinstance(value, str) and value, f"{module.__name__}.{name}"
        owned[value] = f"{module.__name__.rsplit('.', 1)[-1]}.{name}"
    return owned


LITERALS = contract_literals()
# Whole-token matches only: RETRAINER_NAME must not match inside RETRAINER_NAMESPACES.
TOKEN = re.compile(
    "|".join(
        rf"(?<![A-Za-z0-9_]){re.escape(lit)}(?![A-Za-z0-9_])"
        for lit in sorted(LITERALS, key=len, reverse=True)
    )
)
EXIT_CODES = {exits.BAD_INPUT, exits.PREEMPTED}
EXIT_WORDS = re.compile(r"exit|code", re.IGNORECASE)


def _exports(tree: ast.AST) -> set[int]:
    """ids of the names listed in `__all__` (Python names, which may spell like a reason)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            found.update(id(c) for c in ast.walk(node.value) if isinstance(c, ast.Constant))
    return found


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes (prose may name a literal; code may not)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _named_for_exit(node: ast.AST | None) -> bool:
    """True when `node` names an exit code (a variable, attribute or key called so)."""
    if isinstance(node, ast.Name):
        return bool(EXIT_WORDS.search(node.id))
    if isinstance(node, ast.Attribute):
        return bool(EXIT_WORDS.search(node.attr))
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(EXIT_WORDS.search(node.value))
    return False


def _exit_code_use(node: ast.Constant, parents: dict[int, ast.AST]) -> bool:
    """True when the int constant `node` is used as an exit code."""
    parent = parents.get(id(node))
    if isinstance(parent, ast.Return):
        return True
    if isinstance(parent, ast.Call):
        func = parent.func
        return isinstance(func, ast.Attribute) and func.attr in ("exit", "_exit")
    if isinstance(parent, ast.keyword):
        return bool(parent.arg and EXIT_WORDS.search(parent.arg))
    if isinstance(parent, ast.Compare):
        return any(_named_for_exit(n) for n in [parent.left, *parent.comparators])
    if isinstance(parent, ast.Assign | ast.AnnAssign):
        targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
        return any(_named_for_exit(t) for t in targets)
    if isinstance(parent, ast.Dict):
        index = next((i for i, v in enumerate(parent.values) if v is node), None)
        return index is not None and _named_for_exit(parent.keys[index])
    if isinstance(parent, ast.List | ast.Tuple | ast.Set):
        holder = parents.get(id(parent))
        if isinstance(holder, ast.Dict):
            index = next(i for i, v in enumerate(holder.values) if v is parent)
            key = holder.keys[index]
            return isinstance(key, ast.Constant) and key.value == "values"
    return False


def literal_offences(source: str, where: str) -> list[str]:
    """Each place in `source` that writes a contract literal instead of naming the constant."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree) | _exports(tree)
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or id(node) in docstrings:
            continue
        if isinstance(node.value, str):
            for match in TOKEN.finditer(node.value):
                owner = LITERALS[match.group(0)]
                found.append(f"{where}:{node.lineno}: {match.group(0)!r} (use {owner})")
        elif type(node.value) is int and node.value in EXIT_CODES and _exit_code_use(node, parents):
            found.append(f"{where}:{node.lineno}: exit code {node.value} (use exits.*)")
    return found


@pytest.mark.parametrize("package", PROGRAMS)
def test_contract_literals_appear_only_in_the_contract(package: str) -> None:
    offences = [
        offence
        for path in sources(package)
        for offence in literal_offences(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert offences == [], "\n".join(offences)


@pytest.mark.parametrize(
    "snippet",
    [
        'os.environ.get("RETRAINER_SPEC")',
        'query = f"tags.`retrainer.uid` = {uid}"',
        'labels = {"retrainer.dev/model": model}',
        'row = metrics.get("mAP50_95")',
        "def main() -> int:\n    return 3",
        "if exit_code == 143:\n    pass",
        'rule = {"operator": "In", "values": [3]}',
        "error = {'exitCode': 3}",
        "sys.exit(143)",
    ],
)
def test_the_literal_check_catches_each_kind_of_literal(snippet: str) -> None:
    assert literal_offences(snippet, "snippet"), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        'os.environ.get("RETRAINER_NAMESPACES")',  # an operator setting, not the trainer's NAME
        'def f() -> None:\n    """Reads RETRAINER_SPEC."""',
        "digest = sha[:3]",
        "rounded = round(value, 3)",
        'logger = logging.getLogger("retrainer.operator")',
        '__all__ = ["VersionConflict"]',  # a class named like the reason it reports
    ],
)
def test_the_literal_check_leaves_prose_and_other_numbers_alone(snippet: str) -> None:
    assert literal_offences(snippet, "snippet") == []


# ---- status words ---------------------------------------------------------------------------


def status_words() -> dict[str, str]:
    """status word -> the contract constant that owns it (the first owner of a shared word).

    The ledger's version states (`verified`, `allocated`) are left out: as plain English they
    are also keys of documents (`verification.verified`), which a check cannot tell apart.
    """
    owned: dict[str, str] = {}
    for name in vocabulary.__all__:
        value = getattr(vocabulary, name)
        if isinstance(value, str) and value not in vocabulary.VERSION_STATES:
            owned.setdefault(value, f"status.{name}")
    for name, value in sorted(vars(vocabulary.Reason).items()):
        if name.isupper():
            owned.setdefault(value, f"status.Reason.{name}")
    for value in champion.REASONS:
        owned.setdefault(value, "champion.REASONS")
    every = {
        *vocabulary.CONDITION_TYPES,
        *vocabulary.LINE_CONDITION_TYPES,
        *vocabulary.PHASES,
        *vocabulary.REASONS,
    }
    assert every <= set(owned), sorted(every - set(owned))
    return owned


WORDS = status_words()
# A compound word (AllLocationsVerified) is no English: found anywhere in a string. A single
# word (Verified, Pending, True) is, so only a string that is exactly the word is one: prose
# such as "Failed to read" stays free.
COMPOUND = re.compile(
    "|".join(
        rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])"
        for word in sorted(WORDS, key=len, reverse=True)
        if sum(ch.isupper() for ch in word) > 1
    )
)


def status_offences(source: str, where: str) -> list[str]:
    """Each place in `source` that spells a status word instead of naming the constant."""
    tree = ast.parse(source)
    prose = _docstrings(tree) | _exports(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
            continue
        if id(node) in prose:
            continue
        words = [node.value] if node.value in WORDS else COMPOUND.findall(node.value)
        found += [f"{where}:{node.lineno}: {w!r} (use {WORDS[w]})" for w in words]
    return found


def test_the_cli_spells_no_status_word() -> None:
    offences = [
        offence
        for path in sources("retrainer_cli")
        for offence in status_offences(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert offences == [], "\n".join(offences)


@pytest.mark.parametrize(
    "snippet",
    [
        'ok = cond.get("type") == "Verified"',
        'done = phase in ("Succeeded", "Failed")',
        'phase = status.get("phase") or "Pending"',
        'ok = cond.get("status") == "True"',
        'row = {"type": "Verified", "status": "Unknown"}',
        'stuck = cond.get("reason") == "ManifestUnavailable"',
        'text = f"{name}: AllLocationsVerified"',
        'synced = get(line, "ChampionInSync")',
        'by_hand = record.get("reason") == "PromotedByUser"',
    ],
)
def test_the_status_check_catches_each_kind_of_status_word(snippet: str) -> None:
    assert status_offences(snippet, "snippet"), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        'print("Failed to read the ModelLine")',
        'parser.add_argument("--all", help="every Verified version")',
        'def f() -> None:\n    """Waits until the Verified condition is True."""',
        '__all__ = ["Running"]',
        'label = "Deleted"',
        'flag = "true"',
    ],
)
def test_the_status_check_leaves_prose_alone(snippet: str) -> None:
    assert status_offences(snippet, "snippet") == []
