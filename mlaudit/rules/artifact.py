"""MLA1xx: artifact safety, read from the model file's bytes without loading it."""

from __future__ import annotations

from collections.abc import Iterator

from mlaudit.core.findings import Confidence, Family, Finding, Location, Severity
from mlaudit.rules.base import Requirement, Rule, RuleContext, RuleMeta
from mlaudit.rules.controls import SUPPLY_CHAIN
from mlaudit.scanners.inventory import ImportedName
from mlaudit.scanners.pickle_policy import Verdict
from mlaudit.scanners.sniff import ModelFormat


def issue_findings(ctx: RuleContext) -> Iterator[Finding]:
    """Findings for the structural issues that format scanners filed under this rule's id."""
    for issue in ctx.subject.model.inventory.issues_for(ctx.meta.id):
        pointer = _pointer(issue.member, issue.pointer) if issue.pointer else issue.member
        yield ctx.finding(
            key=issue.key,
            title=issue.title,
            message=issue.message,
            severity=issue.severity,
            location=Location(ctx.subject.model.reference, pointer=pointer),
            evidence={"member": issue.member, **dict(issue.evidence)},
        )
_MAX_OFFSETS = 20
# An import whose name is only known at load time is as bad as a dangerous one; bytes the
# scanner could not walk are unverified rather than known-bad.
_PROBLEM_SEVERITY = {
    "dynamic-import": Severity.CRITICAL,
    "extension-import": Severity.CRITICAL,
    # A numpy dtype whose object flags disagree with its fields forges object pointers.
    "unsafe-dtype": Severity.CRITICAL,
}


def _pointer(member: str | None, pointer: str) -> str:
    return f"{member} {pointer}" if member else pointer


def _location(ctx: RuleContext, imported: ImportedName) -> Location:
    first = imported.offsets[0] if imported.offsets else -1
    pointer = f"offset {first}" if first >= 0 else f"type {imported.qualified_name}"
    return Location(ctx.subject.model.reference, pointer=_pointer(imported.member, pointer))


def _key(imported: ImportedName) -> str:
    return f"{imported.member}:{imported.qualified_name}" if imported.member else (
        imported.qualified_name
    )


def _evidence(imported: ImportedName) -> dict[str, object]:
    offsets = [o for o in imported.offsets if o >= 0]
    return {
        "import": imported.qualified_name,
        "member": imported.member,
        "opcode": imported.opcode,
        "offsets": offsets[:_MAX_OFFSETS],
        "occurrences": len(imported.offsets),
        "reason": imported.classification.reason,
    }


def _record_inventory_metrics(ctx: RuleContext) -> None:
    inventory = ctx.subject.model.inventory
    ctx.metrics["imports"] = len(inventory.names)
    scans = [embedded.scan for embedded in inventory.pickles]
    if scans:
        ctx.metrics["pickle_streams"] = len(scans)
        ctx.metrics["pickles"] = sum(scan.pickles for scan in scans)
        ctx.metrics["protocol"] = max(scan.protocol for scan in scans)
        ctx.metrics["joblib_arrays"] = sum(scan.joblib_arrays for scan in scans)


