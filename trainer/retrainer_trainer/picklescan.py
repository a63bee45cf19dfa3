"""Which Python globals a PyTorch checkpoint would import and call, read without unpickling it.

A `.pt` file is a zip holding `<archive>/data.pkl`, a pickle. Unpickling imports every global
the pickle names and calls some of them, so a checkpoint from a user (`spec.baseModel.uri`) can
run any code the moment Ultralytics loads it. `scan` walks the pickle's opcodes with
`pickletools.genops` (nothing is imported or called), follows the stack and the memo far enough
to know which global each call or construction uses, and `unsafe` compares that with
`ALLOWED`: the globals found in real Ultralytics detection checkpoints, each with the one way
such a checkpoint uses it. The allowlist is exact (module and name, never a whole module):
`ultralytics.nn.tasks`, for one, also holds functions that load further files.
"""

from __future__ import annotations

import _compat_pickle
import pickletools
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ALLOWED",
    "CALL",
    "CONSTRUCT",
    "REFERENCE",
    "NotACheckpoint",
    "Use",
    "scan",
    "scan_pickle",
    "unsafe",
]

# How a pickle uses a global, from the weakest to the strongest:
REFERENCE = "reference"  # named only (a storage type inside a tensor's persistent id)
CONSTRUCT = "construct"  # cls.__new__(cls) then __setstate__ (NEWOBJ): no __init__ runs
CALL = "call"  # called with arguments from the file (REDUCE, OBJ, INST): the dangerous one
_STRENGTH = {REFERENCE: 0, CONSTRUCT: 1, CALL: 2}

# Layers: the nn.Module classes of Ultralytics' detection models (yolov8n, yolo11n and
# yolo26n built from their yamls, and a yolo11n trained by this trainer), torch's included.
_LAYERS = {
    "torch.nn.modules.activation": ("SiLU",),
    "torch.nn.modules.batchnorm": ("BatchNorm2d",),
    "torch.nn.modules.container": ("ModuleList", "Sequential"),
    "torch.nn.modules.conv": ("Conv2d",),
    "torch.nn.modules.linear": ("Identity",),
    "torch.nn.modules.pooling": ("MaxPool2d",),
    "torch.nn.modules.upsampling": ("Upsample",),
    "ultralytics.nn.modules.block": (
        "Attention", "Bottleneck", "C2PSA", "C2f", "C3k", "C3k2", "DFL", "PSABlock", "SPPF",
    ),
    "ultralytics.nn.modules.conv": ("Concat", "Conv", "DWConv"),
    "ultralytics.nn.modules.head": ("Detect",),
    "ultralytics.nn.tasks": ("DetectionModel",),
}  # fmt: skip
ALLOWED: dict[tuple[str, str], str] = {
    (module, name): CONSTRUCT for module, names in _LAYERS.items() for name in names
}
ALLOWED.update(
    {
        # Every tensor and parameter is rebuilt by these two, from its storage.
        ("torch._utils", "_rebuild_tensor_v2"): CALL,
        ("torch._utils", "_rebuild_parameter"): CALL,
        ("torch", "Size"): CALL,
        ("collections", "OrderedDict"): CALL,
        ("builtins", "set"): CALL,  # nn.Module._non_persistent_buffers_set
        # The training arguments of a checkpoint that can be resumed (a SimpleNamespace).
        ("ultralytics.utils", "IterableSimpleNamespace"): CALL,
        ("torch", "FloatStorage"): REFERENCE,
        ("torch", "HalfStorage"): REFERENCE,
        ("torch", "LongStorage"): REFERENCE,
    }
)

_STRINGS = frozenset(
    {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
     "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}
)  # fmt: skip
_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})


class NotACheckpoint(ValueError):
    """The file is not a PyTorch zip checkpoint, or its pickle cannot be read to the end."""


