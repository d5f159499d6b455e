"""Every undocumented detail of another library that ModelDeck's code relies on, in one place.

A private attribute or an undocumented module can change in any release without a deprecation, and nothing fails
at import: the code goes on running and does the wrong thing. So each use is listed here with where it is used, why
a public API does not do, and what shows the need (STYLE.md rule 17: only where a measurement proves it).
tests/serving/test_private_internals.py checks each entry against the installed library (fails naming the entry an
upgrade changed) and scans the project for private uses that are not listed (fails naming the file and the name).

What counts as a use: an attribute or imported name starting with `_` that belongs to another library (accessed,
overridden, or read with getattr); any name imported from an undocumented module in `INTERNAL_MODULES`; and any
attribute a project class inherits from a class of such a module (HttpToolsProtocol's `cycle`, `pipeline`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

# Modules whose every name is undocumented: the libraries document only their server, config and CLI.
INTERNAL_MODULES = ("uvicorn.protocols", "uvicorn.server", "onnxruntime.capi")

# Underscore names that are the libraries' documented API, not private.
DOCUMENTED_UNDERSCORE = {
    "_meta": "Django's Model _meta API (docs: ref/models/meta)",
    "_default_manager": "Django's Model._default_manager (docs: topics/db/managers)",
    "_replace": "collections.namedtuple (docs)",
    "_asdict": "collections.namedtuple (docs)",
    "_fields": "collections.namedtuple (docs)",
    "_make": "collections.namedtuple (docs)",
    "_exit": "os._exit (docs)",
}


@dataclass(frozen=True)
class PrivateUse:
    library: str  # the distribution
    path: str  # dotted: module, then class and attribute
    used_in: tuple[str, ...]  # files, relative to the repository root
    why: str  # what it gives that no public API does
    evidence: str  # the measurement (or failure) that proves the need


FASTPATH = "serving/fastpath.py"
PROTOCOL = "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol"
CYCLE = "uvicorn.protocols.http.httptools_impl.RequestResponseCycle"
FASTPATH_WHY = (
    "answers inference requests from httptools' callbacks without an ASGI scope, task-per-body events and message "
    "dicts, inside uvicorn's connection handling"
)
FASTPATH_EVIDENCE = "bench/dataplane.py: DataPlaneProtocol rows against the uvicorn httptools (ASGI) rows"


def _protocol(attribute: str, why: str, used_in: tuple[str, ...] = (FASTPATH,)) -> PrivateUse:
    return PrivateUse("uvicorn", f"{PROTOCOL}.{attribute}", used_in, why, FASTPATH_EVIDENCE)


PRIVATE_USES: tuple[PrivateUse, ...] = (
    # uvicorn: the fast path is a subclass of its httptools protocol.
    PrivateUse("uvicorn", PROTOCOL, (FASTPATH, "bench/dataplane.py"), FASTPATH_WHY, FASTPATH_EVIDENCE),
    _protocol(
        "_start_asgi_task", "overridden: starts a FastCycle's run (pipelined ones too, from on_response_complete)"
    ),
    _protocol("on_message_begin", "overridden: no ASGI scope unless the request takes the ASGI path"),
    _protocol("on_headers_complete", "overridden: picks the fast path or uvicorn's cycle"),
    _protocol("on_body", "overridden: the body goes to the FastCycle"),
    _protocol("on_message_complete", "overridden: wakes the FastCycle"),
    _protocol("on_response_complete", "called once a fast answer is written: starts the next pipelined request"),
    _protocol("cycle", "set to the FastCycle; uvicorn's connection_lost and shutdown read it"),
    _protocol("pipeline", "a pipelined FastCycle waits here as (cycle, app)"),
    _protocol("tasks", "the server's set of running tasks: a FastCycle's task joins it (graceful shutdown)"),
    _protocol("connections", "read for the concurrency limit, as uvicorn does"),
    _protocol("limit_concurrency", "over it, the request takes uvicorn's path (which answers 503)"),
    _protocol("root_path", "with a root path, the request takes uvicorn's path"),
    _protocol("url", "the request target as parsed so far"),
    _protocol("headers", "the request headers as parsed so far"),
    _protocol("expect_100_continue", "set by uvicorn's on_header"),
    _protocol("scope", "built only for the ASGI path"),
    _protocol("parser", "the httptools parser: method, version, keep-alive, upgrade"),
    _protocol("flow", "uvicorn's FlowControl: pause/resume reading, wait while writing is paused"),
    _protocol("server_state", "its default_headers (server, date, --header) are written on each answer"),
    _protocol("config", "its reset_contextvars, as uvicorn's _start_asgi_task reads it"),
    _protocol("app", "the loaded app: the DataPlane, maybe inside ProxyHeadersMiddleware"),
    _protocol("loop", "creates the FastCycle's task and futures"),
    _protocol("transport", "written to once per answer"),
    _protocol("client", "the peer address, for the request and the access log"),
    _protocol("logger", "uvicorn.error, where the fast path's errors go as uvicorn's do"),
    _protocol("access_logger", "uvicorn.access, one line per answer as uvicorn writes it"),
    _protocol("access_log", "whether uvicorn.access has a handler"),
    PrivateUse(
        "uvicorn",
        f"{CYCLE}.response_complete",
        (FASTPATH,),
        "FastCycle stands in for this cycle: uvicorn's protocol reads response_complete, keep_alive, disconnected "
        "and message_event.set() on whatever self.cycle holds",
        FASTPATH_EVIDENCE,
    ),
    PrivateUse(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl.STATUS_LINE",
        (FASTPATH,),
        "the status lines uvicorn writes, byte for byte",
        FASTPATH_EVIDENCE,
    ),
    PrivateUse(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl.HEADER_RE",
        (FASTPATH,),
        "response header names are refused as uvicorn's send refuses them",
        "tests/serving/test_fastpath.py: refuses exactly what uvicorn's cycle refuses",
    ),
    PrivateUse(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl.HEADER_VALUE_RE",
        (FASTPATH,),
        "response header values are refused as uvicorn's send refuses them",
        "tests/serving/test_fastpath.py: refuses exactly what uvicorn's cycle refuses",
    ),
    PrivateUse(
        "uvicorn",
        "uvicorn.protocols.http.flow_control.FlowControl.write_paused",
        (FASTPATH,),
        "the connection's flow control: write_paused, drain(), pause_reading() and resume_reading()",
        FASTPATH_EVIDENCE,
    ),
    PrivateUse(
        "uvicorn",
        "uvicorn.server.ServerState.default_headers",
        (FASTPATH,),
        "replaced by a new list every second (never changed in place), so a list checked once is not checked again",
        FASTPATH_EVIDENCE,
    ),
    PrivateUse(
        "uvicorn",
        "uvicorn.server.ServerState",
        ("bench/dataplane.py",),
        "the benchmark builds protocol instances without a server",
        "bench/dataplane.py (no sockets: far less noise than bench/serving.py)",
    ),
    PrivateUse(
        "uvicorn",
        "uvicorn.middleware.proxy_headers.ProxyHeadersMiddleware.app",
        (FASTPATH,),
        "the DataPlane behind proxy headers (which inference never reads) still gets the fast path",
        FASTPATH_EVIDENCE,
    ),
    # onnxruntime
    PrivateUse(
        "onnxruntime",
        "onnxruntime.InferenceSession._sess",
        ("runtimes/onnx.py", "bench/lean_server.py"),
        "the C++ session's run(output_names, feed, run_options) skips the Python wrapper's checks of every feed",
        "bench/serving.py iris rows: the wrapper was 8 µs of a 24 µs iris call (runtimes/onnx.py)",
    ),
    # prometheus_client
    PrivateUse(
        "prometheus_client",
        "prometheus_client.metrics.Histogram._buckets",
        ("monitoring/prometheus.py",),
        "a pre-bucketed window is added in one inc per bucket, not one observe() per request",
        "a flush would cost one observe() per request; tests/monitoring pin the exposition equals N observe calls",
    ),
    PrivateUse(
        "prometheus_client",
        "prometheus_client.metrics.Histogram._sum",
        ("monitoring/prometheus.py",),
        "the window's total added in one inc (with _buckets)",
        "as _buckets",
    ),
    # celery / billiard
    PrivateUse(
        "celery",
        "celery.concurrency.prefork.TaskPool._pool",
        ("config/celery_pool.py",),
        "the billiard pool, to stop its time-limit watcher at warm shutdown",
        "a failure, not a benchmark: on the embedded broker the worker never exits after 'Warm shutdown'",
    ),
    PrivateUse(
        "billiard",
        "billiard.pool.Pool._timeout_handler",
        ("config/celery_pool.py",),
        "the time-limit watcher thread billiard never stops at warm shutdown",
        "as TaskPool._pool",
    ),
    # scikit-learn
    PrivateUse(
        "scikit-learn",
        "sklearn.compose.ColumnTransformer._transformer_to_input_indices",
        ("registry/formats/sklearn.py",),
        "which input columns each transformer reads, to name an encoder's categories by column",
        "no public attribute maps a transformer to its input columns (transformers_ holds what was given)",
    ),
    # Django REST framework
    PrivateUse(
        "djangorestframework",
        "rest_framework.request.Request._request",
        ("teams/authentication.py",),
        "the Django HttpRequest under DRF's Request, for the client address the lockout counts",
        "no public accessor: DRF's Request wraps the HttpRequest as _request",
    ),
)


def uses_by_name() -> dict[str, list[PrivateUse]]:
    """The entries by the last part of their path (the attribute or name the code writes)."""
    found: dict[str, list[PrivateUse]] = {}
    for use in PRIVATE_USES:
        found.setdefault(use.path.rsplit(".", 1)[1], []).append(use)
    return found
