"""The node's HTTP/1.1 connection protocol: uvicorn's httptools protocol,
with a direct path for the routes that carry the load.

uvicorn turns every request into an ASGI task: a scope, a receive channel,
an `asyncio.Event`, a `Task`, two `send` messages whose headers are checked
one by one, then the framework's routing, middleware and response objects.
For `POST /order` and the market-data `GET`s that is several times the cost
of the work itself (measured: a trivial ASGI app peaks at ~29-40k requests
per CPU-second here, the bare protocol at ~56-61k).

A route registered with `fast_route` (or any Starlette route whose endpoint
carries a `fast` attribute) is answered here instead: the protocol parses
the request with httptools as uvicorn does, finds the route with the same
precedence rules as Starlette's router (first full match in declaration
order, mounts included), calls the route's fast handler with a
`FastRequest`, and writes the response itself. A fast handler returns

- `bytes`: a 200 reply with that JSON body;
- a Starlette `Response` (errors, other content types);
  (a handler's `too_large` attribute, a Response, is its reply to a body
  over the limit, in its API's error shape; default: the native one)
- `Later(future, then)`: the reply is `then(future.result())`, written when
  the future completes (POST /order: once its batch is durable and applied);
  no task is created.

Everything else (other routes, WebSocket upgrades, `Expect: 100-continue`,
HEAD, 404/405) goes through uvicorn and Starlette unchanged, and the same
handler serves the Starlette route too (`fast_route`'s endpoint), so both
paths answer alike. Pipelined requests are answered in order: a request that
arrives while the previous one is unanswered waits in uvicorn's pipeline
queue, whichever path either takes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote

import httptools
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, compile_path
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger("lxdex.node.http")

_JSON_200 = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
_JSON_200_CLOSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
_ERROR_500 = (b'{"error":{"code":"INTERNAL","message":"internal error (logged)"}}')


class Later:
    """A fast handler's reply that comes once `fut` is done: `then(result)`.
    `fut` is an asyncio Future or a `Pending`."""

    __slots__ = ("fut", "then")

    def __init__(self, fut, then: Callable[[Any], bytes | Response]) -> None:
        self.fut, self.then = fut, then


class Pending:
    """A value set later on the event loop's thread, for one waiter: like an
    asyncio Future, but `set` runs the waiter's callback at once instead of
    scheduling it (one loop callback less per request when a batch answers
    many requests). Awaitable, for the ASGI path."""

    __slots__ = ("_cb", "_value", "_done")

    def __init__(self) -> None:
        self._cb = None
        self._done = False

    def add_done_callback(self, cb: Callable[["Pending"], None]) -> None:
        if self._done:
            cb(self)
        else:
            self._cb = cb

    def done(self) -> bool:
        return self._done

    def result(self):
        return self._value

    def set(self, value) -> None:
        self._value, self._done = value, True
        cb, self._cb = self._cb, None
        if cb is not None:
            try:
                cb(self)
            except Exception:  # one waiter's failure never stops the others of a batch
                log.exception("a reply callback failed")

    def __await__(self):
        if not self._done:
            fut = asyncio.get_running_loop().create_future()
            self._cb = lambda p: fut.done() or fut.set_result(None)
            yield from fut.__await__()
        return self._value


class _Addr(tuple):
    @property
    def host(self) -> str:
        return self[0]

    @property
    def port(self) -> int:
        return self[1]


class _Headers(dict):
    """Request headers by lower-case name (the first of repeated ones), as
    Starlette's `Headers.get` answers."""

    def get(self, key: str, default=None):  # type: ignore[override]
        return dict.get(self, key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())

    def __contains__(self, key) -> bool:  # type: ignore[override]
        return dict.__contains__(self, key.lower())


