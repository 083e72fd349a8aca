"""What loading a model costs: wall time and resident memory, measured around the loader.

The engine wraps the loader with :func:`measure_load` in the process that loads the model
(the isolated worker, or mlaudit's own with isolation none); MLA801 interprets the readings
with :func:`load_memory`.

Two memory readings, because neither works everywhere:

- the **peak** resident set, the kernel's high-water mark (``getrusage``'s ``ru_maxrss``, a
  system call, so it works inside the confined worker, whose file-system layer hides
  ``/proc``). Linux resets the mark to the current resident set when a process forks, so in
  the worker, forked just before the load, peak-after minus peak-before is the most memory
  the load took at any moment, transient copies included;
- the **current** resident set (psutil), which needs ``/proc`` on Linux: readable with
  isolation none, where the high-water mark may be stale (the process peaked earlier, on
  other work, and freed it); then the net growth across the load is what can be said.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from mlaudit.subject.model_info import LoadCost, LoadedModel

# A high-water mark more than this above the resident set before the load is stale: the
# process peaked earlier, on other work, and a load under that old peak would not move it.
_STALE_PEAK_BYTES = 16 << 20


@dataclass(frozen=True)
class LoadMemory:
    """The memory the load took, in bytes, and which reading it comes from."""

    bytes: int
    method: str  # "peak" (high-water growth during the load) or "net" (resident set growth)

    @property
    def description(self) -> str:
        if self.method == "peak":
            return "peak resident set growth during the load (kernel high-water mark)"
        return "resident set after the load minus before (net; a transient peak is not seen)"


def measure_load(load: Callable[[], LoadedModel]) -> LoadedModel:
    """``load()``'s model with what loading it cost (:class:`LoadCost`) attached."""
    rss_before, peak_before = resident_set(), peak_resident_set()
    started = time.perf_counter()
    model = load()
    seconds = time.perf_counter() - started
    cost = LoadCost(seconds, rss_before, resident_set(), peak_before, peak_resident_set())
    return replace(model, load_cost=cost)


def resident_set() -> int | None:
    """This process's resident set in bytes; None without psutil or where it cannot be read."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        return int(psutil.Process().memory_info().rss)
    except (psutil.Error, OSError):  # the confined worker: /proc is outside its reach
        return None


def peak_resident_set() -> int | None:
    """This process's high-water resident set in bytes; None where the platform has none."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes, Linux KiB


def load_memory(cost: LoadCost) -> LoadMemory | None:
    """The memory the load took: the peak growth when the high-water mark was fresh before the
    load, else the net resident growth; None when neither could be read."""
    fresh = cost.rss_before is None or (
        cost.peak_before is not None and cost.peak_before - cost.rss_before <= _STALE_PEAK_BYTES
    )
    if cost.peak_before is not None and cost.peak_after is not None and fresh:
        return LoadMemory(max(cost.peak_after - cost.peak_before, 0), "peak")
    if cost.rss_before is not None and cost.rss_after is not None:
        return LoadMemory(max(cost.rss_after - cost.rss_before, 0), "net")
    return None
