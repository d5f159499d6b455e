"""serving.private_internals against the installed libraries and against the code.

Each listed detail is checked for the shape the code relies on (present, called the way the code calls it, holding
what the code reads); a failure names the entry, so an upgrade that changes one is found here and not in production.
The project's source is scanned for private uses of other libraries, and one that is not listed fails naming the file
and the name: a new use must be listed, with its reason, before it is merged.
"""

from __future__ import annotations

import ast
import asyncio
import collections
import concurrent.futures
import importlib
import importlib.metadata
import inspect
import logging
import multiprocessing
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
import numpy as np
import pytest

from serving.private_internals import (
    CYCLE,
    DOCUMENTED_UNDERSCORE,
    INTERNAL_MODULES,
    PRIVATE_USES,
    PROTOCOL,
    PrivateUse,
    uses_by_name,
)

ROOT = Path(__file__).resolve().parents[2]


# --- the shape of each listed detail -------------------------------------------------------------------------------


def resolve(path: str) -> Any:
    """The object a dotted path names: the longest importable module, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        return target
    raise ImportError(path)


def parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


class Sink(asyncio.Transport):
    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def empty_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def protocol_after_one_request() -> Any:
    """uvicorn's own httptools protocol, connected, after it parsed (and answered) one request."""
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    config = uvicorn.Config(empty_app, lifespan="off", log_config=None)
    config.load()
    protocol = HttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(Sink())
    protocol.data_received(b"GET /v2/x?y=1 HTTP/1.1\r\nhost: t\r\nexpect: 100-continue\r\n\r\n")
    while protocol.tasks:
        await asyncio.sleep(0)
    return protocol


def protocol_attribute(name: str, expected: Callable[[Any], bool]) -> Callable[[], Any]:
    async def check() -> None:
        protocol = await protocol_after_one_request()
        assert hasattr(protocol, name), f"HttpToolsProtocol instances have no `{name}`"
        value = getattr(protocol, name)
        assert expected(value), f"HttpToolsProtocol.{name} is {value!r}"

    return check


def protocol_method(name: str, arguments: list[str]) -> Callable[[], None]:
    def check() -> None:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        method = getattr(HttpToolsProtocol, name, None)
        assert callable(method), f"HttpToolsProtocol.{name} is gone"
        assert parameters(method) == ["self", *arguments], f"HttpToolsProtocol.{name}{inspect.signature(method)}"

    return check


def check_protocol_class() -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert issubclass(HttpToolsProtocol, asyncio.Protocol)
    assert parameters(HttpToolsProtocol.__init__) == ["self", "config", "server_state", "app_state", "_loop"]


