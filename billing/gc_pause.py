"""Pausing Python's cyclic garbage collector around bulk work.

Building tens of thousands of small objects (a parsed bank statement, a close's journal
entries) triggers the collector again and again, and each pass walks every live object of
the process — a close holds millions: 2–4× the time of the work itself. Those objects hold
no reference cycles, so nothing is lost by pausing it; reference counting still frees them.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """The collector off inside the block, back as it was after it (nesting is safe)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
