"""The run cache: expensive results the stages and rules of one audit share.

One audit computes some things several rules need: the L∞ evasion attack (MLA201 and MLA203),
the fitted reference models (MLA302 and MLA304), the parsed ONNX file (the inventory, MLA402
and the loader), the bandit run (MLA501 and MLA502). Each is computed once per run under a
:class:`CacheKey` that names the computation and everything its result depends on, so two
rules asking with different options or data get two results, never a wrong shared one.

The cache lives for one run: the engine creates it (or takes the one the subject was built
with) and drops it when the run ends; nothing is kept between runs or in the process. A
computation that raises is not kept: the next caller computes it again. The lock guards the
table only, never a computation, so a rule abandoned past its budget can never block another:
at worst two threads compute the same thing and the first result stays.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

T = TypeVar("T")


@dataclass(frozen=True)
class CacheKey:
    """A computation and every input its result depends on (hashable values only).

    ``what`` names the computation (``"evasion-attack"``); it is also how a reuse is reported.
    """

    what: str
    inputs: tuple[Hashable, ...]


@dataclass(frozen=True)
class Shared(Generic[T]):
    """A result from the cache: the value, who computed it, and whether this call reused it."""

    value: T
    computed_by: str
    reused: bool


@dataclass(frozen=True)
class _Entry:
    value: object
    computed_by: str


class RunCache:
    """Results computed once per run, shared by key; thread-safe for the engine's rule threads."""

    def __init__(self, entries: dict[CacheKey, _Entry] | None = None) -> None:
        self._lock = threading.Lock()
        self._entries: dict[CacheKey, _Entry] = dict(entries or {})

    def shared(self, key: CacheKey, compute: Callable[[], T], *, by: str) -> Shared[T]:
        """The result for ``key``: computed by ``by`` now, or reused from whoever computed it.

        The caller's ``compute`` must return the same type for the same ``key.what``.
        """
        with self._lock:
            found = self._entries.get(key)
        if found is not None:
            return Shared(cast(T, found.value), found.computed_by, reused=True)
        value = compute()  # outside the lock: an exception leaves nothing behind
        with self._lock:
            kept = self._entries.setdefault(key, _Entry(value, by))
        return Shared(cast(T, kept.value), kept.computed_by, reused=kept.computed_by != by)

    def for_forked_worker(self) -> RunCache:
        """A cache for a freshly forked worker: what the parent computed, with a new lock.

        Called in the child, where the inherited lock may be held forever by a parent thread
        that did not survive the fork, so the table is read without it: the child has a
        single thread, and the dict it copies was whole when the fork happened.
        """
        return RunCache(self._entries)
