"""Generated inputs for the differential test: pickles, joblib streams and torch zip layouts.

Every generator takes a seeded :class:`random.Random`, so the same seed gives the same bytes
(the benchmark's volume batches); the hypothesis strategies draw that ``Random`` from
hypothesis, which then shrinks the choices behind a failure. Dangerous globals are always
called with a command or code string that would create ``canary``: the oracle never runs them,
and the tests assert the canary never appears.
"""

from __future__ import annotations

import io
import random
import struct
import warnings
import zipfile
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Final

from hypothesis import strategies as st

from tests.differential.property import Case

WRAPPER: Final = ("joblib.numpy_pickle", "NumpyArrayWrapper")
DANGEROUS: Final = (
    ("os", "system"), ("posix", "system"), ("builtins", "exec"), ("builtins", "eval"),
    ("__builtin__", "eval"), ("subprocess", "getoutput"), ("timeit", "timeit"),
    ("builtins", "getattr"), ("pickle", "loads"), ("runpy", "_run_code"),
    ("torch.serialization", "load"), ("numpy.testing._private.utils", "runstring"),
)
UNLISTED: Final = (
    ("__main__", "Model"), ("mypackage.layers", "Custom"), ("collections", "namedtuple"),
    ("sklearn.utils", "not_a_real_name"), ("numpy", "load"), ("joblib", "load"),
    ("os", "path.join"), ("torch.tensor", "_rebuild_from_type"),
)
_PROTOCOLS: Final = (0, 1, 2, 3, 4, 5)
Generator = Callable[[random.Random, Path], Case]


@cache
def allowlisted() -> tuple[tuple[str, str], ...]:
    """The shipped allowlist's entries as (module, name), split at the last dot."""
    text = resources.files("mlaudit.scanners").joinpath("pickle_allowlist.txt").read_text()
    lines = (line.strip() for line in text.splitlines())
    entries = (line.rpartition(".") for line in lines if line and not line.startswith("#"))
    return tuple((module, name) for module, _, name in entries)


def draw_global(rng: random.Random) -> tuple[str, str]:
    pool = rng.choices(
        (allowlisted(), DANGEROUS, UNLISTED, (WRAPPER,)), weights=(6, 2, 1, 1)
    )[0]
    return rng.choice(pool)


# ------------------------------------------------------------------------- opcode level


