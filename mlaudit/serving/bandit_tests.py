"""mlaudit's serving checks as bandit tests (MLA802): how a model endpoint is exposed.

Each check is a bandit test registered under bandit's ``bandit.plugins`` entry-point group
(``pyproject.toml``), so a plain ``bandit -r src/`` runs them once mlaudit is installed, and
``# nosec MLS01`` silences one line. The ids start with ``MLS`` (mlaudit, serving) so they
never collide with bandit's ``B`` tests or MLA502's ``ML`` tests.

- ``MLS01`` a model endpoint with no sign of authentication;
- ``MLS02`` debug mode or auto-reload in the serving code;
- ``MLS03`` a server bound to every interface without TLS;
- ``MLS04`` a model file loaded inside a request handler (once per request);
- ``MLS05`` request bodies without a size limit.

What an endpoint is, per framework, is :mod:`mlaudit.serving.endpoints`'s business. These are
syntax checks: nothing is imported, no framework needs to be installed.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from typing import Any

from mlaudit.serving.endpoints import (
    FLASK,
    KSERVE,
    MLFLOW,
    Endpoint,
    authenticated,
    calls_model,
    enclosing_function,
    is_true,
    keyword,
    module_of,
    serving_module,
)

# bandit's Context in, a bandit.Issue or None out (bandit ships no type information).
Check = Callable[[Any], Any]

# test id -> test name, in registration order: the tests MLA802 reports.
SERVING_TESTS: dict[str, str] = {}

HIGH, MEDIUM, LOW = "HIGH", "MEDIUM", "LOW"  # bandit's severity and confidence names
_CWE_MISSING_AUTHENTICATION = 306
_CWE_ACTIVE_DEBUG_CODE = 489
_CWE_CLEARTEXT_TRANSMISSION = 319
_CWE_RESOURCE_CONSUMPTION = 400
_CWE_ALLOCATION_WITHOUT_LIMITS = 770
_FUNCTIONS = ("FunctionDef", "AsyncFunctionDef")


def _serving_test(test_id: str, checks: Sequence[str]) -> Callable[[Check], Check]:
    """bandit's ``@checks(...)`` and ``@test_id(...)``, as attributes: importing bandit from a
    module bandit itself loads as a plugin would be circular (see :mod:`mlaudit.code.plugin`)."""

    def register(function: Check) -> Check:
        SERVING_TESTS[test_id] = function.__name__
        function._checks = list(checks)  # type: ignore[attr-defined]
        function._test_id = test_id  # type: ignore[attr-defined]
        return function

    return register


def registered_with_bandit() -> bool:
    """Whether bandit found these tests through its entry points (ask once bandit is loaded)."""
    from bandit.core import extension_loader

    return set(SERVING_TESTS) <= set(extension_loader.MANAGER.plugins_by_id)


def _issue(severity: str, confidence: str, cwe: int, text: str) -> Any:
    from bandit.core.issue import Issue

    return Issue(severity=severity, confidence=confidence, cwe=cwe, text=text)


def _endpoint(context: Any) -> Endpoint | None:
    node = context.node
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    return serving_module(node).endpoint(node)


@_serving_test("MLS01", _FUNCTIONS)
def serving_endpoint_without_auth(context: Any) -> Any:
    """A route that runs a model and shows no authentication, nor does the application."""
    endpoint = _endpoint(context)
    # An MLflow model has no code path a request passes through before predict: who may call
    # it is decided where it is deployed, so there is nothing in the code to report.
    if endpoint is None or endpoint.framework == MLFLOW or authenticated(endpoint):
        return None
    module = serving_module(endpoint.function)
    if module.authenticates_every_request:
        return None
    served = endpoint.decorator is None  # KServe: the framework's server exposes it
    if not served and not calls_model(endpoint.function):
        return None
    text = (
        f"{endpoint.framework} endpoint {endpoint.function.name}() serves model predictions with "
        "no authentication in its route, parameters or body and no authenticating middleware: "
        "anyone who reaches it can query (and extract) the model"
    )
    if served:
        text += "; put the server behind an authenticating gateway or ingress"
    return _issue(MEDIUM, LOW if served else MEDIUM, _CWE_MISSING_AUTHENTICATION, text)


# Servers and applications that take a debug or reload flag: their name as called, the flag,
# severity. The Werkzeug debugger behind Flask's debug mode runs Python typed into a browser.
_DEBUG_FLAGS = (
    ("uvicorn.run", "reload", LOW),
    ("uvicorn.Config", "reload", LOW),
    ("uvicorn.run", "debug", MEDIUM),
    ("fastapi.FastAPI", "debug", MEDIUM),
    ("starlette.applications.Starlette", "debug", MEDIUM),
    ("bentoml.serve", "reload", LOW),
    ("bentoml.serve", "development_mode", LOW),
)
_WEB_PACKAGES = ("flask", "quart", "fastapi", "starlette", "bentoml", "dash", "gradio")


@_serving_test("MLS02", ("Call", "Assign"))
def serving_debug_mode(context: Any) -> Any:
    """Debug mode or auto-reload: ``app.run(debug=True)``, ``uvicorn.run(reload=True)``,
    ``FastAPI(debug=True)``, ``app.debug = True``, ``app.config["DEBUG"] = True``."""
    node = context.node
    module = serving_module(node)
    if isinstance(node, ast.Assign):
        if not (is_true(node.value) and module.web_framework == FLASK):
            return None
        if any(_is_debug_target(target) for target in node.targets):
            text = "Flask debug mode switched on: the Werkzeug debugger runs code sent to it"
            return _issue(HIGH, MEDIUM, _CWE_ACTIVE_DEBUG_CODE, text)
        return None
    if not isinstance(node, ast.Call):
        return None
    name = module.qualified(node.func) or ""
    for callee, flag, severity in _DEBUG_FLAGS:
        if name == callee and is_true(keyword(node, flag)):
            text = f"{name}({flag}=True): a development setting in serving code"
            return _issue(severity, HIGH, _CWE_ACTIVE_DEBUG_CODE, text)
    is_app_run = isinstance(node.func, ast.Attribute) and node.func.attr == "run"
    web = any(module.imports(package) for package in _WEB_PACKAGES)
    if is_app_run and web and is_true(keyword(node, "debug")):
        text = f"{name}(debug=True): debug mode in serving code (Flask's runs the Werkzeug " \
            "debugger, which executes code sent to it)"
        return _issue(HIGH, HIGH, _CWE_ACTIVE_DEBUG_CODE, text)
    return None


def _is_debug_target(target: ast.expr) -> bool:
    if isinstance(target, ast.Attribute):
        return target.attr == "debug"
    if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant):
        return target.slice.value == "DEBUG"
    return False


_ALL_INTERFACES = frozenset({"0.0.0.0", "::", "[::]", ""})  # noqa: S104 - what is looked for
# Servers by name as called, the keyword of the host, and the keywords that enable TLS
# (empty: the server has no TLS of its own).
_SERVERS = {
    "uvicorn.run": ("host", ("ssl_keyfile", "ssl_certfile")),
    "uvicorn.Config": ("host", ("ssl_keyfile", "ssl_certfile")),
    "bentoml.serve": ("host", ("ssl_keyfile", "ssl_certfile")),
    "waitress.serve": ("host", ()),
}


@_serving_test("MLS03", ("Call",))
def serving_plaintext_all_interfaces(context: Any) -> Any:
    """A server bound to every interface (``host="0.0.0.0"``) with no TLS configured."""
    node = context.node
    if not isinstance(node, ast.Call):
        return None
    module = serving_module(node)
    name = module.qualified(node.func) or ""
    if name in _SERVERS:
        host_keyword, tls = _SERVERS[name]
        host = keyword(node, host_keyword)
    elif isinstance(node.func, ast.Attribute) and node.func.attr == "run" and module.web_framework:
        # Flask's app.run(host, port, debug, load_dotenv, **options): ssl_context is its TLS.
        host = keyword(node, "host") or (node.args[0] if node.args else None)
        tls = ("ssl_context",)
    else:
        return None
    if not (isinstance(host, ast.Constant) and host.value in _ALL_INTERFACES):
        return None
    if tls and all(keyword(node, flag) is not None for flag in tls):
        return None
    how = f"set {' and '.join(tls)}" if tls else "this server has no TLS of its own"
    text = (
        f"{name} listens on every interface ({host.value!r}) in clear text ({how}): bind to "
        "127.0.0.1 behind a TLS-terminating proxy, or enable TLS"
    )
    return _issue(MEDIUM, MEDIUM, _CWE_CLEARTEXT_TRANSMISSION, text)


# Calls that read a model from storage (import aliases resolved), and the last name of a
# method that does (``mlflow.pyfunc.load_model``, ``AutoModel.from_pretrained``).
_MODEL_LOADS = frozenset({
    "joblib.load", "pickle.load", "pickle.loads", "dill.load", "cloudpickle.load", "torch.load",
    "torch.jit.load", "skops.io.load", "onnxruntime.InferenceSession",
    "safetensors.torch.load_file", "tensorflow.saved_model.load", "xgboost.Booster",
    "lightgbm.Booster", "catboost.CatBoost",
})
_MODEL_LOAD_METHODS = frozenset({"load_model", "from_pretrained", "InferenceSession"})


@_serving_test("MLS04", ("Call",))
def serving_model_loaded_per_request(context: Any) -> Any:
    """A model file loaded in a request handler: once per request instead of once at start-up."""
    node = context.node
    if not isinstance(node, ast.Call):
        return None
    module = serving_module(node)
    name = module.qualified(node.func) or ""
    if name not in _MODEL_LOADS and name.rsplit(".", 1)[-1] not in _MODEL_LOAD_METHODS:
        return None
    function = enclosing_function(node)
    endpoint = module.endpoint(function) if function is not None else None
    if endpoint is None or _lazily_initialised(node, endpoint.function):
        return None
    where = {MLFLOW: "load_context()", KSERVE: "load()"}.get(
        endpoint.framework, "start-up (module level or lifespan)"
    )
    text = (
        f"{name}() in {endpoint.framework} handler {endpoint.function.name}(): the model is read "
        f"and deserialised on every request (latency, memory, file reads); load it once at {where}"
    )
    return _issue(MEDIUM, HIGH, _CWE_RESOURCE_CONSUMPTION, text)


def _lazily_initialised(call: ast.Call, function: ast.AST) -> bool:
    """A load under ``if model is None:`` (or ``if not model:``) runs once, not per request."""
    current = getattr(call, "_bandit_parent", None)
    while current is not None and current is not function:
        if isinstance(current, ast.If):
            test = current.test
            if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
                return True
            if isinstance(test, ast.Compare) and any(
                isinstance(c, ast.Constant) and c.value is None for c in test.comparators
            ):
                return True
        current = getattr(current, "_bandit_parent", None)
    return False


_RAW_BODY_TYPES = frozenset({"bytes", "UploadFile", "fastapi.UploadFile",
                             "starlette.datastructures.UploadFile"})
_RAW_BODY_READS = frozenset({"body", "stream", "form"})
_SIZE_WORDS = ("content-length", "content_length", "max_size", "max_bytes", "size")
_LIST_TYPES = frozenset({"list", "List", "Sequence", "set", "Set", "tuple", "Tuple"})
_LENGTH_BOUNDS = ("max_length", "max_items", "max_len")


@_serving_test("MLS05", ("Call", *_FUNCTIONS, "AnnAssign"))
def serving_unbounded_request(context: Any) -> Any:
    """Request bodies without a size limit: a Flask application without
    ``MAX_CONTENT_LENGTH``, a FastAPI body read as raw ``bytes``/``UploadFile`` with no size
    check, a list field of a request model without ``max_length``."""
    node = context.node
    if isinstance(node, ast.Call):
        return _flask_without_limit(node)
    if isinstance(node, ast.AnnAssign):
        return _unbounded_list_field(node)
    endpoint = _endpoint(context)
    if endpoint is None or "FastAPI" not in endpoint.framework:
        return None
    return _raw_body_without_check(endpoint)


def _flask_without_limit(call: ast.Call) -> Any:
    module = serving_module(call)
    if module.qualified(call.func) not in ("flask.Flask", "quart.Quart"):
        return None
    root = module_of(call)
    if root is None:
        return None
    configured = any(
        (isinstance(n, ast.Constant) and n.value == "MAX_CONTENT_LENGTH")
        or (isinstance(n, ast.keyword) and n.arg == "MAX_CONTENT_LENGTH")
        # Configuration read from a file, an object or the environment may set it.
        or (isinstance(n, ast.Attribute) and n.attr.startswith("from_"))
        for n in ast.walk(root)
    )
    if configured:
        return None
    text = (
        "Flask application without MAX_CONTENT_LENGTH: request bodies of any size are read "
        "into memory; set app.config['MAX_CONTENT_LENGTH'] to the largest request you serve"
    )
    return _issue(MEDIUM, MEDIUM, _CWE_ALLOCATION_WITHOUT_LIMITS, text)


def _raw_body_without_check(endpoint: Endpoint) -> Any:
    function = endpoint.function
    module = serving_module(function)
    arguments = [*function.args.args, *function.args.kwonlyargs]
    raw = [
        a.arg for a in arguments
        if a.annotation is not None and any(
            (module.qualified(n) or "") in _RAW_BODY_TYPES for n in ast.walk(a.annotation)
        )
    ]
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = module.qualified(node.func) or ""
            if node.func.attr in _RAW_BODY_READS and name.startswith("request"):
                raw.append(f"{name}()")
    if not raw:
        return None
    text_words = [w.lower() for w in _body_words(function)]
    if any(size in word for word in text_words for size in _SIZE_WORDS) or _calls_len(function):
        return None
    text = (
        f"FastAPI endpoint {function.name}() reads the raw request body ({', '.join(raw)}) with "
        "no size check: check the Content-Length or the bytes read against a limit, or set "
        "one in the server or proxy"
    )
    return _issue(MEDIUM, MEDIUM, _CWE_ALLOCATION_WITHOUT_LIMITS, text)


def _unbounded_list_field(node: ast.AnnAssign) -> Any:
    owner = getattr(node, "_bandit_parent", None)
    if not isinstance(owner, ast.ClassDef) or not isinstance(node.target, ast.Name):
        return None
    module = serving_module(node)
    if module.web_framework != "FastAPI":
        return None
    bases = {module.qualified(b) for b in owner.bases}
    if not bases & {"pydantic.BaseModel", "pydantic.main.BaseModel"}:
        return None
    outer = node.annotation
    bounded_elsewhere = [node.value] if node.value is not None else []
    if isinstance(outer, ast.Subscript) and module.qualified(outer.value) in (
        "typing.Annotated", "typing_extensions.Annotated"
    ) and isinstance(outer.slice, ast.Tuple):
        bounded_elsewhere += outer.slice.elts[1:]
        outer = outer.slice.elts[0]
    base = outer.value if isinstance(outer, ast.Subscript) else outer
    if (module.qualified(base) or "").rsplit(".", 1)[-1] not in _LIST_TYPES:
        return None
    if any(
        isinstance(n, ast.keyword) and n.arg in _LENGTH_BOUNDS
        for extra in bounded_elsewhere for n in ast.walk(extra)
    ):
        return None
    text = (
        f"request model {owner.name}.{node.target.id} is a list without max_length: one "
        "request can carry any number of items; bound it with Field(max_length=...)"
    )
    return _issue(LOW, MEDIUM, _CWE_ALLOCATION_WITHOUT_LIMITS, text)


def _body_words(function: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(function):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append(node.value)
        elif isinstance(node, ast.Name):
            found.append(node.id)
        elif isinstance(node, ast.Attribute):
            found.append(node.attr)
    return found


def _calls_len(function: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "len"
        for n in ast.walk(function)
    )