@dataclass(frozen=True, order=True)
class Use:
    """One global of one pickle in the archive, and the strongest way the pickle uses it."""

    module: str
    name: str
    how: str

    @property
    def qualified(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


class _Computed:
    """A value the pickle builds at load time (a call's result, a list, ...)."""


_COMPUTED = _Computed()


def _normalise(module: str, name: str, protocol: int) -> _Global:
    """The global as `pickle.Unpickler.find_class` resolves it (Python 2 names below protocol 3)."""
    if protocol < 3:
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return _Global(module, name)


def _target(value: object) -> _Global:
    """What a call or construction uses; a computed value there is never a known global."""
    return value if isinstance(value, _Global) else _Global("<computed>", "<computed>")


def _uses(data: bytes) -> Iterator[tuple[_Global, str]]:
    """Every global `data` references, and each call and construction with its global."""
    stack: list[object] = []
    marks: list[int] = []
    memo: dict[int, object] = {}
    protocol = 0
    for opcode, arg, _ in pickletools.genops(data):
        op = opcode.name
        if op == "PROTO":
            protocol = int(arg)  # type: ignore[arg-type]
        elif op == "MARK":
            marks.append(len(stack))
        elif op in _STRINGS:
            stack.append(arg)
        elif op == "GLOBAL":
            module, _, name = str(arg).partition(" ")
            stack.append(_normalise(module, name, protocol))
            yield _target(stack[-1]), REFERENCE
        elif op == "INST":  # protocol 0/1: calls the class with the marked arguments
            module, _, name = str(arg).partition(" ")
            del stack[marks.pop() :]
            yield _normalise(module, name, protocol), CALL
            stack.append(_COMPUTED)
        elif op == "STACK_GLOBAL":
            attr, owner = stack.pop(), stack.pop()
            if not isinstance(owner, str) or not isinstance(attr, str):
                raise NotACheckpoint("STACK_GLOBAL names a global that is not a plain string")
            stack.append(_normalise(owner, attr, protocol))
            yield _target(stack[-1]), REFERENCE
        elif op == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif op in _PUTS:
            memo[int(arg)] = stack[-1]  # type: ignore[arg-type]
        elif op in _GETS:
            stack.append(memo.get(int(arg), _COMPUTED))  # type: ignore[arg-type]
        elif op == "REDUCE":
            stack.pop()
            yield _target(stack.pop()), CALL
            stack.append(_COMPUTED)
        elif op in ("NEWOBJ", "NEWOBJ_EX"):
            del stack[len(stack) - (2 if op == "NEWOBJ_EX" else 1) :]
            yield _target(stack.pop()), CONSTRUCT
            stack.append(_COMPUTED)
        elif op == "OBJ":  # protocol 1: calls the first marked item with the others
            items = stack[marks.pop() :]
            del stack[len(stack) - len(items) :]
            yield _target(items[0] if items else _COMPUTED), CALL
            stack.append(_COMPUTED)
        elif op == "BUILD" and len(stack) > 1 and isinstance(target := stack[-2], _Global):
            # State set on a class itself, not on an instance: setattr on the class, which no
            # real checkpoint does.
            yield _Global("<state set on a global>", f"{target.module}.{target.name}"), CALL
            _generic(opcode, stack, marks)
        elif op in ("EXT1", "EXT2", "EXT4"):  # a global from the copyreg registry: unknowable
            yield _Global("<copyreg extension>", str(arg)), CALL
            stack.append(_COMPUTED)
        else:
            _generic(opcode, stack, marks)


def _generic(opcode: pickletools.OpcodeInfo, stack: list[object], marks: list[int]) -> None:
    """Any other opcode only moves data: pop what it consumes, push placeholders."""
    before = opcode.stack_before
    if pickletools.markobject in before:
        below = before.index(pickletools.markobject)
        del stack[marks.pop() :]
    else:
        below = len(before)
    if below > len(stack):
        raise NotACheckpoint(f"{opcode.name} pops more than the stack holds")
    del stack[len(stack) - below :]
    stack.extend([_COMPUTED] * len(opcode.stack_after))


def _pickle_uses(data: bytes, member: str) -> dict[tuple[str, str], str]:
    strongest: dict[tuple[str, str], str] = {}
    try:
        for found, how in _uses(data):
            key = (found.module, found.name)
            if _STRENGTH[how] >= _STRENGTH[strongest.get(key, REFERENCE)]:
                strongest[key] = how
    except (ValueError, IndexError, KeyError) as error:  # genops: truncated or not a pickle
        raise NotACheckpoint(f"{member}: not a readable pickle ({error})") from error
    return strongest


def scan(path: Path) -> list[Use]:
    """The globals every pickle in the checkpoint at `path` uses, each with its strongest use.

    Raises NotACheckpoint for anything that is not a zip with a readable pickle (a legacy
    non-zip `torch.save` file included: it cannot be scanned, so it is refused). An OSError
    while reading the file is left to the caller: it says nothing about the content.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = [n for n in archive.namelist() if n.endswith(".pkl")]
            if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in members):
                raise NotACheckpoint(f"{path.name}: no data.pkl inside: not a PyTorch checkpoint")
            found: dict[tuple[str, str], str] = {}
            for member in members:
                for key, how in _pickle_uses(archive.read(member), member).items():
                    if _STRENGTH[how] >= _STRENGTH[found.get(key, REFERENCE)]:
                        found[key] = how
    except (zipfile.BadZipFile, EOFError) as error:  # truncated: no central directory, bad CRC
        raise NotACheckpoint(f"{path.name}: not a PyTorch zip checkpoint ({error})") from error
    return sorted(Use(module, name, how) for (module, name), how in found.items())


def scan_pickle(data: bytes, where: str) -> list[Use]:
    """The globals one bare pickle (not a checkpoint zip) uses, each with its strongest use;
    NotACheckpoint when it cannot be read to the end."""
    return sorted(Use(m, n, how) for (m, n), how in _pickle_uses(data, where).items())


def unsafe(uses: list[Use]) -> list[Use]:
    """The uses `ALLOWED` does not permit: an unknown global, or a known one used more strongly
    than real checkpoints use it (a layer class called with arguments runs its __init__)."""
    allowed = {CALL: (CALL,), CONSTRUCT: (CALL, CONSTRUCT), REFERENCE: tuple(_STRENGTH)}
    return [use for use in uses if ALLOWED.get((use.module, use.name), "") not in allowed[use.how]]
