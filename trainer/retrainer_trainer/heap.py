"""Python's cyclic garbage collector, kept off what lives as long as the trainer does.

Importing torch, Ultralytics and MLflow, and Ultralytics' own set-up, make hundreds of
thousands of objects (modules, classes, functions, the model) that are never garbage. Every
full collection walks all of them again, a third of a second each with all three loaded, and
Ultralytics asks for one (`gc.collect()`) after every epoch on top of the ones the allocator
triggers. So the imports and the set-up run with the collector paused (they leave next to no
cyclic garbage), and what exists when they are done is frozen (`gc.freeze`): later
collections walk only what training makes. Nothing is kept alive by this: objects freed by
their reference count go as always; only a reference cycle made before a freeze and dropped
after it is not reclaimed, until `thaw` (the end of the pipeline) gives them back.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator

__all__ = ["paused", "thaw"]


@contextlib.contextmanager
def paused() -> Iterator[Callable[[], None]]:
    """The collector paused for the block, then everything that exists frozen and the
    collector back as it was; the function yielded does that early (once)."""
    was_enabled = gc.isenabled()
    done = False

    def resume() -> None:
        nonlocal done
        if done:
            return
        done = True
        gc.freeze()
        if was_enabled:
            gc.enable()

    gc.disable()
    try:
        yield resume
    finally:
        resume()


def thaw() -> None:
    """Give the frozen objects back to the collector (the pipeline is done with them; a
    process that goes on, a test's, collects them as it would have)."""
    gc.unfreeze()
