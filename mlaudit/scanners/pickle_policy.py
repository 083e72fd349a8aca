"""Which pickle imports are dangerous, which are known-safe, and which are merely unknown.

The allowlist decides what may be loaded; the denylist only decides how loudly an import
outside the allowlist is reported. Denylists alone are bypassable (any function that runs a
code string will do: ``timeit.timeit``, ``cProfile.run``, ``numpy.testing`` helpers), so
nothing here is ever allowed for being absent from the denylist.
"""

from __future__ import annotations

import _compat_pickle
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

# Modules (and their submodules) whose functions run code, spawn processes, touch the
# file system or the network, or unpickle again.
DANGEROUS_MODULES: Final = frozenset(
    {
        "os", "posix", "nt", "subprocess", "_posixsubprocess", "sys", "socket", "_socket",
        "shutil", "importlib", "imp", "runpy", "pty", "webbrowser", "pickle", "_pickle",
        "marshal", "ctypes", "_ctypes", "multiprocessing", "asyncio", "code", "codeop", "pdb",
        "bdb", "trace", "timeit", "cProfile", "profile", "_thread", "threading", "signal",
        "pathlib", "io", "_io", "tempfile", "http", "urllib", "urllib3", "requests", "httpx",
        "ftplib", "smtplib", "telnetlib", "ssl", "xmlrpc", "zipimport", "pkgutil", "site",
        "dill", "cloudpickle", "types", "operator", "_operator", "linecache",
        "inspect", "gc", "ensurepip", "venv", "distutils", "setuptools", "pip", "platform",
        "uuid", "fcntl", "resource", "mmap", "select", "selectors", "sqlite3", "shelve", "dbm",
        "zipfile", "tarfile", "logging", "pydoc", "idlelib", "tkinter", "turtle", "antigravity",
        "doctest", "unittest", "sh", "pexpect", "paramiko", "fabric", "invoke", "IPython",
        "yaml", "torch.hub", "numpy.f2py", "numpy.distutils", "numpy.ctypeslib",
        "numpy.testing", "sklearn.utils._testing", "joblib.parallel", "builtins",
        "__builtin__", "copyreg", "copy_reg", "_codecs", "codecs", "__main__",
    }
)

# Functions that load a second, unchecked pickle from inside an otherwise ordinary package.
DANGEROUS_NAMES: Final = frozenset(
    {
        "joblib.load", "joblib.numpy_pickle.load", "numpy.load", "numpy.lib.npyio.load",
        "numpy.lib._npyio_impl.load", "torch.load", "torch.serialization.load",
        "pandas.read_pickle", "pandas.io.pickle.read_pickle", "numpy.lib.format.read_array",
    }
)

# Attribute walks through these reach interpreter internals from any harmless-looking class.
_DUNDER_ESCAPES: Final = frozenset(
    {
        "__globals__", "__builtins__", "__dict__", "__class__", "__subclasses__",
        "__getattribute__", "__getattr__", "__import__", "__code__", "__closure__",
        "__reduce__", "__reduce_ex__", "__init_subclass__", "__loader__", "__spec__",
        "__self__", "__func__", "__mro__", "__bases__", "__base__", "__call__",
    }
)


# TorchScript archives name their own classes under this pseudo-module; no such Python module
# exists, so a Python unpickler fails to import them and TorchScript's never imports Python.
TORCHSCRIPT_NAMESPACE: Final = "__torch__"


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    UNLISTED = "unlisted"
    DANGEROUS = "dangerous"


@dataclass(frozen=True)
class Classification:
    verdict: Verdict
    reason: str


def canonical_name(module: str, name: str) -> tuple[str, str]:
    """Apply the Python 2 to 3 renames the unpickler applies (``__builtin__`` -> ``builtins``)."""
    key = (module, name)
    if key in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[key]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


@cache
def shipped_allowlist() -> frozenset[str]:
    """The reviewed allowlist that ships with mlaudit: exact ``module.qualname`` entries."""
    text = resources.files("mlaudit.scanners").joinpath("pickle_allowlist.txt").read_text("utf-8")
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def _within(dotted: str, prefixes: Iterable[str]) -> str | None:
    for prefix in prefixes:
        if dotted == prefix or dotted.startswith(prefix + "."):
            return prefix
    return None


def _dangerous_reason(module: str, name: str) -> str | None:
    qualified = f"{module}.{name}"
    if qualified in DANGEROUS_NAMES:
        return f"{qualified} loads another pickle that nothing has checked"
    # The whole dotted path, not just the module part: ("numpy", "testing._private.utils.x")
    # resolves to the same function as ("numpy.testing._private.utils", "x").
    hit = _within(qualified, DANGEROUS_MODULES)
    if hit is not None:
        return f"imports from {hit}, which can run code, processes, files or the network"
    parts = name.split(".")
    escapes = [part for part in parts if part in _DUNDER_ESCAPES]
    if escapes:
        return f"walks attribute {escapes[0]} to reach interpreter internals"
    # An attribute walk such as ``sklearn.pipeline`` + ``os.system`` reaches a dangerous
    # module through another module's namespace.
    for start in range(len(parts) - 1):
        walked = ".".join(parts[start:])
        hit = _within(walked, DANGEROUS_MODULES)
        if hit is not None:
            return f"reaches {hit} through the namespace of {module}"
    return None


def classify(module: str, name: str, extra_allowed: frozenset[str] = frozenset()) -> Classification:
    """Classify one import; the stricter of the raw and the Python-2-mapped spelling wins."""
    canonical = canonical_name(module, name)
    spellings = {(module, name), canonical}
    if not _is_safe_constructor(*canonical):
        for spelled_module, spelled_name in sorted(spellings):
            reason = _dangerous_reason(spelled_module, spelled_name)
            if reason is not None:
                return Classification(Verdict.DANGEROUS, reason)
    if module.split(".", 1)[0] == TORCHSCRIPT_NAMESPACE:
        return Classification(
            Verdict.ALLOWED,
            "a TorchScript type, resolved by TorchScript's own unpickler; Python cannot import it",
        )
    allowed = shipped_allowlist() | extra_allowed
    if all(f"{m}.{n}" in allowed for m, n in spellings):
        return Classification(Verdict.ALLOWED, "on the allowlist")
    return Classification(Verdict.UNLISTED, "not on the allowlist of known-safe globals")


def _is_safe_constructor(module: str, name: str) -> bool:
    """A few members of otherwise-denied modules that plain data needs (``builtins.set``).

    They are on the shipped allowlist, reviewed one by one; the rest of their module stays
    dangerous.
    """
    return f"{module}.{name}" in _SAFE_IN_DANGEROUS_MODULES


_SAFE_IN_DANGEROUS_MODULES: Final = frozenset(
    {
        "builtins.set", "builtins.frozenset", "builtins.slice", "builtins.range",
        "builtins.complex", "builtins.bytearray", "builtins.bytes", "builtins.str",
        "builtins.int", "builtins.float", "builtins.bool", "builtins.list", "builtins.dict",
        "builtins.tuple", "builtins.object", "builtins.NotImplemented", "builtins.Ellipsis",
        "copyreg._reconstructor", "_codecs.encode",
    }
)
