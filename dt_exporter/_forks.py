"""The one process-wide fork hook: objects with per-process state register here.

After `os.fork()` the child inherits locks that a parent thread may hold forever, a queue that
belongs to the parent (which delivers it), and no threads. Every registered object's
`after_fork_in_child()` runs in the child, in registration order, before the child does
anything else. Owners are held weakly: a collected exporter is simply skipped.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Protocol


class ForkAware(Protocol):
    def after_fork_in_child(self) -> None: ...


_owners: weakref.WeakValueDictionary[int, ForkAware] = weakref.WeakValueDictionary()
_order = iter(range(1 << 62))
_lock = threading.Lock()


def register(owner: ForkAware) -> None:
    """Call `owner.after_fork_in_child()` in every child forked from now on."""
    with _lock:
        _owners[next(_order)] = owner


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a parent thread may have held it while forking
    for _, owner in sorted(_owners.items()):
        owner.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
