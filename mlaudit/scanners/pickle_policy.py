"""Which pickle imports are dangerous, which are known-safe, and which are merely unknown.

The allowlist decides what may be loaded; the denylist only decides how loudly an import
outside the allowlist is reported (MLA101 critical rather than MLA102 high). Denylists alone
are bypassable (any function that runs a code string will do: ``timeit.timeit``,
``cProfile.run``, ``numpy.testing`` helpers), so nothing here is ever allowed for being absent
from the denylist. Each group below names where its entries come from: a published advisory,
a peer scanner's own deny list (names are facts; no code is copied), or mlaudit's own review.
"""

from __future__ import annotations

import _compat_pickle
import enum
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

# mlaudit's own review: modules (and their submodules) whose functions run code, spawn
# processes, touch the file system or the network, or unpickle again.
_REVIEWED_MODULES: Final = frozenset(
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
        "__builtin__", "copyreg", "copy_reg", "_codecs", "codecs",
        # Native-code and interpreter-internal escapes of the same kind as builtins: the
        # import machinery, memory-corrupting test helpers, OS-specific process and registry
        # access.
        "__builtins__", "_frozen_importlib", "_frozen_importlib_external", "_imp",
        "_testcapi", "_testinternalcapi", "_winapi", "msvcrt", "winreg", "_winreg",
        "_multiprocessing", "_posixshmem", "torch.utils.cpp_extension",
    }
)

# Published advisories on picklescan and the torch loader (GHSA advisories of
# mmaitre314/picklescan, 2024-2025, and the issue-13 red-team set): torch internals whose
# functions evaluate code strings, run profilers or shell commands, or load a nested pickle;
# stdlib modules that call os.system/subprocess or compile code.
_ADVISORY_MODULES: Final = frozenset(
    {
        "torch.utils.bottleneck", "torch._dynamo", "torch.fx", "torch._guards",
        "torch.utils.collect_env", "torch.jit", "torch.utils._config_module",
        "torch._inductor", "torch.serialization", "torch._C", "torch.package",
        "torch.distributed", "torch.utils.data.datapipes.utils.decoder",
        "lib2to3", "_aix_support", "_osx_support", "imaplib", "nntplib", "poplib", "_pyrepl",
        "test", "_interpreters", "_xxsubinterpreters", "_interpchannels", "_interpqueues",
        "ast", "_ssl", "aiohttp",
    }
)
# ``__future__`` itself only holds inert feature records (``__future__.annotations``); the
# advisory's ``__future__`` + ``_ssl.RAND_bytes`` is an attribute walk into ``_ssl``, which the
# namespace-walk check reports as dangerous.

# The peers' own deny lists, module-wide entries: picklescan (scanner.py _unsafe_globals),
# modelscan (settings.py unsafe_globals), fickling (fickle.py UNSAFE_IMPORTS, analysis.py
# UnsafeImportsML.UNSAFE_MODULES) and ModelAudit (pickle_scanner.py ALWAYS_DANGEROUS_MODULES,
# suspicious_symbols.py SUSPICIOUS_GLOBALS). Where a peer lists only some members of a module,
# the whole module is denied here: the allowlist, not this list, decides what loads.
_PEER_MODULES: Final = frozenset(
    {
        "commands", "httplib", "urllib2", "functools", "joblib", "filecmp", "fileinput",
        "glob", "difflib", "compileall", "py_compile", "pipes", "socketserver", "_signal",
        "_sqlite3", "atexit", "syslog", "base64", "posixpath", "ntpath", "concurrent",
    }
)

DANGEROUS_MODULES: Final = _REVIEWED_MODULES | _ADVISORY_MODULES | _PEER_MODULES

