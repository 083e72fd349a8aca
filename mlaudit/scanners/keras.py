"""Static scan of Keras model files: the Keras 3 ``.keras`` zip and the legacy HDF5 ``.h5``.

Nothing here imports Keras or TensorFlow, unmarshals bytecode or builds a layer. The model's
JSON config (``config.json`` in the zip, the ``model_config`` root attribute of the HDF5 file)
is parsed with :func:`json.loads` and walked as plain data, with explicit caps on its size,
its nesting and the nesting of layers.

What Keras would run or import when it rebuilds the model from that config (MLA104):

* a ``Lambda`` layer's function, or any other callable in the config (``output_shape``, an
  activation, a loss), saved as marshalled Python bytecode: Keras 3 writes
  ``{"class_name": "__lambda__", "config": {"code": <base64>, ...}}`` (or ``{"value": [code,
  defaults, closure]}`` outside a Lambda layer); tf.keras 2 wrote the ``[code, defaults,
  closure]`` list directly in the layer config with ``"function_type": "lambda"``; older Keras
  versions wrote no ``function_type`` and unmarshalled any string or list there, so such a
  value is code too. Keras refuses these only under ``safe_mode=True``, which one argument
  turns off (and older versions have no safe mode). HIGH.
* any object whose ``module`` is outside the Keras packages: Keras 3 ``import_module``-s it and
  takes ``class_name`` from it, so the file chooses a module to import. MEDIUM, HIGH when the
  module is one the pickle policy calls dangerous (``os``, ``builtins``, ``subprocess``...).
* a reference to a Keras function that weakens the loader or touches files
  (``keras.config.enable_unsafe_deserialization``, ``keras.utils.get_file``...): used as a
  Lambda's function, Keras calls it while it builds the model. HIGH.
* tf.keras ``TFOpLambda`` / ``SlicingOpLambda`` layers, which call a TensorFlow API function
  named in the file: MEDIUM, HIGH for functions that reach files, Python callbacks or native
  libraries (``io.write_file``, ``py_function``, ``load_library``...).
* legacy ``Lambda`` layers whose function is a named Python function: MEDIUM.

Not reported, on purpose: ``registered_name`` values (Keras looks them up in the registry of
classes already imported by the caller, it imports nothing), ``shared_object_id`` (object
sharing between layers, no code), class names the legacy format resolves only from the
caller's ``custom_objects``.

Path tricks (MLA103): zip members with absolute names or ``..`` components, and, in HDF5
files, external links, external raw storage and virtual-dataset sources that name a file
outside the model's folder (CRITICAL) or any other file (MEDIUM). Malformed structure
(MLA107, HIGH): a zip or HDF5 file that does not open, a missing or oversized ``config.json``,
config JSON that does not parse, nesting past the caps, duplicate zip members.

HDF5 parsing is done by libhdf5 (C code, through h5py): the scanner reads only the root
attributes and the link tree, never a dataset's contents. In a ``.keras`` zip the weights file
is opened that way only when it is stored uncompressed (as Keras writes it) and h5py is
installed.

Not done here: a ``model.weights.npz`` member (Keras's other weights format) is loaded by Keras
with ``np.load(allow_pickle=True)``, so object arrays in it are pickles; that member belongs to
the NumPy scanner.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any, Final

from mlaudit.core.findings import JsonValue, Severity
from mlaudit.scanners.format_report import (
    MAX_ARCHIVE_MEMBERS,
    MAX_JSON_HEADER_BYTES,
    ArtifactIssue,
    FormatReport,
    IssueCollector,
)
from mlaudit.scanners.paths import escape_reason
from mlaudit.scanners.pickle_policy import Verdict, classify

PATH_RULE: Final = "MLA103"
CODE_RULE: Final = "MLA104"
MALFORMED_RULE: Final = "MLA107"

CONFIG_MEMBER: Final = "config.json"
METADATA_MEMBER: Final = "metadata.json"
WEIGHTS_MEMBER: Final = "model.weights.h5"

# Top-level packages whose classes Keras itself (or a Keras-team package) provides.
KERAS_PACKAGES: Final = frozenset({"keras", "tf_keras", "keras_hub", "keras_nlp", "keras_cv"})

# Nesting caps: JSON depth of the config, and models nested inside models.
MAX_CONFIG_DEPTH: Final = 256
MAX_LAYER_DEPTH: Final = 64
# At most this many issues per rule are listed; the rest are counted in one summary issue.
# HDF5 objects visited when looking for links to other files.
MAX_HDF5_OBJECTS: Final = 100_000

# Keras functions that, called while the model is rebuilt (as a Lambda's function, say),
# turn safe mode off, fetch or write files, or load another model.
_DANGEROUS_KERAS_FUNCTIONS: Final = (
    "keras.config.enable_unsafe_deserialization",
    "keras.src.saving.serialization_lib.enable_unsafe_deserialization",
    "keras.utils.get_file",
    "keras.src.utils.file_utils",
    "keras.src.utils.python_utils",
    "keras.saving",
    "keras.src.saving",
    "keras.models.load_model",
    "keras.src.legacy.saving",
    "keras.src.models.model.model_from_json",
    "keras.models.model_from_json",
)
# TensorFlow API functions (as TFOpLambda names them, without the ``tf.`` prefix) that reach
# files, Python callbacks, native libraries or the runtime's configuration.
_DANGEROUS_TF_FUNCTIONS: Final = (
    "io.", "gfile.", "compat.v1.io.", "compat.v1.gfile.", "compat.v1.py_func",
    "compat.v1.load_file_system_library", "compat.v1.Print", "compat.v1.summary.",
    "compat.v1.saved_model.", "compat.v1.train.", "py_function", "numpy_function",
    "raw_ops.", "load_op_library", "load_library", "print", "summary.", "debugging.",
    "saved_model.", "keras.", "data.", "config.", "experimental.", "distribute.", "sysconfig.",
    "train.", "autograph.", "function",
)
_TF_OP_LAMBDAS: Final = frozenset({"TFOpLambda", "SlicingOpLambda"})
_LAYER_KEYS: Final = frozenset({"layer", "forward_layer", "backward_layer"})
_IDENTIFIER: Final = re.compile(rb"[A-Za-z_][A-Za-z0-9_]{2,63}")
_MAX_CODE_NAMES: Final = 32


# ============================================================================================
# Public API


def scan_keras_zip(path: str | os.PathLike[str]) -> FormatReport:
    """Scan a Keras 3 ``.keras`` file (a zip holding ``config.json``) without loading it.

    Raises only :class:`OSError` when the file cannot be read at all; everything wrong with
    its content is an issue in the returned report.
    """
    model = Path(path)
    issues = IssueCollector()
    try:
        archive = zipfile.ZipFile(model)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, NotImplementedError,
            UnicodeDecodeError, RuntimeError) as error:
        issues.add(_malformed("keras-zip:unreadable", "Not a readable zip archive",
                              f"the file is not a zip archive Keras could open: {error}"))
        return FormatReport("keras-v3 (unreadable zip)", issues.result())
    with archive:
        infos = archive.infolist()
        _check_members(infos, issues)
        configs = [info for info in infos if info.filename == CONFIG_MEMBER]
        if not configs:
            issues.add(_malformed(
                "keras-zip:no-config", "No config.json in the .keras archive",
                "a .keras file must hold config.json; without it nothing says what the "
                "archive is", member=CONFIG_MEMBER,
            ))
        for info in configs:
            text = _read_member(archive, info, issues)
            if text is not None:
                config = _parse_json(text, "config.json", issues, member=CONFIG_MEMBER)
                if config is not None:
                    _walk_config(config, issues, member=CONFIG_MEMBER)
        version = _keras_version(archive, infos, issues)
        _scan_zipped_weights(archive, infos, model.parent, issues)
    detail = "keras-v3 zip" + (f" (keras {version})" if version else "")
    return FormatReport(detail, issues.result(), members=len(infos))


def scan_keras_h5(path: str | os.PathLike[str]) -> FormatReport:
    """Scan a legacy Keras HDF5 (``.h5``) model file without loading it.

    Reads the root attributes ``model_config`` and ``training_config`` (JSON) with h5py in
    read-only mode and walks the HDF5 link tree for references to other files; dataset
    contents are never read. Raises :class:`ImportError` when h5py is not installed, and
    :class:`OSError` only when the file does not exist.
    """
    try:
        import h5py
    except ImportError as error:
        raise ImportError(
            "scanning a Keras .h5 model needs h5py, which is not installed: pip install h5py"
        ) from error
    model = Path(path)
    if not model.exists():
        raise FileNotFoundError(str(model))
    issues = IssueCollector()
    details: list[str] = []
    try:
        with h5py.File(model, "r") as handle:
            attrs = handle.attrs
            version = _attr_text(_get_attr(attrs, "keras_version"))
            backend = _attr_text(_get_attr(attrs, "backend"))
            raw_config = _get_attr(attrs, "model_config")
            raw_training = _get_attr(attrs, "training_config")
            if version:
                details.append(f"keras {version}")
            if backend:
                details.append(f"backend {backend}")
            if raw_config is None:
                details.append("weights only, no model_config")
            else:
                _scan_config_attr(raw_config, "model_config", issues, prefix=())
            if raw_training is not None:
                _scan_config_attr(raw_training, "training_config", issues,
                                  prefix=("training_config",))
            _scan_hdf5_links(handle, model.parent, issues, member=None)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        issues.add(_malformed("keras-h5:unreadable", "Not a readable HDF5 file",
                              f"the file could not be read as HDF5: {_first_line(error)}"))
    detail = "keras-h5 (legacy HDF5" + "".join(f", {d}" for d in details) + ")"
    return FormatReport(detail, issues.result())


# ============================================================================================
# Issue collection


def _malformed(key: str, title: str, message: str, *, member: str | None = None,
               pointer: str | None = None,
               evidence: dict[str, JsonValue] | None = None) -> ArtifactIssue:
    return ArtifactIssue(MALFORMED_RULE, key, title, message, Severity.HIGH, member, pointer,
                         evidence or {})


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


# ============================================================================================
# Zip archive


def _check_members(infos: list[zipfile.ZipInfo], issues: IssueCollector) -> None:
    if len(infos) > MAX_ARCHIVE_MEMBERS:
        issues.add(_malformed(
            "keras-zip:too-many-members", "Too many archive members",
            f"the archive has {len(infos)} members, more than the {MAX_ARCHIVE_MEMBERS} "
            "a model archive may hold", evidence={"members": len(infos)},
        ))
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if name in seen:
            issues.add(_malformed(
                f"keras-zip:duplicate-member:{name}", "Duplicate archive member",
                f"the archive holds {name!r} more than once; zip readers disagree on which "
                "copy they read, so what is scanned need not be what is loaded",
                member=name,
            ))
        seen.add(name)
        reason = _unsafe_member_reason(name)
        if reason is not None:
            issues.add(ArtifactIssue(
                PATH_RULE, f"keras-zip:member-path:{name}", "Archive member escapes its folder",
                f"archive member {name!r} {reason}: extracted, it is written outside the "
                "folder it is extracted into",
                Severity.CRITICAL, member=name, evidence={"member": name, "reason": reason},
            ))


def _unsafe_member_reason(name: str) -> str | None:
    if "\x00" in name:
        return "contains a NUL character"
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return "is an absolute path"
    parts = re.split(r"[/\\]", name)
    if ".." in parts:
        return "contains a '..' component"
    return None


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, issues: IssueCollector
) -> str | None:
    name = info.filename
    if info.file_size > MAX_JSON_HEADER_BYTES:
        issues.add(_malformed(
            f"keras-zip:oversized:{name}", f"{name} is too large",
            f"{name} declares {info.file_size} bytes, more than the "
            f"{MAX_JSON_HEADER_BYTES} bytes a model config may take",
            member=name, evidence={"bytes": info.file_size},
        ))
        return None
    try:
        with archive.open(info) as stream:
            data = stream.read(MAX_JSON_HEADER_BYTES + 1)
    except Exception as error:  # BadZipFile, zlib.error, lzma/bz2 errors, RuntimeError: no base
        issues.add(_malformed(f"keras-zip:unreadable-member:{name}", f"{name} cannot be read",
                              f"{name} could not be decompressed: {_first_line(error)}",
                              member=name))
        return None
    if len(data) > MAX_JSON_HEADER_BYTES:
        issues.add(_malformed(
            f"keras-zip:oversized:{name}", f"{name} is too large",
            f"{name} decompresses to more than {MAX_JSON_HEADER_BYTES} bytes", member=name,
        ))
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        issues.add(_malformed(f"keras-json:not-utf8:{name}", f"{name} is not UTF-8 text",
                              f"{name} is not valid UTF-8: {error}", member=name))
        return None


def _keras_version(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo],
                   issues: IssueCollector) -> str | None:
    metadata = [info for info in infos if info.filename == METADATA_MEMBER]
    if not metadata:
        return None
    text = _read_member(archive, metadata[-1], issues)
    if text is None:
        return None
    parsed = _parse_json(text, METADATA_MEMBER, issues, member=METADATA_MEMBER)
    if isinstance(parsed, dict):
        version = parsed.get("keras_version")
        if isinstance(version, str):
            return version[:64]
    return None


def _scan_zipped_weights(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], folder: Path,
                         issues: IssueCollector) -> None:
    """Walk the link tree of a stored (uncompressed) model.weights.h5, when h5py is present."""
    weights = [info for info in infos if info.filename == WEIGHTS_MEMBER]
    if not weights or weights[-1].compress_type != zipfile.ZIP_STORED:
        return
    try:
        import h5py
    except ImportError:  # the weights' links are only checked where h5py is installed
        return
    try:
        with archive.open(weights[-1]) as stream, h5py.File(stream, "r") as handle:
            _scan_hdf5_links(handle, folder, issues, member=WEIGHTS_MEMBER)
    except Exception as error:  # libhdf5 and the zip stream raise many unrelated types
        issues.add(_malformed(
            "keras-zip:weights-unreadable", "model.weights.h5 is not readable HDF5",
            f"model.weights.h5 could not be opened as HDF5: {_first_line(error)}",
            member=WEIGHTS_MEMBER,
        ))


# ============================================================================================
# HDF5


def _get_attr(attrs: Any, name: str) -> object:
    if name not in attrs:
        return None
    value: object = attrs[name]
    return value


def _attr_text(value: object) -> str | None:
    if value is None:
        return None
    if hasattr(value, "tolist") and not isinstance(value, (bytes, str)):
        value = value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")[:64]
    if isinstance(value, str):
        return value[:64]
    return None


def _scan_config_attr(raw: object, label: str, issues: IssueCollector,
                      prefix: tuple[str | int, ...]) -> None:
    if hasattr(raw, "tolist") and not isinstance(raw, (bytes, str)):
        raw = raw.tolist()
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    if isinstance(raw, bytes):
        if len(raw) > MAX_JSON_HEADER_BYTES:
            issues.add(_malformed(f"keras-h5:oversized:{label}", f"{label} is too large",
                                  f"the {label} attribute holds {len(raw)} bytes"))
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            issues.add(_malformed(f"keras-json:not-utf8:{label}", f"{label} is not UTF-8",
                                  f"the {label} attribute is not valid UTF-8: {error}"))
            return
    elif isinstance(raw, str):
        text = raw
        try:  # h5py decodes stored bytes with surrogateescape: undecodable bytes survive
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            issues.add(_malformed(f"keras-json:not-utf8:{label}", f"{label} is not UTF-8",
                                  f"the {label} attribute is not valid UTF-8: {error}"))
            return
    else:
        issues.add(_malformed(f"keras-h5:bad-attribute:{label}", f"{label} is not JSON text",
                              f"the {label} attribute is a {type(raw).__name__}, not JSON text"))
        return
    if len(text) > MAX_JSON_HEADER_BYTES:
        issues.add(_malformed(f"keras-h5:oversized:{label}", f"{label} is too large",
                              f"the {label} attribute holds {len(text)} characters"))
        return
    config = _parse_json(text, label, issues, member=None)
    if config is not None:
        _walk_config(config, issues, member=None, prefix=prefix)


def _scan_hdf5_links(handle: Any, folder: Path, issues: IssueCollector, member: str | None) -> None:
    """Report external links, external storage and virtual-dataset sources naming other files."""
    import h5py

    visited: set[object] = set()
    stack: list[tuple[Any, str]] = [(handle, "")]
    objects = 0
    while stack:
        group, prefix = stack.pop()
        for name in list(group.keys()):
            objects += 1
            if objects > MAX_HDF5_OBJECTS:
                issues.add(_malformed(
                    "keras-h5:too-many-objects", "Too many HDF5 objects",
                    f"the HDF5 file holds more than {MAX_HDF5_OBJECTS} objects; the rest "
                    "were not checked for links to other files", member=member,
                ))
                return
            where = f"{prefix}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                _external_file(str(link.filename), where, "external link", folder, issues,
                               member=member)
                continue
            if isinstance(link, h5py.SoftLink):
                continue
            item = group.get(name)
            if item is None:
                continue
            identity = item.id
            if identity in visited:
                continue
            visited.add(identity)
            if isinstance(item, h5py.Group):
                stack.append((item, where))
            elif isinstance(item, h5py.Dataset):
                for entry in item.external or ():
                    _external_file(_text(entry[0]), where, "external storage", folder, issues,
                                   member=member)
                if item.is_virtual:
                    for source in item.virtual_sources():
                        if source.file_name != ".":
                            _external_file(str(source.file_name), where,
                                           "virtual dataset source", folder, issues,
                                           member=member)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _external_file(name: str, where: str, kind: str, folder: Path, issues: IssueCollector, *,
                   member: str | None) -> None:
    reason = escape_reason(name, folder)
    evidence: dict[str, JsonValue] = {"file": name, "object": where, "kind": kind}
    if reason is not None:
        evidence["reason"] = reason
        issues.add(ArtifactIssue(
            PATH_RULE, f"keras-h5:external-escape:{where}", "HDF5 object reads a file outside "
            "the model's folder",
            f"HDF5 {kind} {where!r} reads {name!r}, which {reason}", Severity.CRITICAL,
            member, where, evidence,
        ))
        return
    issues.add(ArtifactIssue(
        PATH_RULE, f"keras-h5:external-file:{where}", "HDF5 object reads another file",
        f"HDF5 {kind} {where!r} reads its data from {name!r}; a model file should be "
        "self-contained", Severity.MEDIUM, member, where, evidence,
    ))


# ============================================================================================
# Config JSON


def _parse_json(text: str, label: str, issues: IssueCollector, member: str | None) -> object | None:
    try:
        value: object = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as error:
        issues.add(_malformed(f"keras-json:invalid:{label}", f"{label} is not valid JSON",
                              f"{label} does not parse as JSON: {_first_line(error)}",
                              member=member))
        return None
    if label != METADATA_MEMBER and not isinstance(value, dict):
        issues.add(_malformed(f"keras-json:not-object:{label}", f"{label} is not a JSON object",
                              f"{label} holds a {type(value).__name__}, not a model config",
                              member=member))
        return None
    return value


@dataclass(frozen=True)
class _Where:
    """Where a value sits: the chain of layers down to it, then the fields inside the last."""

    layers: tuple[tuple[str, str], ...] = ()  # (pointer segment, name used in keys)
    fields: tuple[str | int, ...] = ()

    def into_layer(self, segment: str, name: str) -> _Where:
        return _Where((*self.layers, (segment, name)), ())

    def into_field(self, field: str | int) -> _Where:
        return _Where(self.layers, (*self.fields, field))

    @property
    def field_text(self) -> str:
        text = ""
        for field in self.fields:
            if isinstance(field, int):
                text += f"[{field}]"
            elif field != "config":  # the Keras object wrapper adds nothing a reader needs
                text += f".{field}" if text else field
        return text

    def pointer(self, *, omit_field: bool = False) -> str:
        chain = " > ".join(segment for segment, _ in self.layers)
        field = "" if omit_field else self.field_text
        if chain and field:
            return f"{chain} > {field}"
        return chain or field or "model"

    def key(self, kind: str) -> str:
        names = "/".join(name for _, name in self.layers) or "model"
        field = self.field_text
        return f"{kind}:{names}" + (f".{field}" if field else "")


def _walk_config(config: object, issues: IssueCollector, member: str | None,
                 prefix: tuple[str | int, ...] = ()) -> None:
    """Walk the whole config, depth-first with an explicit stack, checking every Keras object."""
    stack: list[tuple[object, _Where, int, int]] = [(config, _Where((), prefix), 0, 0)]
    too_deep = False
    while stack:
        value, where, depth, layer_depth = stack.pop()
        if depth > MAX_CONFIG_DEPTH or layer_depth > MAX_LAYER_DEPTH:
            if not too_deep:
                too_deep = True
                what = "JSON" if depth > MAX_CONFIG_DEPTH else "layer"
                issues.add(_malformed(
                    "keras-config:too-deep", "Model config nested too deep",
                    f"the config's {what} nesting goes past the scanner's cap "
                    f"({MAX_CONFIG_DEPTH} JSON levels, {MAX_LAYER_DEPTH} nested models); "
                    "what lies deeper was not checked", member=member, pointer=where.pointer(),
                ))
            continue
        if isinstance(value, dict):
            if isinstance(value.get("class_name"), str):
                _check_object(value, where, issues, member)
            for child_key, child in reversed(list(value.items())):
                stack.extend(_children(child_key, child, where, depth, layer_depth))
        elif isinstance(value, list):
            for index in range(len(value) - 1, -1, -1):
                stack.append((value[index], where.into_field(index), depth + 1, layer_depth))


def _children(key: str, child: object, where: _Where, depth: int,
              layer_depth: int) -> Iterator[tuple[object, _Where, int, int]]:
    if key == "layers" and isinstance(child, list):
        for index in range(len(child) - 1, -1, -1):
            item = child[index]
            if _is_keras_object(item):
                name = _layer_name(item) or f"layers[{index}]"
                segment = f"layers[{index}]" + _named(item)
                yield item, where.into_layer(segment, name), depth + 2, layer_depth + 1
            else:
                yield item, where.into_field("layers").into_field(index), depth + 2, layer_depth
        return
    if key in _LAYER_KEYS and _is_keras_object(child):
        name = _layer_name(child) or key
        yield child, where.into_layer(key + _named(child), name), depth + 1, layer_depth + 1
        return
    yield child, where.into_field(key), depth + 1, layer_depth


def _is_keras_object(value: object) -> bool:
    return isinstance(value, dict) and isinstance(value.get("class_name"), str)


def _layer_name(layer: Any) -> str | None:
    config = layer.get("config")
    name = config.get("name") if isinstance(config, dict) else None
    if not isinstance(name, str):
        name = layer.get("name")
    return name[:200] if isinstance(name, str) else None


def _named(layer: Any) -> str:
    name = _layer_name(layer)
    return f" (name {name!r})" if name is not None else ""


def _check_object(obj: dict[str, Any], where: _Where, issues: IssueCollector,
                  member: str | None) -> None:
    class_name: str = obj["class_name"]
    config = obj.get("config")
    if class_name == "__lambda__":
        _report_bytecode(_lambda_code(config), where, issues, member, form="Keras 3 __lambda__")
    elif class_name == "Lambda" and isinstance(config, dict):
        _check_legacy_lambda(config, where, issues, member)
    elif class_name in _TF_OP_LAMBDAS:
        _report_tf_op_lambda(class_name, config, where, issues, member)
    module = obj.get("module")
    if isinstance(module, str):
        if module.split(".")[0] not in KERAS_PACKAGES:
            _report_custom_module(module, class_name, config, where, issues, member=member)
        elif class_name == "function" and isinstance(config, str):
            qualified = f"{module}.{config}"
            if _matches(qualified, _DANGEROUS_KERAS_FUNCTIONS):
                issues.add(ArtifactIssue(
                    CODE_RULE, where.key("keras-function"), "Config calls a risky Keras function",
                    f"the config refers to {qualified}, which Keras calls while it rebuilds "
                    "the model (as a Lambda's function, say); it can turn safe mode off, "
                    "fetch or write files, or load another model",
                    Severity.HIGH, member, where.pointer(), {"function": qualified},
                ))


def _lambda_code(config: object) -> object:
    if not isinstance(config, dict):
        return None
    if "code" in config:  # Lambda layer: {"code": ..., "defaults": ..., "closure": ...}
        return config["code"]
    return config.get("value")  # any other lambda: {"value": [code, defaults, closure]}


def _check_legacy_lambda(config: dict[str, Any], where: _Where, issues: IssueCollector,
                         member: str | None) -> None:
    """tf.keras 2 and older Lambda layers keep bytecode (or a function name) in the config.

    tf.keras 2 says which with ``function_type``; older Keras versions wrote no type and
    ``func_load``-ed any string or ``[code, defaults, closure]`` list as marshalled bytecode
    (base64, or raw before Keras 2.1.2). So a code-shaped value counts as code unless its type
    says it is a function name (``function``) or plain data (``raw``).
    """
    for field, type_field in (("function", "function_type"), ("output_shape",
                                                                "output_shape_type")):
        value = config.get(field)
        if isinstance(value, dict):
            continue  # Keras 3 form: the __lambda__ object is checked on its own
        kind = config.get(type_field)
        field_where = where.into_field(field)
        if kind == "lambda":
            _report_bytecode(value, field_where, issues, member, form="tf.keras 2 Lambda")
        elif kind not in ("function", "raw") and _code_shaped(value):
            form = "Lambda without function_type" if kind is None else f"Lambda of type {kind!r}"
            _report_bytecode(value, field_where, issues, member, form=f"legacy Keras {form}")
        elif field == "function" and kind == "function" and isinstance(value, str):
            module = config.get("module")
            qualified = f"{module}.{value}" if isinstance(module, str) else value
            issues.add(ArtifactIssue(
                CODE_RULE, where.key("keras-lambda-function"), "Lambda layer calls a named "
                "function",
                f"Lambda layer calls the Python function {qualified!r}, looked up by name "
                "when the model is loaded", Severity.MEDIUM, member, where.pointer(),
                {"function": qualified[:300]},
            ))


def _code_shaped(value: object) -> bool:
    """A string, or a list led by one: what Keras's ``func_load`` unmarshals."""
    return isinstance(value, str) or (
        isinstance(value, list) and bool(value) and isinstance(value[0], str)
    )


