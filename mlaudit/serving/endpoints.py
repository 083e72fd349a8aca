"""Model endpoints in serving code, found by reading its syntax tree (never importing it).

What counts as an endpoint, per framework:

- **FastAPI** and **Flask**: a function decorated with a route of an application or router
  (``@app.post("/predict")``, ``@router.get``, ``@bp.route``), the object known from the
  module's own ``FastAPI()``/``APIRouter()``/``Flask()``/``Blueprint()``, or, when it is
  imported from elsewhere, by its conventional name (``app``, ``router``, ``bp``...) and a
  path string;
- **BentoML**: a method decorated with ``@bentoml.api`` (1.2+) or ``@svc.api(...)`` of a
  ``bentoml.Service``;
- **KServe**: ``predict``, ``preprocess``, ``postprocess`` and ``explain`` of a ``kserve.Model``;
- **MLflow pyfunc**: ``predict`` of an ``mlflow.pyfunc.PythonModel``.

The analysis of a module is done once and kept on its ``ast.Module`` node (bandit runs every
test on every node; the module-wide facts, such as whether a middleware authenticates every
request, are the same for all of them).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef

FASTAPI, FLASK, BENTOML, KSERVE, MLFLOW = "FastAPI", "Flask", "BentoML", "KServe", "MLflow pyfunc"
# Constructors of objects whose methods declare routes, by the framework they belong to.
_ROUTE_OWNERS = {
    "fastapi.FastAPI": FASTAPI,
    "fastapi.APIRouter": FASTAPI,
    "fastapi.routing.APIRouter": FASTAPI,
    "flask.Flask": FLASK,
    "flask.Blueprint": FLASK,
    "quart.Quart": FLASK,
    "quart.Blueprint": FLASK,
}
_ROUTE_METHODS = frozenset({"get", "post", "put", "patch", "delete", "route", "api_route"})
_CONVENTIONAL_OWNERS = re.compile(r"^(app|application|api|router|bp|blueprint|server)\w*$")
_SERVED_METHODS = {
    "kserve.Model": frozenset({"predict", "preprocess", "postprocess", "explain"}),
    "kserve.model.Model": frozenset({"predict", "preprocess", "postprocess", "explain"}),
    "mlflow.pyfunc.PythonModel": frozenset({"predict"}),
}
# Calls that run a model: ``model.predict(x)``, ``pipe.generate(...)``, ``session.run``...
_PREDICT_METHODS = frozenset({
    "predict", "predict_proba", "predict_log_proba", "decision_function", "score_samples",
    "generate", "forward", "infer", "inference",
})
# ...or calling the model object itself: ``model(x)``, ``classifier(text)``.
_MODEL_WORD = re.compile(r"model|pipe|classifier|regressor|predictor|estimator", re.IGNORECASE)
# Names and strings that show a request is authenticated: a dependency, a decorator, a header.
# "token" only as a word of its own (``verify_token``, ``x-token``), never ``tokenizer``.
AUTH_WORD = re.compile(
    r"auth|login|(?<![a-z])token(?![a-z])|jwt|api_?key|credential|bearer|permission|oauth|"
    r"current_user|hmac|security",
    re.IGNORECASE,
)
_MIDDLEWARE_CALLS = frozenset({"add_middleware", "add_asgi_middleware", "add_wsgi_middleware"})
_REQUEST_HOOKS = frozenset({"before_request", "before_app_request", "middleware"})


@dataclass(frozen=True)
class Endpoint:
    """A function that serves requests, and what serves it."""

    function: FunctionNode
    framework: str
    decorator: ast.expr | None  # the route decorator; None for served methods (KServe, MLflow)


def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of names and attributes (a call's callee for a call)."""
    if isinstance(node, ast.Call):
        return dotted(node.func)
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = dotted(node.value)
        return f"{owner}.{node.attr}" if owner else None
    return None


def words(node: ast.AST) -> Iterator[str]:
    """Every name, attribute and string constant in ``node``."""
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            yield child.id
        elif isinstance(child, ast.Attribute):
            yield child.attr
        elif isinstance(child, ast.Constant) and isinstance(child.value, str):
            yield child.value
        elif isinstance(child, ast.arg):
            yield child.arg


def mentions_auth(node: ast.AST) -> bool:
    return any(AUTH_WORD.search(word) for word in words(node))


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def module_of(node: ast.AST) -> ast.Module | None:
    """The module ``node`` is in, through the parent links bandit sets while it walks."""
    current: ast.AST | None = node
    while current is not None and not isinstance(current, ast.Module):
        current = getattr(current, "_bandit_parent", None)
    return current


def enclosing_function(node: ast.AST) -> FunctionNode | None:
    current = getattr(node, "_bandit_parent", None)
    while current is not None and not isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef):
        current = getattr(current, "_bandit_parent", None)
    return current