class DangerousPickleImports(Rule):
    """Dangerous imports in a pickle-based model file.

    **What it checks**: walks every opcode of every pickle in the file (protocols 0-5,
    ``GLOBAL``, ``STACK_GLOBAL`` with names fetched from the memo, ``INST``/``OBJ``/``REDUCE``,
    consecutive pickles, joblib's embedded arrays and nested object-array pickles) and reports
    each imported global that can run code, start processes, or reach files, the network or
    the interpreter's internals: ``os.system``, ``subprocess.Popen``, ``builtins.eval``,
    ``builtins.getattr``, ``pickle.loads``, ``timeit.timeit``, attribute walks through
    ``__globals__``, and the like. Imports the scanner cannot resolve without running the file
    (computed ``STACK_GLOBAL`` operands, copyreg extension codes) and bytes after the last
    pickle that do not parse are reported too. Nothing is unpickled.

    *Advisory and peer deny lists.* Functions that run code from inside ordinary packages
    (``torch.utils.bottleneck``, ``torch._dynamo.guards``, ``torch.fx`` guard evaluation,
    ``torch.jit`` ``execWrapper``, ``torch._inductor.codecache``, ``lib2to3``, ``_osx_support``,
    ``imaplib``, ``test.support``, ``aiohttp``...) were reported only as MLA102 (then medium),
    so a CI job running the artifact rules passed. The known-dangerous list now holds every
    module named in published advisories and in picklescan's, modelscan's, fickling's and
    ModelAudit's deny lists, each group with its source.

    *Malformed after a payload.* A pickle that imports something dangerous and then breaks (a
    bad opcode, an unwritten memo key) was "not a valid pickle", exit 2 with no report, though
    the real unpickler had already imported the name. Imports seen before the break are now
    reported here, with the report written and exit 1.

    **Why it matters**: unpickling calls whatever the file names, with arguments of the file's
    choosing. A model downloaded from a hub or passed between teams can run arbitrary code the
    moment anyone loads it, including inside the audit tool itself. This rule runs before
    anything is loaded, and the load gate refuses to load a file it flags.

    **How to fix**: do not load the file. Obtain the model from its original source, retrain
    it, or export it to a format that carries no code (ONNX, skops, safetensors). If you wrote
    the file yourself and the import is expected, find out why: a custom class that reduces to
    ``eval`` is a vulnerability even when it is yours.

    **Options**: none. The list of dangerous modules is part of mlaudit and is reviewed with it.
    """

    meta = RuleMeta(
        id="MLA101",
        name="Dangerous imports in a pickle",
        family=Family.ARTIFACT,
        severity=Severity.CRITICAL,
        requires=frozenset({Requirement.ARTIFACT}),
        controls=SUPPLY_CHAIN,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        _record_inventory_metrics(ctx)
        inventory = ctx.subject.model.inventory
        for imported in inventory.with_verdict(Verdict.DANGEROUS):
            yield ctx.finding(
                key=_key(imported),
                title=f"Imports {imported.qualified_name}",
                message=f"loading this file imports {imported.qualified_name}: "
                f"{imported.classification.reason}",
                location=_location(ctx, imported),
                evidence=_evidence(imported),  # type: ignore[arg-type]
                cwe=("CWE-502",),
            )
        for located in inventory.problems:
            problem = located.problem
            member = located.member
            yield ctx.finding(
                key=f"{member}:{problem.kind}" if member else problem.kind,
                title=f"Unverifiable pickle content ({problem.kind})",
                message=problem.message,
                severity=_PROBLEM_SEVERITY.get(problem.kind, Severity.HIGH),
                confidence=Confidence.MEDIUM,
                location=Location(
                    ctx.subject.model.reference,
                    pointer=_pointer(member, f"offset {problem.offset}"),
                ),
                evidence={"kind": problem.kind, "offset": problem.offset, "member": member},
                cwe=("CWE-502",),
            )
        yield from issue_findings(ctx)


class UnlistedPickleImports(Rule):
    """Imports outside the allowlist of known-safe globals.

    **What it checks**: every global the model file would import (pickle and joblib opcodes;
    the types a skops file asks to be trusted) is compared with an allowlist of exact
    ``module.qualname`` entries: scikit-learn estimators and their helper classes, and the few
    numpy, scipy, joblib and builtin reconstruction functions such files need. Anything else
    that is not already reported as dangerous by MLA101 is reported here.

    *Default-deny, at the gate's severity.* The load gate refuses every file with an import
    outside the allowlist, but this rule reported such imports as medium, so a CI job running
    only ``--select MLA1`` exited 0 on files the gate refused. It is now high: whatever the
    gate refuses fails such a job too.

    *Users' own classes.* A class defined in the script that saved the file
    (``__main__.DivideColumns`` in a skops pipeline) was reported as MLA101 critical, because
    ``__main__`` was a dangerous module. It is now MLA102 with the exact ``allow_globals``
    line to add; walks through ``__main__`` to ``os``, ``eval`` or dunders stay MLA101.

    **Why it matters**: denylists are always incomplete. Functions that execute a code string
    hide in ordinary packages (``timeit.timeit``, ``cProfile.run``, numpy's test helpers), and
    scanners that only look for ``os.system`` have been bypassed this way again and again. An
    import nobody has reviewed may be harmless or may be the payload: the load gate does not
    load the file until someone decides.

    **How to fix**: if the import is your own code or a library you trust (a custom
    transformer, an XGBoost booster), add its exact name to ``allow_globals`` in the
    ``[tool.mlaudit]`` configuration, with a comment saying why; never a whole module. Or pass
    ``--trust-model`` for a one-off run, which the report records. Better still, save the model
    with skops or ONNX.

    **Options**: ``allow_globals`` (top-level setting, list of ``module.qualname``) extends the
    allowlist for this project.
    """

    meta = RuleMeta(
        id="MLA102",
        name="Imports outside the allowlist",
        family=Family.ARTIFACT,
        severity=Severity.HIGH,
        requires=frozenset({Requirement.ARTIFACT}),
        controls=SUPPLY_CHAIN,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        _record_inventory_metrics(ctx)
        for imported in ctx.subject.model.inventory.with_verdict(Verdict.UNLISTED):
            name = imported.qualified_name
            yield ctx.finding(
                key=_key(imported),
                title=f"Imports {name}, which is not on the allowlist",
                message=f"loading this file imports {name} ({imported.classification.reason}); "
                "the load gate will not load the file. If it is your own reviewed code, add "
                f'allow_globals = ["{name}"] to [tool.mlaudit]',
                location=_location(ctx, imported),
                confidence=Confidence.MEDIUM,
                evidence=_evidence(imported),  # type: ignore[arg-type]
                cwe=("CWE-502",),
            )


class _StructuralIssueRule(Rule):
    """Base for rules whose findings are the structural issues format scanners filed."""

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        ctx.metrics["format"] = ctx.subject.model.inventory.format_detail
        yield from issue_findings(ctx)


class ArchiveTricks(_StructuralIssueRule):
    """Archive and path tricks in zip- and tar-based model files.

    **What it checks**: the directory of every zip and tar container mlaudit reads (PyTorch
    checkpoints, Keras ``.keras``, skops, NPZ, tar archives) and every path a model file
    refers to (ONNX external data): members whose names climb out of the extraction folder
    (``../``) or are absolute, symbolic and hard links, device files, decompression bombs (a
    compression ratio or an absolute size past mlaudit's caps), members whose declared size
    disagrees with their content, duplicate names where a later member shadows an earlier
    one, and more members than any model needs. Compressed joblib files are decompressed as a
    stream under the same caps.

    *Members read only by name.* Pickles in plain zip or tar members (``data.txt``,
    ``model/config.pkl``, members whose local header sets the encryption or patch flag bits
    0x1/0x20/0x40 while holding plain bytes) were never read, and 7z archives were unknown.
    Every member of every zip, tar (plain or gzip/bz2/xz) and 7z archive is now sniffed and
    scanned by its content, nested archives down to 4 levels (deeper is high); a member that
    is really encrypted is low, since no loader reads it without the password; a 7z file
    without ``mlaudit[7z]`` installed, or an encrypted 7z, is high, never clean.

    *Case folding.* torch's zip reader finds ``data.pkl`` comparing names with ASCII letters
    lower-cased, while mlaudit matched names exactly, so a ``DATA.PKL`` payload went unread.
    Names are now compared the way each real reader compares them, and names that collide
    after case folding are reported here as high. TensorFlow SavedModel assets that name a
    path outside ``assets/`` are critical.

    **Why it matters**: extracting such an archive writes outside the folder it was meant for
    (overwriting a shell profile or a Python module is code execution), fills the disk, or
    hides a second payload behind a name a reviewer already checked. Tools disagree on which
    of two duplicate names wins, so the member one tool inspected may not be the one another
    loads.

    **How to fix**: do not extract or load the file. Re-export the model from its source with
    the library's own save function; a legitimate checkpoint never needs these constructs.

    **Options**: none. The caps are part of mlaudit (32 GiB decompressed, ratio 200).
    """

    meta = RuleMeta(
        id="MLA103",
        name="Archive and path tricks",
        family=Family.ARTIFACT,
        severity=Severity.HIGH,
        requires=frozenset({Requirement.ARTIFACT}),
        controls=SUPPLY_CHAIN,
    )


class CodeCarryingLayers(_StructuralIssueRule):
    """Layers and operators that carry or call code.

    **What it checks**: reads the model's architecture statically, without importing Keras,
    TensorFlow or PyTorch: Keras ``Lambda`` layers (which hold marshalled Python bytecode)
    and other layers that name a Python module to import, in ``.keras`` archives and legacy
    HDF5 ``.h5`` files; ONNX nodes in operator domains that are neither standard nor defined
    inside the model (they need a native or Python custom-operator library); TorchScript code
    carried in PyTorch archives.

    *Legacy Keras Lambda without a type.* A Lambda layer whose ``function`` is a code string or
    a ``[code, defaults, closure]`` list with no ``function_type`` passed, because only
    ``"function_type": "lambda"`` was read as code; older Keras versions unmarshal such values
    whatever the type. Any code-shaped value not typed as a function name or raw data is now
    reported here as high.

    *TensorFlow SavedModels* were "unknown model format" (exit 2). Their protobuf is now read
    without TensorFlow: operators that call Python (``PyFunc``, ``PyFuncStateless``,
    ``EagerPyFunc``), read or write files (``ReadFile``, ``WriteFile``) or the network
    (``Rpc``) are high, other file readers medium; the save/restore operators every SavedModel
    carries are not reported.

    **Why it matters**: this code runs when the model is loaded or called, with the rights of
    whoever runs it. Keras refuses Lambda layers only in ``safe_mode``, which many loading
    scripts switch off; a custom ONNX domain means the model does nothing until someone
    registers a library of unknown provenance.

    **How to fix**: replace Lambda layers with built-in layers or registered, reviewed custom
    layers whose code ships in your package; export ONNX models with standard operators only.
    If the code is yours and reviewed, waive the finding with a reason.

    **Options**: none.
    """

    meta = RuleMeta(
        id="MLA104",
        name="Layers or operators that carry code",
        family=Family.ARTIFACT,
        severity=Severity.HIGH,
        requires=frozenset({Requirement.ARTIFACT}),
        controls=SUPPLY_CHAIN,
    )


class MalformedStructure(_StructuralIssueRule):
    """Malformed or inconsistent model file structure.

    **What it checks**: the structural rules of each format, checked by mlaudit's own parsers
    rather than the loading library's: safetensors headers (size, JSON, dtypes, shapes,
    offsets that overlap, run past the data or leave unreferenced bytes), NumPy ``.npy``
    headers, PyTorch archives without their pickle, ONNX protobufs that do not parse, Keras
    configurations that are not valid JSON, and embedded pickles that cannot be walked.

    *Boosting libraries' own formats.* XGBoost JSON and UBJSON models, LightGBM text models
    and CatBoost ``.cbm`` files are checked without their libraries: truncation, tree arrays
    whose lengths disagree, children outside the tree or reached twice, splits on features the
    model does not have, LightGBM ``tree_sizes`` that do not match the trees, a CatBoost core
    whose size or flatbuffer offsets run past the file, or bytes after it.

    *Polyglots.* A file valid as two formats (a pickle that is also a well-formed ONNX
    protobuf, a pickle in a tar header) was judged only as the harmless one. Every reading a
    loader could take is now scanned, and a file with two readings is reported here.

    *Pickle structural anomalies.* FRAME straddles, duplicate PROTO, TUPLE without MARK,
    impossible cycles and memo/DUP expansion are tricks that make parsers disagree; they
    passed unreported and are now reported here as high.

    *joblib layout desyncs.* The walker predicted where joblib's raw array bytes lie by
    partial evaluation; a protocol-4 FRAME, a wrapper built through ``functools.partial`` or
    REDUCE, or a computed key made opcodes joblib runs look like data. Any wrapper that is not
    a literal class with a literal state built by BUILD is now unscannable (MLA101, high).

    *Unsafe dtypes.* Allowlisted numpy constructors can pickle a dtype whose object fields
    lack numpy's object flag, so reading the loaded array dereferences pointers forged from
    the file. Such dtype states are now refused statically (MLA101, critical), and the loaders
    check every array of a loaded model before anything reads it.

    **Why it matters**: parsers disagree on malformed input. Bytes one tool ignores can be
    the payload another reads; a header that lies about sizes is how scanners are made to
    skip content and loaders made to crash or over-allocate.

    **How to fix**: re-export the file with the format's reference library. A file written by
    that library never has these defects.

    **Options**: none.
    """

    meta = RuleMeta(
        id="MLA107",
        name="Malformed model file structure",
        family=Family.ARTIFACT,
        severity=Severity.HIGH,
        requires=frozenset({Requirement.ARTIFACT}),
        controls=SUPPLY_CHAIN,
    )


_SAFER_FORMAT = {
    ModelFormat.PICKLE: "skops (scikit-learn) or ONNX",
    ModelFormat.JOBLIB: "skops (scikit-learn) or ONNX",
    ModelFormat.JOBLIB_COMPRESSED: "skops (scikit-learn) or ONNX",
    ModelFormat.PYTORCH: "safetensors for the weights, with the architecture in code",
    ModelFormat.PYTORCH_LEGACY: "safetensors for the weights, with the architecture in code",
}


# A pickle of a boosting library's model is best replaced by the library's own format.
_NATIVE_FORMAT = {
    "xgboost": 'XGBoost\'s own format: model.save_model("model.json") (or "model.ubj")',
    "lightgbm": 'LightGBM\'s own text format: model.booster_.save_model("model.txt")',
    "catboost": 'CatBoost\'s own format: model.save_model("model.cbm")',
}


def _safer_format(ctx: RuleContext, model_format: ModelFormat) -> str | None:
    """The safe format to recommend: the library's own for a pickled XGBoost, LightGBM or
    CatBoost model (read from what the pickle imports), else the format's general one."""
    safer = _SAFER_FORMAT.get(model_format)
    if safer is None:
        return None
    libraries = {name.module.partition(".")[0] for name in ctx.subject.model.inventory.names}
    native = [_NATIVE_FORMAT[library] for library in sorted(libraries & _NATIVE_FORMAT.keys())]
    return " or ".join(native) if native else safer


class PickleWhereSafeWouldServe(Rule):
    """A pickle-based format where a format without code would serve.

    **What it checks**: whether the model is stored in a pickle-based format (pickle, joblib,
    PyTorch checkpoints, NumPy object arrays) although a format that cannot carry code exists
    for it: skops or ONNX for scikit-learn models, the library's own format for XGBoost
    (``.json``/``.ubj``), LightGBM (``.txt``) and CatBoost (``.cbm``) models, whose files
    mlaudit scans, loads and audits like any other, safetensors for PyTorch weights. In model
    folders: MLflow flavours serialised with pickle or cloudpickle, and Hugging Face pickle
    weights (``pytorch_model.bin``) shipped next to safetensors copies that loaders may pass
    over.

    **Why it matters**: every consumer of a pickle-based file must trust it completely or
    scan it as mlaudit does; most loading code does neither. Publishing in a safe format
    removes the whole class of attack for everyone downstream.

    **How to fix**: save scikit-learn models with ``skops.io.dump`` or convert them with
    ``skl2onnx``; XGBoost models with ``model.save_model("model.json")``, LightGBM models with
    ``model.booster_.save_model("model.txt")``, CatBoost models with
    ``model.save_model("model.cbm")``; save PyTorch weights with
    ``safetensors.torch.save_file`` and keep the architecture in code.

    **Options**: none.
    """

    meta = RuleMeta(
        id="MLA105",
        name="Pickle-based format where a safe one would serve",
        family=Family.ARTIFACT,
        severity=Severity.LOW,
        requires=frozenset({Requirement.ARTIFACT}),
        controls=SUPPLY_CHAIN,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        model_format = ctx.subject.model.format
        ctx.metrics["format"] = model_format.value
        yield from issue_findings(ctx)
        safer = _safer_format(ctx, model_format)
        if safer is None:
            return
        yield ctx.finding(
            key=model_format.value,
            title=f"Stored as {model_format.value}, a format that can carry code",
            message=f"this model is stored as {model_format.value}, which runs code when "
            f"loaded; {safer} would carry the same model without that risk",
            location=Location(ctx.subject.model.reference),
            evidence={"format": model_format.value, "safer_formats": safer},
            cwe=("CWE-502",),
        )


class RemoteCode(_StructuralIssueRule):
    """Model folders that need remote code.

    **What it checks**: Hugging Face model folders whose ``config.json`` has an ``auto_map``
    (the model's classes live in Python files that ``transformers`` imports when called with
    ``trust_remote_code=True``), and folders that ship Python files at all.

    **Why it matters**: ``trust_remote_code=True`` imports and runs those files with the
    loader's rights; a model update can change them silently, and they are rarely reviewed
    like the code of a dependency.

    **How to fix**: use an architecture that ships with ``transformers``, or vendor the
    model's code into your own reviewed package and load it from there with a pinned
    revision.

    **Options**: none.
    """

    meta = RuleMeta(
        id="MLA106",
        name="Remote code in a model folder",
        family=Family.ARTIFACT,
        severity=Severity.HIGH,
        requires=frozenset({Requirement.ARTIFACT}),
        controls=SUPPLY_CHAIN,
    )