def _report_bytecode(code: object, where: _Where, issues: IssueCollector, member: str | None,
                     *, form: str) -> None:
    evidence = _bytecode_evidence(code)
    evidence["format"] = form
    in_lambda = where.fields in (("config", "function"), ("function",))
    owner = "Lambda layer" if in_lambda else "config value"
    issues.add(ArtifactIssue(
        CODE_RULE, where.key("keras-lambda"), "Keras config holds Python bytecode",
        f"{owner} at {where.pointer()} holds a marshalled Python function; Keras runs it when "
        "the model is loaded with safe_mode=False (or unsafe deserialization enabled, or by a "
        "Keras version without safe mode)",
        Severity.HIGH, member, where.pointer(omit_field=in_lambda), evidence,
    ))


def _bytecode_evidence(code: object) -> dict[str, JsonValue]:
    if isinstance(code, list) and code:
        code = code[0]
    if not isinstance(code, str):
        return {"code_type": type(code).__name__}
    try:
        raw = base64.b64decode(code.encode("ascii", "ignore"))
    except (binascii.Error, ValueError):
        return {"code_base64_chars": len(code), "decodes": False}
    # Printable names in the marshalled bytes (co_names, constants): a hint for the reader.
    names: list[JsonValue] = list(
        dict.fromkeys(m.decode("ascii") for m in _IDENTIFIER.findall(raw))
    )
    return {
        "code_bytes": len(raw),
        "code_sha256": hashlib.sha256(raw).hexdigest(),
        "strings": names[:_MAX_CODE_NAMES],
    }