@dataclass
class ServingModule:
    """What one module declares about serving: imports, applications, module-wide auth."""

    aliases: dict[str, str] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)  # variable -> framework
    imported: set[str] = field(default_factory=set)  # top-level packages imported
    parents: dict[int, ast.ClassDef] = field(default_factory=dict)  # id(method) -> its class
    authenticates_every_request: bool = False

    def qualified(self, node: ast.AST) -> str | None:
        """``node``'s dotted name with the module's import aliases resolved."""
        name = dotted(node)
        if name is None:
            return None
        head, _, rest = name.partition(".")
        resolved = self.aliases.get(head, head)
        return f"{resolved}.{rest}" if rest else resolved

    def imports(self, package: str) -> bool:
        return package in self.imported

    @property
    def web_framework(self) -> str | None:
        if self.imports("fastapi") or self.imports("starlette"):
            return FASTAPI
        if self.imports("flask") or self.imports("quart"):
            return FLASK
        return None

    def endpoint(self, function: FunctionNode) -> Endpoint | None:
        """``function`` as an endpoint, or None when nothing serves it."""
        for decorator in function.decorator_list:
            framework = self._route_framework(decorator)
            if framework is not None:
                return Endpoint(function, framework, decorator)
        owner = self.parents.get(id(function))
        if owner is None:
            return None
        for base in owner.bases:
            served = _SERVED_METHODS.get(self.qualified(base) or "")
            if served is not None and function.name in served:
                framework = MLFLOW if "mlflow" in (self.qualified(base) or "") else KSERVE
                return Endpoint(function, framework, None)
        return None

    def _route_framework(self, decorator: ast.expr) -> str | None:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = self.qualified(target) or ""
        if name in ("bentoml.api", "bentoml.Service.api"):
            return BENTOML
        if not isinstance(target, ast.Attribute) or not isinstance(target.value, ast.Name):
            return None
        owner = target.value.id
        if self.owners.get(owner) == BENTOML and target.attr == "api":
            return BENTOML
        if target.attr not in _ROUTE_METHODS:
            return None
        if owner in self.owners:
            return self.owners[owner]
        # An application imported from another module: its conventional name and a path.
        path = decorator.args[0] if isinstance(decorator, ast.Call) and decorator.args else None
        has_path = isinstance(path, ast.Constant) and str(path.value).startswith("/")
        if _CONVENTIONAL_OWNERS.match(owner) and has_path:
            return self.web_framework or f"{FASTAPI} or {FLASK}"
        return None


def serving_module(node: ast.AST) -> ServingModule:
    """The analysis of the module ``node`` is in, made once per module."""
    module = module_of(node)
    if module is None:
        return ServingModule()
    cached = getattr(module, "_mlaudit_serving", None)
    if isinstance(cached, ServingModule):
        return cached
    analysis = _analyse(module)
    module._mlaudit_serving = analysis  # type: ignore[attr-defined]
    return analysis


def _analyse(module: ast.Module) -> ServingModule:
    analysis = ServingModule()
    for node in ast.walk(module):
        if isinstance(node, ast.Import):
            for alias in node.names:
                analysis.aliases[alias.asname or alias.name] = alias.name
                analysis.imported.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                analysis.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            analysis.imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.ClassDef):
            for child in node.body:
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                    analysis.parents[id(child)] = node
    for node in ast.walk(module):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            constructor = analysis.qualified(node.value.func) or ""
            framework = _ROUTE_OWNERS.get(constructor)
            if constructor in ("bentoml.Service", "bentoml.service"):
                framework = BENTOML
            for target in node.targets:
                if framework is not None and isinstance(target, ast.Name):
                    analysis.owners[target.id] = framework
        if _authenticates_every_request(node):
            analysis.authenticates_every_request = True
    return analysis


def _authenticates_every_request(node: ast.AST) -> bool:
    """A middleware, request hook or application-wide dependency that names authentication."""
    if isinstance(node, ast.Call):
        callee = dotted(node.func) or ""
        if callee.rsplit(".", 1)[-1] in _MIDDLEWARE_CALLS:
            return any(mentions_auth(argument) for argument in [*node.args, *node.keywords])
        dependencies = keyword(node, "dependencies")
        # FastAPI(dependencies=...), APIRouter(...), include_router(...): every route inherits.
        return dependencies is not None and not _is_route_call(node) and mentions_auth(
            dependencies
        )
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        hooks = [dotted(d) or "" for d in node.decorator_list]
        return any(h.rsplit(".", 1)[-1] in _REQUEST_HOOKS for h in hooks) and mentions_auth(node)
    return False


def _is_route_call(call: ast.Call) -> bool:
    return isinstance(call.func, ast.Attribute) and call.func.attr in _ROUTE_METHODS


def calls_model(function: FunctionNode) -> bool:
    """Whether ``function`` runs a model: a predict-like method, or a model object called."""
    for node in ast.walk(function):
        if not isinstance(node, ast.Call):
            continue
        callee = node.func
        if isinstance(callee, ast.Attribute) and callee.attr in _PREDICT_METHODS:
            return True
        if isinstance(callee, ast.Name | ast.Attribute) and _MODEL_WORD.search(
            callee.id if isinstance(callee, ast.Name) else callee.attr
        ):
            return True
    return False


def authenticated(endpoint: Endpoint) -> bool:
    """Whether the endpoint shows an authentication step: in its route decorator
    (``dependencies=[Depends(verify_token)]``), another decorator (``@login_required``), its
    parameters (``user = Depends(get_current_user)``, ``api_key: str = Security(...)``) or its
    body (reading an ``Authorization`` header, calling ``verify_token``)."""
    function = endpoint.function
    others = [d for d in function.decorator_list if d is not endpoint.decorator]
    route_dependencies = (
        keyword(endpoint.decorator, "dependencies")
        if isinstance(endpoint.decorator, ast.Call) else None
    )
    parts: list[ast.AST] = [*others, function.args, *_without_docstring(function.body)]
    if route_dependencies is not None:
        parts.append(route_dependencies)
    return any(mentions_auth(part) for part in parts)


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    is_docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    return body[1:] if is_docstring else body