class FastRequest:
    """What a fast handler sees of a request: the parts of Starlette's
    `Request` the node's handlers use (`method`, `url.path`,
    `query_params`, `path_params`, `headers`, `client.host`,
    `scope["query_string"]`), plus the whole `body` (bytes)."""

    __slots__ = ("method", "path", "query_string", "raw_headers", "_client", "path_params", "body", "_query",
                 "_headers", "_scope")

    def __init__(self, method: str, path: str, query_string: bytes, raw_headers: list, client, path_params: dict,
                 body: bytes = b"") -> None:
        self.method, self.path, self.query_string = method, path, query_string
        self.raw_headers, self._client, self.path_params, self.body = raw_headers, client, path_params, body
        self._query = self._headers = self._scope = None

    @property
    def url(self) -> "FastRequest":  # `request.url.path` / `.query`
        return self

    @property
    def query(self) -> str:
        return self.query_string.decode("latin-1")

    @property
    def query_params(self) -> dict:
        q = self._query
        if q is None:
            q = self._query = dict(parse_qsl(self.query_string.decode("latin-1"), keep_blank_values=True)) \
                if self.query_string else {}
        return q

    @property
    def headers(self) -> _Headers:
        h = self._headers
        if h is None:
            h = self._headers = _Headers()
            for k, v in self.raw_headers:
                name = k.decode("latin-1")
                if name not in h:
                    dict.__setitem__(h, name, v.decode("latin-1"))
        return h

    @property
    def client(self) -> _Addr | None:
        return _Addr(self._client) if self._client else None

    @property
    def scope(self) -> dict:
        s = self._scope
        if s is None:
            s = self._scope = {"type": "http", "method": self.method, "path": self.path,
                               "query_string": self.query_string, "headers": self.raw_headers,
                               "client": self._client, "path_params": self.path_params}
        return s

    @classmethod
    def of(cls, request: Request, body: bytes) -> "FastRequest":
        s = request.scope
        return cls(s["method"], s["path"], s.get("query_string", b""), s["headers"], s.get("client"),
                   request.path_params, body)


FastHandler = Callable[[FastRequest], "bytes | Response | Later"]


def to_response(res: bytes | Response) -> Response:
    return Response(res, media_type="application/json") if isinstance(res, (bytes, bytearray)) else res


def fast_endpoint(fn: FastHandler, max_body: int) -> Callable:
    """The Starlette endpoint for a fast handler (the path of requests the
    protocol hands to uvicorn: pipelined behind a slow one, `Expect`, ...)."""

    async def endpoint(request: Request) -> Response:
        n = request.headers.get("content-length")
        big = getattr(fn, "too_large", None) or too_large(max_body)
        if n is not None and (not n.isdigit() or int(n) > max_body):
            return big
        chunks, size = [], 0
        if n is not None or "transfer-encoding" in request.headers:
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_body:
                    return big
                chunks.append(chunk)
        try:
            res = fn(FastRequest.of(request, b"".join(chunks)))
            if type(res) is Later:
                res = res.then(await res.fut)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return Response(_ERROR_500, status_code=500, media_type="application/json")
        return to_response(res)

    endpoint.fast = fn  # type: ignore[attr-defined]
    return endpoint


def too_large(max_body: int) -> Response:
    return Response(b'{"error":{"code":"TOO_LARGE","message":"request body over %d bytes"}}' % max_body,
                    status_code=413, media_type="application/json")


def fast_route(path: str, fn: FastHandler, methods: list[str], max_body: int) -> Route:
    return Route(path, fast_endpoint(fn, max_body), methods=methods)


class FastRoutes:
    """The fast handlers of a Starlette route list, found for a request by
    Starlette's own rules: routes in declaration order (mounts flattened),
    the first whose path and method both match wins; when that route has no
    fast handler, or nothing matches, the request goes to Starlette."""

    MAX_CACHE = 8192

    def __init__(self, routes: list) -> None:
        self.entries: list[tuple] = []
        self._flatten(routes, "")
        self._cache: dict[tuple[str, str], tuple | None] = {}

    def _flatten(self, routes: list, prefix: str) -> None:
        for r in routes:
            if isinstance(r, Route):
                regex, _, conv = compile_path(prefix + r.path)
                self.entries.append((regex, conv, r.methods, getattr(r.endpoint, "fast", None)))
            elif isinstance(r, Mount):
                if r.routes:
                    self._flatten(r.routes, prefix + r.path)
                else:  # an app mounted at a prefix (static files): matches everything under it
                    regex, _, conv = compile_path(prefix + r.path + "/{path:path}")
                    self.entries.append((regex, conv, None, None))
            # WebSocket routes never match an HTTP request

    def match(self, method: str, path: str) -> tuple[FastHandler, dict] | None:
        key = (method, path)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = None
        for regex, conv, methods, fast in self.entries:
            m = regex.match(path)
            if m is None or (methods is not None and method not in methods):
                continue
            if fast is not None:
                found = (fast, {k: conv[k].convert(v) for k, v in m.groupdict().items()})
            break
        if len(self._cache) >= self.MAX_CACHE:
            self._cache.clear()
        self._cache[key] = found
        return found