# Functions that load a second, unchecked pickle or compile code from inside an otherwise
# ordinary package (mlaudit's review; torch.storage._load_from_bytes and torch.compile from
# fickling's UnsafeImportsML and ModelAudit's ALWAYS_DANGEROUS_FUNCTIONS).
DANGEROUS_NAMES: Final = frozenset(
    {
        "joblib.load", "joblib.numpy_pickle.load", "numpy.load", "numpy.lib.npyio.load",
        "numpy.lib._npyio_impl.load", "torch.load", "torch.serialization.load",
        "pandas.read_pickle", "pandas.io.pickle.read_pickle", "numpy.lib.format.read_array",
        "torch.storage._load_from_bytes", "torch.compile",
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

# The namespace of the script that loads the file: a pickle names a user's own class there
# (``__main__.DivideColumns``), which is merely unreviewed. Through it, though, a file also
# reaches whatever the script imported (``__main__.os``, ``__main__.system`` after ``from os
# import system``), so those names, and the code-running builtins, are dangerous there.
SCRIPT_NAMESPACES: Final = frozenset({"__main__", "__mp_main__"})
_CODE_RUNNING_NAMES: Final = frozenset(
    {
        "eval", "exec", "compile", "open", "getattr", "setattr", "delattr", "globals",
        "locals", "vars", "breakpoint", "input", "apply", "execfile", "system", "popen",
        "spawn", "run", "call", "check_call", "check_output", "Popen", "getoutput",
        "loads", "load", "import_module", "reload", "runcode", "runsource",
    }
)
_DANGEROUS_TOP_LEVELS: Final = frozenset(module.split(".")[0] for module in DANGEROUS_MODULES)


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


def _within(dotted: str, prefixes: frozenset[str]) -> str | None:
    """The shortest dotted prefix of ``dotted`` (itself included) that is in ``prefixes``.

    Set lookups per dot, not a scan of the list: a file of a million distinct imports is
    classified in linear time.
    """
    end = dotted.find(".")
    while end != -1:
        if dotted[:end] in prefixes:
            return dotted[:end]
        end = dotted.find(".", end + 1)
    return dotted if dotted in prefixes else None


def _dangerous_reason(module: str, name: str) -> str | None:
    qualified = f"{module}.{name}"
    if qualified in DANGEROUS_NAMES:
        return f"{qualified} loads another pickle or compiles code that nothing has checked"
    # The whole dotted path, not just the module part: ("numpy", "testing._private.utils.x")
    # resolves to the same function as ("numpy.testing._private.utils", "x").
    hit = _within(qualified, DANGEROUS_MODULES)
    if hit is not None:
        return f"imports from {hit}, which can run code, processes, files or the network"
    parts = name.split(".")
    escapes = [part for part in parts if part in _DUNDER_ESCAPES]
    if escapes:
        return f"walks attribute {escapes[0]} to reach interpreter internals"
    if module in SCRIPT_NAMESPACES and (
        parts[0] in _DANGEROUS_TOP_LEVELS or parts[0] in _CODE_RUNNING_NAMES
    ):
        return f"reaches {parts[0]} through the namespace of the script that loads the file"
    # An attribute walk such as ``sklearn.pipeline`` + ``os.system`` reaches a dangerous
    # module through another module's namespace; so does a bare ``__future__`` + ``_ssl``,
    # which hands the module object itself to whatever the pickle calls next.
    for start in range(len(parts)):
        walked = ".".join(parts[start:])
        hit = _within(walked, DANGEROUS_MODULES) or (walked if walked in DANGEROUS_NAMES else None)
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
    allowed = shipped_allowlist()
    if all(f"{m}.{n}" in allowed or f"{m}.{n}" in extra_allowed for m, n in spellings):
        return Classification(Verdict.ALLOWED, "on the allowlist")
    if module in SCRIPT_NAMESPACES:
        return Classification(
            Verdict.UNLISTED,
            "a class defined in the script that saved the file; not on the allowlist",
        )
    return Classification(Verdict.UNLISTED, "not on the allowlist of known-safe globals")


def _is_safe_constructor(module: str, name: str) -> bool:
    """A few members of otherwise-denied modules that plain data needs (``builtins.set``).

    They are on the shipped allowlist, reviewed one by one; the rest of their module stays
    dangerous.
    """
    return f"{module}.{name}" in SAFE_IN_DANGEROUS_MODULES


SAFE_IN_DANGEROUS_MODULES: Final = frozenset(
    {
        "builtins.set", "builtins.frozenset", "builtins.slice", "builtins.range",
        "builtins.complex", "builtins.bytearray", "builtins.bytes", "builtins.str",
        "builtins.int", "builtins.float", "builtins.bool", "builtins.list", "builtins.dict",
        "builtins.tuple", "builtins.object", "builtins.NotImplemented", "builtins.Ellipsis",
        "copyreg._reconstructor", "_codecs.encode",
        # len only asks its argument for __len__, and every argument a pickle can build is
        # itself made of checked imports.
        "builtins.len",
        # partial only binds arguments: the function it binds is an import checked on its own.
        "functools.partial",
        # joblib's array framing; the walker reads the raw bytes that follow it.
        "joblib.numpy_pickle.NumpyArrayWrapper",
        # torch's checkpoint reconstructors: build a list of ints, tag a type, name a layout.
        "torch.jit._pickle.build_intlist", "torch.jit._pickle.restore_type_tag",
        "torch.serialization._get_layout",
    }
)