def _report_tf_op_lambda(class_name: str, config: object, where: _Where, issues: IssueCollector,
                         member: str | None) -> None:
    function = config.get("function") if isinstance(config, dict) else None
    name = function if isinstance(function, str) else None
    risky = name is not None and _matches(name, _DANGEROUS_TF_FUNCTIONS)
    issues.add(ArtifactIssue(
        CODE_RULE, where.key("keras-tf-op"), f"{class_name} layer calls a TensorFlow function",
        f"{class_name} layer calls tf.{name or '?'}, named in the file"
        + ("; that function reaches files, Python callbacks or native code" if risky else ""),
        Severity.HIGH if risky else Severity.MEDIUM, member, where.pointer(),
        {"function": (name or "")[:300]},
    ))


def _report_custom_module(module: str, class_name: str, config: object, where: _Where,
                          issues: IssueCollector, *, member: str | None) -> None:
    attribute = config if class_name == "function" and isinstance(config, str) else class_name
    verdict = classify(module, attribute)
    dangerous = verdict.verdict is Verdict.DANGEROUS
    issues.add(ArtifactIssue(
        CODE_RULE, where.key("keras-module") + f"={module}",
        "Config imports a module outside Keras",
        f"{class_name} at {where.pointer()} names module {module!r}: Keras imports that module "
        f"and takes {attribute!r} from it when the model is loaded"
        + (f" ({verdict.reason})" if dangerous else ""),
        Severity.HIGH if dangerous else Severity.MEDIUM, member, where.pointer(),
        {"module": module[:300], "name": attribute[:300], "class_name": class_name[:300]},
    ))


def _matches(name: str, prefixes: Iterable[str]) -> bool:
    """``name`` equals a prefix or lies under it (prefixes ending in '.' only match below)."""
    return any(
        name.startswith(p) if p.endswith(".") else name == p or name.startswith(p + ".")
        for p in prefixes
    )