class _NoEvent:
    @staticmethod
    def set() -> None:
        pass


class _FastCycle:
    """A request on the fast path, in the place of uvicorn's
    `RequestResponseCycle` (whose attributes the protocol reads)."""

    __slots__ = ("handler", "request", "keep_alive", "chunks", "size", "too_large", "complete", "started",
                 "response_complete", "disconnected")
    message_event = _NoEvent

    def __init__(self, handler: FastHandler, request: FastRequest, keep_alive: bool) -> None:
        self.handler, self.request, self.keep_alive = handler, request, keep_alive
        self.chunks: list[bytes] = []
        self.size = 0
        self.too_large = self.complete = self.started = self.response_complete = self.disconnected = False


class CoalescingTransport:
    """Wraps a connection's transport so that what is written during one
    event-loop iteration goes out in one `send`: uvicorn writes a response's
    head and body separately, and on a small VM each socket write is a
    costly system call (a third of the CPU of POST /order, measured)."""

    __slots__ = ("_t", "_loop", "_buf", "_scheduled")

    def __init__(self, transport, loop) -> None:
        self._t, self._loop, self._buf, self._scheduled = transport, loop, [], False

    def write(self, data) -> None:
        self._buf.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def write_now(self, data) -> None:
        """Writes at once when nothing is waiting to be flushed (else after it, in order)."""
        if self._buf:
            self.write(data)
        elif not self._t.is_closing():
            self._t.write(data)

    def writelines(self, lines) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        self._scheduled = False
        buf = self._buf
        if buf:
            data = buf[0] if len(buf) == 1 else b"".join(buf)
            buf.clear()
            if not self._t.is_closing():
                self._t.write(data)

    def close(self) -> None:
        self._flush()
        self._t.close()

    def write_eof(self) -> None:
        self._flush()
        self._t.write_eof()

    def __getattr__(self, name):
        return getattr(self._t, name)


def _watch_keep_alive(loop, state, timeout: float) -> None:
    """Closes the idle keep-alive connections of one server (its uvicorn
    `ServerState`), once a second, while it has connections."""
    if getattr(state, "_lxdex_sweeping", False):
        return
    state._lxdex_sweeping = True
    loop.call_later(1.0, _sweep_keep_alive, loop, state, timeout)


def _sweep_keep_alive(loop, state, timeout: float) -> None:
    now = loop.time()
    for c in list(state.connections):
        since = getattr(c, "_idle_since", None)  # (WebSocket protocols have none)
        if since is not None and now - since >= timeout:
            c.timeout_keep_alive_handler()
    if state.connections:
        loop.call_later(1.0, _sweep_keep_alive, loop, state, timeout)
    else:
        state._lxdex_sweeping = False


_FAST_METHODS = {b"GET": "GET", b"POST": "POST", b"DELETE": "DELETE", b"PUT": "PUT", b"PATCH": "PATCH"}


class NodeHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the fast path (module docstring).
    `routes` and `max_body` are set on a subclass per app (`protocol_for`)."""

    routes: FastRoutes
    max_body: int
    #: loop.time() since when the connection waits for a request (None: a request is in progress)
    _idle_since: float | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))
        _watch_keep_alive(self.loop, self.server_state, self.timeout_keep_alive)

    # Keep-alive: instead of uvicorn's timer per response (armed after each
    # response, cancelled by the next request), a sweep each second closes
    # connections idle for longer than the keep-alive timeout.
    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = None
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle_since = self.loop.time()

    def on_message_begin(self) -> None:
        # uvicorn's, without the ASGI scope: only a request that goes to uvicorn needs one (`_scope`)
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = None  # type: ignore[assignment]

    def _scope(self) -> None:
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http", "asgi": {"version": self.asgi_version, "spec_version": "2.3"}, "http_version": "1.1",
            "server": self.server, "client": self.client, "scheme": self.scheme, "root_path": self.root_path,
            "headers": self.headers, "state": self.app_state.copy(),
        }

    def on_headers_complete(self) -> None:
        parser = self.parser
        method = _FAST_METHODS.get(parser.get_method())
        if method is None or self.expect_100_continue or parser.should_upgrade():
            self._scope()
            return super().on_headers_complete()
        parsed = httptools.parse_url(self.url)
        path = parsed.path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        found = self.routes.match(method, path)
        if found is None:
            self._scope()
            return super().on_headers_complete()
        handler, params = found
        keep_alive = parser.should_keep_alive() and parser.get_http_version() != "1.0"
        cycle = _FastCycle(handler, FastRequest(method, path, parsed.query or b"", self.headers, self.client, params),
                           keep_alive)
        for k, v in self.headers:
            if k == b"content-length" and (not v.isdigit() or int(v) > self.max_body):
                cycle.too_large, cycle.keep_alive = True, False  # answered 413 and closed: the body is not read
        existing = self.cycle
        self.cycle = cycle  # type: ignore[assignment]
        if existing is None or existing.response_complete:
            cycle.started = True
        else:  # pipelined behind an unanswered request: uvicorn's queue keeps the order
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, None))  # type: ignore[arg-type]

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if type(cycle) is not _FastCycle:
            return super().on_body(body)
        if cycle.too_large:
            return
        cycle.size += len(body)
        if cycle.size > self.max_body:
            cycle.too_large, cycle.keep_alive, cycle.chunks = True, False, []
        else:
            cycle.chunks.append(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if type(cycle) is not _FastCycle:
            return super().on_message_complete()
        cycle.complete = True
        if cycle.started:
            self._dispatch(cycle)

    def _start_asgi_task(self, cycle, app) -> None:
        if type(cycle) is _FastCycle:
            cycle.started = True
            if cycle.complete:
                self._dispatch(cycle)
            return
        super()._start_asgi_task(cycle, app)

    def _dispatch(self, cycle: _FastCycle) -> None:
        if cycle.too_large:
            return self._respond(cycle, getattr(cycle.handler, "too_large", None) or too_large(self.max_body))
        req = cycle.request
        chunks = cycle.chunks
        req.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            res = cycle.handler(req)
        except Exception:
            log.exception("%s %s failed", req.method, req.path)
            res = Response(_ERROR_500, status_code=500, media_type="application/json")
        if type(res) is Later:
            fut, then = res.fut, res.then
            fut.add_done_callback(lambda f: self._later(cycle, f, then))
        else:
            self._respond(cycle, res)

    def _later(self, cycle: _FastCycle, fut: asyncio.Future, then) -> None:
        try:
            res = then(fut.result())
        except Exception:
            log.exception("%s %s failed", cycle.request.method, cycle.request.path)
            res = Response(_ERROR_500, status_code=500, media_type="application/json")
        self._respond(cycle, res)

    def _respond(self, cycle: _FastCycle, res: bytes | Response) -> None:
        cycle.response_complete = True
        if cycle.disconnected:
            return
        t = self.transport
        if type(res) is bytes:
            data = (_JSON_200 if cycle.keep_alive else _JSON_200_CLOSE) % len(res) + res
        else:
            head = [STATUS_LINE[res.status_code]]
            for k, v in res.raw_headers:
                head += (k, b": ", v, b"\r\n")
            if not cycle.keep_alive:
                head.append(b"connection: close\r\n")
            head += (b"\r\n", res.body)
            data = b"".join(head)
        t.write_now(data)  # type: ignore[attr-defined]
        if not cycle.keep_alive:
            t.close()
        self.on_response_complete()


def protocol_for(app) -> type[NodeHttpProtocol]:
    """The protocol class for uvicorn's `http=` serving `app` (from
    `http.build_app`: its `starlette` router and `max_body`)."""
    return type("NodeHttp", (NodeHttpProtocol,), {"routes": FastRoutes(app.starlette.routes),
                                                   "max_body": app.max_body})