def cycle_reads_of_uvicorns_protocol() -> set[str]:
    """The attributes uvicorn's protocol reads on its cycle, in the methods the fast path does not override."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from serving.fastpath import DataPlaneProtocol

    overridden = {name for name in vars(DataPlaneProtocol) if name in vars(HttpToolsProtocol)}
    tree = ast.parse(inspect.getsource(HttpToolsProtocol))
    reads = set()
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef) or function.name in overridden:
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Attribute) and (
                (isinstance(node.value, ast.Attribute) and node.value.attr == "cycle")
                or (isinstance(node.value, ast.Name) and "cycle" in node.value.id)
            ):
                reads.add(node.attr)
    return reads


def check_cycle() -> None:
    """FastCycle has every attribute uvicorn's protocol reads on a cycle outside the methods the fast path overrides,
    and uvicorn's own cycle still has them (as the types FastCycle gives them)."""
    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    from serving.fastpath import FastCycle

    reads = cycle_reads_of_uvicorns_protocol()
    assert {"response_complete", "keep_alive", "disconnected", "message_event"} <= reads, reads
    source = ast.parse(inspect.getsource(FastCycle))
    fast = {
        node.attr
        for node in ast.walk(source)
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and ast.unparse(node.value) == "self"
    } | {node.name for node in ast.walk(source) if isinstance(node, ast.FunctionDef)}
    assert reads <= fast, f"uvicorn's protocol now reads {sorted(reads - fast)} on its cycle; FastCycle has none"
    sink = Sink()
    cycle = RequestResponseCycle(
        scope={"method": "GET", "http_version": "1.1"},  # type: ignore[typeddict-item]
        transport=sink,
        flow=FlowControl(sink),
        logger=logging.getLogger("uvicorn.error"),
        access_logger=logging.getLogger("uvicorn.access"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )
    for name in ("response_complete", "keep_alive", "disconnected"):
        assert isinstance(getattr(cycle, name), bool), name
    assert callable(cycle.message_event.set)


def check_status_line() -> None:
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE

    assert isinstance(STATUS_LINE, dict) and set(STATUS_LINE) == set(range(100, 600))
    assert STATUS_LINE[200] == b"HTTP/1.1 200 OK\r\n" and STATUS_LINE[500] == b"HTTP/1.1 500 Internal Server Error\r\n"


def check_header_patterns() -> None:
    from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE

    assert isinstance(HEADER_RE, re.Pattern) and isinstance(HEADER_RE.pattern, bytes)
    assert isinstance(HEADER_VALUE_RE, re.Pattern) and isinstance(HEADER_VALUE_RE.pattern, bytes)
    for name in (b"x\r", b"x\n", b"x y", b"x:", b"x\x00"):
        assert HEADER_RE.search(name), name
    for value in (b"a\r\nb", b"a\nb", b"a\x00b", b"a\x7f"):
        assert HEADER_VALUE_RE.search(value), value
    assert not HEADER_RE.search(b"content-type") and not HEADER_VALUE_RE.search(b'a\tb "c" (d)')


def check_flow_control() -> None:
    from uvicorn.protocols.http.flow_control import FlowControl

    flow = FlowControl(Sink())
    assert flow.write_paused is False
    assert callable(flow.pause_reading) and callable(flow.resume_reading)
    assert inspect.iscoroutinefunction(flow.drain)


def check_default_headers() -> None:
    """A list of (bytes, bytes) that uvicorn's Server replaces (never changes in place): the fast path checks a list
    once, by identity."""
    import uvicorn.server
    from uvicorn.server import ServerState

    assert ServerState().default_headers == []
    tree = ast.parse(inspect.getsource(uvicorn.server))
    replaced = mutated = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(ast.unparse(t).endswith(".default_headers") for t in node.targets):
            replaced = True
        if isinstance(node, ast.Attribute) and ast.unparse(node.value).endswith(".default_headers"):
            mutated = True  # .append, .extend, [i] = ...
        if isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith(".default_headers"):
            mutated = True
    assert replaced and not mutated, "uvicorn.server no longer only replaces server_state.default_headers"


def check_server_state() -> None:
    from uvicorn.server import ServerState

    state = ServerState()
    assert isinstance(state.connections, set) and isinstance(state.tasks, set)
    assert state.total_requests == 0


def check_proxy_headers_app() -> None:
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    assert ProxyHeadersMiddleware(empty_app).app is empty_app


def check_onnxruntime_sess(tmp_path: Path) -> None:
    """`_sess.run(output_names, feed, run_options)` answers as InferenceSession.run does."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "relu.onnx")
    session = ort.InferenceSession(str(tmp_path / "relu.onnx"), providers=["CPUExecutionProvider"])
    x = np.array([[-1.0, 0.5, 2.0]], dtype=np.float32)
    native = session._sess.run(["y"], {"x": x}, None)
    np.testing.assert_array_equal(native[0], session.run(["y"], {"x": x})[0])


def check_histogram_internals() -> None:
    """A child's `_buckets[i]` (not cumulative) and `_sum`, inc'ed, expose what as many observe() calls would."""
    from prometheus_client import CollectorRegistry, Histogram

    registry = CollectorRegistry()
    histogram = Histogram("h", "h", ["l"], buckets=(1.0, 2.0), registry=registry)
    child = histogram.labels("a")
    assert len(child._buckets) == 3  # the two bounds and +Inf
    child._sum.inc(4.5)
    child._buckets[0].inc(1)
    child._buckets[2].inc(1)
    reference = Histogram("r", "r", ["l"], buckets=(1.0, 2.0), registry=registry).labels("a")
    reference.observe(0.5)
    reference.observe(4.0)
    samples = {
        m.name: [(s.name[1:], s.labels, s.value) for s in m.samples if not s.name.endswith("_created")]
        for m in registry.collect()
    }
    assert samples["h"] == samples["r"]


def check_celery_pool() -> None:
    from celery.concurrency.prefork import TaskPool

    assert "self._pool = " in inspect.getsource(TaskPool.on_start)
    assert callable(TaskPool.on_stop)


def check_billiard_timeout_handler() -> None:
    import billiard.pool  # type: ignore[import-untyped]

    assert "self._timeout_handler = " in inspect.getsource(billiard.pool.Pool)
    assert callable(billiard.pool.TimeoutHandler.terminate)


def check_column_transformer() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    transformer = ColumnTransformer([("one-hot", OneHotEncoder(), [1])]).fit(np.array([[0, 1], [1, 2]]))
    indices = transformer._transformer_to_input_indices
    assert isinstance(indices, dict) and list(indices["one-hot"]) == [1]


def check_drf_request() -> None:
    from django.http import HttpRequest
    from rest_framework.request import Request

    wrapped = HttpRequest()
    assert Request(wrapped)._request is wrapped


ATTRIBUTES: dict[str, Callable[[Any], bool]] = {
    "cycle": lambda value: type(value).__name__ == "RequestResponseCycle",
    "pipeline": lambda value: isinstance(value, collections.deque),
    "tasks": lambda value: isinstance(value, set),
    "connections": lambda value: isinstance(value, set),
    "limit_concurrency": lambda value: value is None,
    "root_path": lambda value: value == "",
    "url": lambda value: value == b"/v2/x?y=1",
    "headers": lambda value: value == [(b"host", b"t"), (b"expect", b"100-continue")],
    "expect_100_continue": lambda value: value is True,
    "scope": lambda value: isinstance(value, dict) and value["path"] == "/v2/x",
    "parser": lambda value: all(
        callable(getattr(value, m)) for m in ("get_method", "get_http_version", "should_upgrade", "should_keep_alive")
    ),
    "flow": lambda value: type(value).__name__ == "FlowControl",
    "server_state": lambda value: isinstance(value.default_headers, list),
    "config": lambda value: value.reset_contextvars is False,
    "app": lambda value: value is not None,
    "loop": lambda value: isinstance(value, asyncio.AbstractEventLoop),
    "transport": lambda value: isinstance(value, Sink),
    "client": lambda value: value == ("127.0.0.1", 50000),
    "logger": lambda value: value.name == "uvicorn.error",
    "access_logger": lambda value: value.name == "uvicorn.access",
    "access_log": lambda value: isinstance(value, bool),
}
METHODS = {
    "_start_asgi_task": ["cycle", "app"],
    "on_message_begin": [],
    "on_headers_complete": [],
    "on_body": ["body"],
    "on_message_complete": [],
    "on_response_complete": [],
}
CHECKS: dict[str, Callable[..., Any]] = {
    PROTOCOL: check_protocol_class,
    **{f"{PROTOCOL}.{name}": protocol_attribute(name, expected) for name, expected in ATTRIBUTES.items()},
    **{f"{PROTOCOL}.{name}": protocol_method(name, arguments) for name, arguments in METHODS.items()},
    f"{CYCLE}.response_complete": check_cycle,
    "uvicorn.protocols.http.httptools_impl.STATUS_LINE": check_status_line,
    "uvicorn.protocols.http.httptools_impl.HEADER_RE": check_header_patterns,
    "uvicorn.protocols.http.httptools_impl.HEADER_VALUE_RE": check_header_patterns,
    "uvicorn.protocols.http.flow_control.FlowControl.write_paused": check_flow_control,
    "uvicorn.server.ServerState.default_headers": check_default_headers,
    "uvicorn.server.ServerState": check_server_state,
    "uvicorn.middleware.proxy_headers.ProxyHeadersMiddleware.app": check_proxy_headers_app,
    "onnxruntime.InferenceSession._sess": check_onnxruntime_sess,
    "prometheus_client.metrics.Histogram._buckets": check_histogram_internals,
    "prometheus_client.metrics.Histogram._sum": check_histogram_internals,
    "celery.concurrency.prefork.TaskPool._pool": check_celery_pool,
    "billiard.pool.Pool._timeout_handler": check_billiard_timeout_handler,
    "sklearn.compose.ColumnTransformer._transformer_to_input_indices": check_column_transformer,
    "rest_framework.request.Request._request": check_drf_request,
}


def test_every_listed_detail_has_a_check_and_every_check_an_entry() -> None:
    listed = [use.path for use in PRIVATE_USES]
    assert len(listed) == len(set(listed)), "an entry is listed twice"
    assert sorted(set(listed) - set(CHECKS)) == [], "listed without a check here"
    assert sorted(set(CHECKS) - set(listed)) == [], "checked here but not listed"


@pytest.mark.parametrize("use", PRIVATE_USES, ids=lambda use: use.path)
async def test_the_listed_detail_still_has_the_shape_the_code_relies_on(use: PrivateUse, tmp_path: Path) -> None:
    check = CHECKS[use.path]
    try:
        if "tmp_path" in inspect.signature(check).parameters:
            check(tmp_path)
        elif inspect.iscoroutinefunction(check):
            await check()
        else:
            check()
    except Exception as exc:  # noqa: BLE001 -- any failure is reported with the entry it concerns
        installed = importlib.metadata.version(use.library)
        pytest.fail(
            f"{use.library} {installed} changed {use.path} (used in {', '.join(use.used_in)} because it {use.why}): "
            f"{type(exc).__name__}: {exc}"
        )


@pytest.mark.parametrize("use", PRIVATE_USES, ids=lambda use: use.path)
def test_the_listed_files_still_use_the_detail(use: PrivateUse) -> None:
    """A stale entry (the use was removed or moved) is found too: each listed file still names the detail."""
    name = use.path.rsplit(".", 1)[1]
    for used_in in use.used_in:
        assert name in (ROOT / used_in).read_text(), f"{used_in} no longer uses {use.path}: update the list"


def test_uvicorns_checks_are_still_the_ones_the_fast_path_runs() -> None:
    from uvicorn.protocols.http import httptools_impl

    source = inspect.getsource(httptools_impl.RequestResponseCycle.send)
    assert "HEADER_RE.search(name)" in source and "HEADER_VALUE_RE.search(value)" in source, (
        "uvicorn's send checks response headers another way now: make serving.fastpath.header_line do the same"
    )


# --- the scan for private uses that are not listed -----------------------------------------------------------------

SKIPPED_DIRS = {"tests", "var", "static", "templates", "docs", "docker", "node_modules"}


def project_files() -> list[Path]:
    """The project's Python source, tests and generated protobuf modules aside (tests poke at internals on purpose)."""
    files = [ROOT / "manage.py"] if (ROOT / "manage.py").exists() else []
    for top in sorted(ROOT.iterdir()):
        if top.is_dir() and not top.name.startswith(".") and top.name not in SKIPPED_DIRS:
            files += [p for p in sorted(top.rglob("*.py")) if not re.search(r"_pb2(_grpc)?\.pyi?$", p.name)]
    return files


def project_packages() -> set[str]:
    return {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")} | {"manage"}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_internal_module(module: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in INTERNAL_MODULES)


def bound_names(tree: ast.AST) -> Iterator[str]:
    """Every name the code binds: definitions, arguments, assigned names and assigned attributes, imports."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name
        elif isinstance(node, ast.arg):
            yield node.arg
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            yield node.id
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            yield node.attr
        elif isinstance(node, ast.alias):
            yield (node.asname or node.name).split(".")[0]
        elif isinstance(node, ast.keyword) and node.arg:
            yield node.arg


def class_members(cls: type) -> set[str]:
    """What a library class and its bases define, instance attributes set in their methods included."""
    members = set(dir(cls))
    for klass in cls.__mro__:
        if klass is object:
            continue
        try:
            tree = ast.parse(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        members |= {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and ast.unparse(node.value) == "self"
        }
    return members


def receiver_is_self(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in {"self", "cls"}
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def private_uses_in(path: Path, project_names: set[str], packages: set[str]) -> set[tuple[str, str]]:
    """(dotted import or attribute name, line) of each private use of another library in one file."""
    tree = ast.parse(path.read_text(), str(path))
    imported: dict[str, str] = {}  # local name -> "module.Name", for external imports
    found: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module.split(".")[0] in packages:
                continue
            internal = is_internal_module(node.module) or any(is_private(p) for p in node.module.split("."))
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                if internal or is_private(alias.name):
                    found.add((f"{node.module}.{alias.name}", f"line {node.lineno}"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] not in packages and any(is_private(p) for p in alias.name.split(".")):
                    found.add((alias.name, f"line {node.lineno}"))

    def external_bases(cls: ast.ClassDef) -> list[tuple[type, bool]]:
        bases = []
        for base in cls.bases:
            first, dot, rest = ast.unparse(base).partition(".")
            dotted = imported.get(first)
            if dotted is None:
                continue
            try:
                value = resolve(dotted + dot + rest)
            except (ImportError, AttributeError):
                continue
            if isinstance(value, type):
                bases.append((value, is_internal_module(value.__module__)))
        return bases

    for cls in [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]:
        bases = external_bases(cls)
        inherited = set().union(*(class_members(base) for base, _ in bases)) if bases else set()
        from_internal = set().union(*(class_members(base) for base, internal in bases if internal)) if bases else set()
        own = set(bound_names(cls))
        for node in ast.walk(cls):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node in cls.body:
                name = node.name
                if (is_private(name) and name in inherited) or (name in from_internal and not name.startswith("__")):
                    found.add((name, f"line {node.lineno} (overrides {cls.name}'s base)"))
            if isinstance(node, ast.Attribute) and receiver_is_self(node.value):
                name = node.attr
                if name.startswith("__"):
                    continue
                if name in from_internal or (is_private(name) and (name in inherited or (bases and name not in own))):
                    found.add((name, f"line {node.lineno}"))
    for node in ast.walk(tree):
        used: str | None = None
        if isinstance(node, ast.Attribute) and not receiver_is_self(node.value):
            used = node.attr
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "hasattr", "setattr"}
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            used = node.args[1].value
        if used and is_private(used) and used not in project_names and used not in DOCUMENTED_UNDERSCORE:
            found.add((used, f"line {getattr(node, 'lineno', '?')}"))
    return found


def unlisted_private_uses() -> list[str]:
    """Every private use of another library in the project that serving/private_internals.py does not list."""
    files = project_files()
    assert ROOT / "serving" / "fastpath.py" in files
    packages = project_packages()
    project_names = {name for path in files for name in bound_names(ast.parse(path.read_text()))}
    by_name = uses_by_name()
    listed_paths = {use.path: use for use in PRIVATE_USES}
    unlisted = []
    for path in files:
        relative = str(path.relative_to(ROOT))
        for name, where in sorted(private_uses_in(path, project_names, packages)):
            entries = [listed_paths[name]] if name in listed_paths else by_name.get(name.rsplit(".", 1)[-1], [])
            if not any(relative in use.used_in for use in entries):
                unlisted.append(f"{relative} {where}: {name}")
    return unlisted


def test_every_private_use_of_another_library_is_listed() -> None:
    # In a process of its own: CPython 3.11's compiler keeps one recursion counter per interpreter, so an
    # ast.parse here while another thread of the test process imports (compiles) a module can fail with
    # "SystemError: AST constructor recursion depth mismatch" (seen in CI); the scan itself needs no test state.
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn, initializer=django.setup) as pool:
        unlisted = pool.submit(unlisted_private_uses).result(timeout=300)
    assert unlisted == [], "private uses of other libraries not listed in serving/private_internals.py:\n" + "\n".join(
        unlisted
    )


def test_the_scan_finds_what_it_must(tmp_path: Path) -> None:
    """The scan itself, on code that uses private parts of libraries in each way it knows."""
    source = """
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, STATUS_LINE
from onnxruntime.capi._pybind_state import get_device
from somelib import _hidden
import onnxruntime.capi._pybind_state


class Fast(HttpToolsProtocol):
    def _start_asgi_task(self, cycle, app):
        self.pipeline.append(cycle)
        super()._unset_keepalive_if_required()
        self._mine = 1
        return self._mine


def run(session):
    native = getattr(session, "_sess", None)
    session._sess.run([], {}, None)
    return native, session._meta
"""
    sample = tmp_path / "sample.py"
    sample.write_text(source)
    names = {name for name, _ in private_uses_in(sample, {"_mine", "run"}, project_packages())}
    assert names == {
        "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol",
        "uvicorn.protocols.http.httptools_impl.STATUS_LINE",
        "onnxruntime.capi._pybind_state.get_device",
        "somelib._hidden",
        "onnxruntime.capi._pybind_state",
        "_start_asgi_task",
        "pipeline",
        "_unset_keepalive_if_required",
        "_sess",
    }