def unicode(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return b"\x8c" + bytes([len(raw)]) if len(raw) < 256 else b"X" + struct.pack("<I", len(raw))


def text_op(text: str) -> bytes:
    """A string push: BINUNICODE forms, or protocol 0's S/V lines."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    return b"X" + struct.pack("<I", len(raw)) + raw


def _proto0_text(text: str) -> bytes:
    return b"V" + text.encode("raw_unicode_escape") + b"\n"


def payload_text(canary: Path, module: str, name: str) -> str:
    """The argument a dangerous call would get: it creates the canary if ever run."""
    if name in {"exec", "eval", "timeit", "runstring", "_run_code"}:
        return f"open({str(canary)!r}, 'w').close()"
    return f"touch {canary}"


class Emitter:
    """Emits statements that each leave exactly one value on the stack.

    ``protocol`` decides which opcodes are legal in spirit; the drawn mutations then break
    the rules on purpose (wrong FRAME lengths, PROTO mid-stream, truncation).
    """

    def __init__(self, rng: random.Random, canary: Path, protocol: int) -> None:
        self.rng = rng
        self.canary = canary
        self.protocol = protocol
        self.memo = 0

    def string(self, text: str) -> bytes:
        return text_op(text) if self.protocol >= 1 and self.rng.random() < 0.8 else (
            _proto0_text(text)
        )

    def memoize(self, ops: bytes) -> bytes:
        """``ops``, sometimes stored in the memo and read back (PUT/GET/MEMOIZE forms)."""
        roll = self.rng.random()
        if roll < 0.6:
            return ops
        index = self.memo
        self.memo += 1
        if roll < 0.75 and self.protocol >= 4:
            store = b"\x94"
        elif roll < 0.9 and self.protocol >= 1:
            store = b"q" + bytes([index % 256]) if index < 256 else b"r" + struct.pack("<I", index)
        else:
            store = b"p" + str(index).encode() + b"\n"
        fetch = b"h" + bytes([index]) if index < 256 and self.protocol >= 1 else (
            b"g" + str(index).encode() + b"\n"
        )
        return ops + store + b"0" + fetch

    def value(self, depth: int = 0) -> bytes:
        rng = self.rng
        kinds = ["int", "str", "none", "float"] + (["list", "dict", "tuple"] if depth < 2 else [])
        kind = rng.choice(kinds)
        if kind == "int":
            return b"K" + bytes([rng.randrange(256)]) if self.protocol >= 1 else b"I7\n"
        if kind == "str":
            return self.memoize(self.string(rng.choice(["C", "<", "x", "shape", "ascii"])))
        if kind == "none":
            return b"N"
        if kind == "float":
            return b"G" + struct.pack(">d", rng.random()) if self.protocol >= 1 else b"F0.5\n"
        items = b"".join(self.value(depth + 1) for _ in range(rng.randrange(3)))
        if kind == "list":
            return b"](" + items + b"e" if rng.random() < 0.5 else b"(" + items + b"l"
        if kind == "tuple":
            return b"(" + items + b"t"
        pairs = b"".join(self.value(depth + 1) + self.value(depth + 1) for _ in range(2))
        return b"}(" + pairs + b"u" if rng.random() < 0.5 else b"(" + pairs + b"d"

    def global_ref(self, module: str, name: str) -> bytes:
        """Pushes the global: GLOBAL, STACK_GLOBAL (strings maybe from the memo)."""
        if self.protocol >= 4 and self.rng.random() < 0.6:
            return self.memoize(self.string(module)) + self.memoize(self.string(name)) + b"\x93"
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    def args_for(self, module: str, name: str) -> bytes:
        if (module, name) in DANGEROUS:
            return self.string(payload_text(self.canary, module, name))
        return b"".join(self.value(1) for _ in range(self.rng.randrange(3)))

    def statement(self) -> bytes:
        """One value: a plain value, or a global used by one of the calling opcodes."""
        rng = self.rng
        if rng.random() < 0.25:
            return self.value()
        module, name = draw_global(rng)
        args = self.args_for(module, name)
        form = rng.choice(("reduce", "reduce", "newobj", "newobj_ex", "inst", "obj", "bare"))
        if form == "inst":
            return b"(" + args + b"i" + module.encode() + b"\n" + name.encode() + b"\n"
        ref = self.global_ref(module, name)
        if form == "obj":
            return b"(" + ref + args + b"o"
        if form == "bare":
            return ref
        call = {
            "reduce": b"(" + args + b"tR",
            "newobj": b"(" + args + b"t\x81",
            "newobj_ex": b"(" + args + b"t}\x92",
        }[form]
        built = ref + call
        if rng.random() < 0.3:
            built += self.value() + b"b"
        return self.memoize(built)


def frame(body: bytes, rng: random.Random) -> bytes:
    """``body`` in one FRAME whose length is right most of the time, and wrong otherwise."""
    size = len(body) + (0 if rng.random() < 0.7 else rng.choice((-3, -1, 1, 2, 9)))
    return b"\x95" + struct.pack("<Q", max(size, 0)) + body


def opcode_pickle(rng: random.Random, canary: Path) -> bytes:
    """One pickle of random statements, collected in a list (or popped), then STOP."""
    protocol = rng.choice(_PROTOCOLS)
    emit = Emitter(rng, canary, protocol)
    statements = [emit.statement() for _ in range(rng.randrange(1, 5))]
    if rng.random() < 0.1:
        statements.insert(rng.randrange(len(statements) + 1), b"\x80" + bytes([rng.randrange(6)]))
    # Collected in one list, or each dropped by POP before the next.
    body = b"(" + b"".join(statements) + b"l" if rng.random() < 0.5 else b"0".join(statements)
    header = b"\x80" + bytes([protocol]) if protocol >= 2 or rng.random() < 0.3 else b""
    if protocol >= 4 and rng.random() < 0.4:
        cut = rng.randrange(len(body) + 1)
        body = frame(body[:cut], rng) + body[cut:]
    return header + body + b"."


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random corruption: truncation, a flipped byte, an inserted or deleted byte."""
    if not data:
        return data
    where = rng.randrange(len(data))
    roll = rng.random()
    if roll < 0.3:
        return data[:where]
    if roll < 0.6:
        return data[:where] + bytes([rng.randrange(256)]) + data[where + 1:]
    if roll < 0.8:
        return data[:where] + bytes([rng.randrange(256)]) + data[where:]
    return data[:where] + data[where + 1:]


def pickle_case(rng: random.Random, canary: Path) -> Case:
    """(a) opcode sequences: one pickle, several in a row, or a mutated one."""
    data = opcode_pickle(rng, canary)
    label = "opcodes"
    if rng.random() < 0.15:
        data += opcode_pickle(rng, canary)
        label = "opcodes+second pickle"
    if rng.random() < 0.25:
        data = mutate(data, rng)
        label += "+mutated"
    return Case("pickle", data, label)


# ------------------------------------------------------------------------- joblib streams


@cache
def joblib_dumps() -> tuple[bytes, ...]:
    """Real ``joblib.dump`` outputs of small numpy and scikit-learn objects, protocols 2-5."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import StandardScaler

    features = np.arange(24, dtype=np.float64).reshape(8, 3)
    objects: list[Any] = [
        np.arange(7, dtype=np.uint8),
        {"weights": np.linspace(0, 1, 5), "bias": np.zeros((2, 2), dtype=np.float32)},
        [np.array([1, "x"], dtype=object), np.array([True, False])],
        StandardScaler().fit(features),
        LinearRegression().fit(features, features[:, 0]),
    ]
    dumps = []
    for obj in objects:
        for protocol in (2, 3, 4, 5):
            buffer = io.BytesIO()
            joblib.dump(obj, buffer, protocol=protocol)
            dumps.append(buffer.getvalue())
    return tuple(dumps)


def wrapper_state(rng: random.Random, count: int, alignment: bool) -> bytes:
    """A NumpyArrayWrapper BUILD state for a 1-d uint8 array, with literal or computed keys."""
    shape = b"J" + struct.pack("<i", count) + b"\x85"
    code, flags = rng.choice((("u1", 0), ("u1", 0), ("f8", 0), ("O", 63)))
    if rng.random() < 0.05:  # a forged state: object dtype without the object flags, or back
        flags = 63 - flags
    dtype = (
        b"cnumpy\ndtype\n" + text_op(code) + b"\x89\x88\x87R(K\x03" + text_op("|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK" + bytes([flags]) + b"tb"
    )
    key = text_op("numpy_array_alignment_bytes")
    if rng.random() < 0.2:  # computed at load time by a real pure constructor
        key = b"cbuiltins\nstr\nC\x1bnumpy_array_alignment_bytes" + text_op("ascii") + b"\x86R"
    return (
        b"}(" + text_op("subclass") + b"cnumpy\nndarray\n" + text_op("shape") + shape
        + text_op("order") + text_op("C") + text_op("dtype") + dtype
        + text_op("allow_mmap") + b"\x89" + ((key + b"K\x10") if alignment else b"") + b"ub"
    )


def wrapper_object(rng: random.Random) -> bytes:
    """The wrapper instance: NEWOBJ as joblib writes it, or REDUCE, partial, _reconstructor."""
    ref = b"cjoblib.numpy_pickle\nNumpyArrayWrapper\n"
    form = rng.choice(("newobj", "newobj", "reduce", "partial", "reconstructor", "dotted"))
    if form == "reduce":
        return ref + b"(cnumpy\nndarray\nK\x08\x85" + text_op("C") + b"NtR"
    if form == "partial":
        return b"cfunctools\npartial\n" + ref + b"\x85R)R"
    if form == "reconstructor":
        return b"ccopyreg\n_reconstructor\n" + ref + b"cbuiltins\nobject\nN\x87R"
    if form == "dotted":
        return b"\x8c\x06joblib\x8c\x1enumpy_pickle.NumpyArrayWrapper\x93)\x81"
    return ref + b")\x81"


def handmade_joblib(rng: random.Random, canary: Path) -> bytes:
    """A wrapper followed by its array region, whose bytes may be opcodes a desync would run."""
    emit = Emitter(rng, canary, 4)
    hidden = b"0" + emit.statement()
    count = rng.choice((len(hidden), len(hidden) + 1, 8, 0))
    alignment = rng.random() < 0.5
    region = (bytes([rng.choice((0, 3, 16))]) if alignment else b"") + hidden
    body = wrapper_object(rng) + wrapper_state(rng, count, alignment) + region
    if rng.random() < 0.3:
        cut = rng.randrange(len(body) + 1)
        body = frame(body[:cut], rng) + body[cut:]
    return b"\x80\x04" + body + emit.statement() + b"0." if rng.random() < 0.5 else (
        b"\x80\x04" + body + b"."
    )


def _replace_payload(data: bytes, rng: random.Random, canary: Path) -> bytes:
    """An array's raw bytes (seen as the run after a BUILD) replaced by opcodes, same length."""
    starts = [i + 1 for i in range(len(data) - 1) if data[i] == ord("b")]
    if not starts:
        return data
    start = rng.choice(starts)
    ops = b"0" + Emitter(rng, canary, 4).statement()
    return data[:start] + ops + data[start + len(ops):]


def joblib_case(rng: random.Random, canary: Path) -> Case:
    """(b) joblib streams: real dumps, mutated dumps, and hand-made wrappers."""
    roll = rng.random()
    if roll < 0.35:
        return Case("joblib", handmade_joblib(rng, canary), "joblib handmade wrapper")
    data = rng.choice(joblib_dumps())
    if roll < 0.5:
        return Case("joblib", data, "joblib.dump")
    if roll < 0.75:
        return Case("joblib", _replace_payload(data, rng, canary), "joblib payload as opcodes")
    return Case("joblib", mutate(data, rng), "joblib mutated")


# ------------------------------------------------------------------------- torch zip layouts


@cache
def torch_checkpoint() -> tuple[tuple[zipfile.ZipInfo, bytes], ...]:
    """The members of a real ``torch.save`` zip of a small state dict."""
    import torch

    buffer = io.BytesIO()
    torch.save({"weight": torch.arange(4.0), "step": 3}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        return tuple((info, archive.read(info)) for info in archive.infolist())


def _case_variant(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


def torch_case(rng: random.Random, canary: Path) -> Case:
    """(c) a torch checkpoint whose zip layout is varied around its ``data.pkl``."""
    members = [(info.filename, data) for info, data in torch_checkpoint()]
    index = next(i for i, (name, _) in enumerate(members) if name.endswith("/data.pkl"))
    name, original = members[index]
    hostile = opcode_pickle(rng, canary)
    technique = rng.choice(("case", "duplicate", "extra", "replace", "flags"))
    if technique == "case":
        members[index] = (name.rpartition("/")[0] + "/" + _case_variant("data.pkl", rng), original)
        members.append((name.rpartition("/")[0] + "/" + _case_variant("data.pkl", rng), hostile))
    elif technique == "duplicate":
        members.insert(rng.choice((index, index + 1)), (name, hostile))
    elif technique == "extra":
        members.append((name.rpartition("/")[0] + "/extra.pkl", hostile))
    elif technique == "replace":
        members[index] = (name, hostile)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as archive:
        warnings.simplefilter("ignore")  # duplicate names are the point
        for member, data in members:
            info = zipfile.ZipInfo(member)
            if technique == "flags":
                info.flag_bits |= rng.choice((0x1, 0x20, 0x40))
            archive.writestr(info, data)
    return Case("torch", buffer.getvalue(), f"torch zip {technique}")


# ------------------------------------------------------------------------- mixes


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def mixed_case(rng: random.Random, canary: Path, with_torch: bool) -> Case:
    """A case of any family, mostly opcode pickles (the cheapest and most varied)."""
    roll = rng.random()
    if roll < 0.25:
        return joblib_case(rng, canary)
    if roll < 0.28 and with_torch:
        return torch_case(rng, canary)
    return pickle_case(rng, canary)


def seeded_cases(seed: int, count: int, canary: Path, with_torch: bool) -> list[Case]:
    rng = random.Random(seed)
    return [mixed_case(rng, canary, with_torch) for _ in range(count)]


def cases(generator: Generator, canary: Path) -> st.SearchStrategy[Case]:
    """A hypothesis strategy of one generator's cases, drawn through a shrinkable Random."""
    return st.builds(generator, st.randoms(use_true_random=False), st.just(canary))
