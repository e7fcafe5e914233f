"""The node's HTTP protocol (`lxdex.node.fasthttp`) over real sockets: the
fast path answers as Starlette would, in order when requests are pipelined,
with the HTTP/1.1 connection rules (keep-alive, close, 1.0), body limits and
chunked bodies; what it does not take goes to Starlette unchanged."""

from __future__ import annotations

import json
import socket
import time

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route

from lxdex.node.fasthttp import FastRoutes, Later, fast_route
from lxdex.node.http import build_app
from lxdex.node.server import Node

from .nodeutil import served, two_accounts_config


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path / "node", two_accounts_config(max_body_bytes=2048), sync="none")
    n.start()
    yield n
    n.stop()


@pytest.fixture
def base(node):
    with served(build_app(node)) as b:
        yield b


def _conn(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    return s


def _read_responses(s: socket.socket, n: int) -> list[tuple[int, dict, bytes]]:
    """n whole responses (content-length framed) from s."""
    buf, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {len(out)} responses: {buf!r}")
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        size = int(headers["content-length"])
        while len(buf) < size:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside a body")
            buf += chunk
        out.append((status, headers, buf[:size]))
        buf = buf[size:]
    return out


def _closed(s: socket.socket) -> bool:
    s.settimeout(5)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def _post(path: str, body: dict | bytes, extra: str = "") -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{extra}"
            f"content-length: {len(data)}\r\n\r\n").encode() + data


ORDER = {"symbol": "BTC-USD", "side": 0, "price": 40000, "size": 1}


def test_pipelined_requests_are_answered_in_order_across_both_paths(base, node):
    """Fast (POST /order, GET /book), Starlette-only (GET /metrics, a 404)
    and fast again, sent in one write: five replies in the request order."""
    s = _conn(base)
    s.sendall(_post("/order", ORDER) + b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n"
              + b"GET /book/BTC-USD?depth=5 HTTP/1.1\r\nhost: x\r\n\r\n"
              + b"GET /nowhere HTTP/1.1\r\nhost: x\r\n\r\n" + _post("/order", {**ORDER, "price": 40001}))
    (s1, _, b1), (s2, h2, b2), (s3, _, b3), (s4, _, b4), (s5, _, b5) = _read_responses(s, 5)
    assert (s1, s2, s3, s4, s5) == (200, 200, 200, 404, 200)
    assert json.loads(b1)["status"] == "new" and h2["content-type"].startswith("text/plain")
    assert json.loads(b3)["bids"] == [["40000.00", "1.0000", 1]] or json.loads(b3)["bids"][0][0] == "40000.00"
    assert json.loads(b4)["error"]["code"] == "NOT_FOUND"
    assert json.loads(b5)["order_id"] == json.loads(b1)["order_id"] + 1
    s.close()


def test_keep_alive_close_and_http_1_0(base):
    s = _conn(base)
    for _ in range(3):  # keep-alive: one connection, several requests
        s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        (status, headers, body), = _read_responses(s, 1)
        assert status == 200 and json.loads(body)["status"] == "ok" and "connection" not in headers
    s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    (status, headers, _), = _read_responses(s, 1)
    assert status == 200 and headers["connection"] == "close" and _closed(s)
    s = _conn(base)
    s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
    (status, headers, _), = _read_responses(s, 1)
    assert status == 200 and headers["connection"] == "close" and _closed(s)


def test_idle_keep_alive_connections_are_closed_busy_ones_are_not(node):
    """The once-a-second sweep: a connection idle past the keep-alive
    timeout is closed; one whose request is still being answered is not,
    however long that takes."""
    import asyncio

    def slow(req):
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        loop.call_later(2.5, fut.set_result, b'{"late":true}')
        return Later(fut, lambda v: v)

    app = Starlette(routes=[fast_route("/slow", slow, ["GET"], 1000), fast_route("/q", _echo, ["GET"], 1000)])
    app.starlette, app.max_body = app, 1000
    with served(app, timeout_keep_alive=1) as b:
        idle, busy = _conn(b), _conn(b)
        idle.sendall(b"GET /q HTTP/1.1\r\nhost: x\r\n\r\n")
        assert _read_responses(idle, 1)[0][0] == 200
        busy.sendall(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        t0 = time.monotonic()
        assert _closed(idle) and time.monotonic() - t0 < 3.5  # closed 1-2 s after its reply
        (status, _, body), = _read_responses(busy, 1)  # answered after 2.5 s: not closed meanwhile
        assert (status, json.loads(body)) == (200, {"late": True})


def test_oversized_body_is_refused_and_the_connection_closed(base, node):
    seq = node.exchange.last_seq
    s = _conn(base)
    s.sendall(_post("/order", b"x" * 4096))
    (status, headers, body), = _read_responses(s, 1)
    assert status == 413 and json.loads(body)["error"]["code"] == "TOO_LARGE" and _closed(s)
    s = _conn(base)  # a chunked body over the limit: the same
    chunk = b"y" * 1500
    s.sendall(b"POST /order HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
              + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2 + b"0\r\n\r\n")
    (status, _, _), = _read_responses(s, 1)
    assert status == 413 and _closed(s)
    assert node.exchange.last_seq == seq


def test_chunked_body_and_expect_continue(base):
    data = json.dumps(ORDER).encode()
    s = _conn(base)
    s.sendall(b"POST /order HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
              + b"%x\r\n" % 10 + data[:10] + b"\r\n" + b"%x\r\n" % (len(data) - 10) + data[10:] + b"\r\n0\r\n\r\n")
    (status, _, body), = _read_responses(s, 1)
    assert status == 200 and json.loads(body)["status"] == "new"
    # Expect: 100-continue goes through uvicorn (which sends the 100) and gets the same handler's reply
    s.sendall(f"POST /order HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: {len(data)}\r\n\r\n"
              .encode())
    interim = s.recv(64)
    assert interim.startswith(b"HTTP/1.1 100")
    s.sendall(data)
    (status, _, body), = _read_responses(s, 1)
    assert status == 200 and json.loads(body)["status"] == "new"


def test_client_gone_before_its_order_is_answered(base, node):
    """The order still goes in (it was taken); the server survives the write
    to a closed connection and serves the next client."""
    before = node.exchange.last_seq
    s = _conn(base)
    s.sendall(_post("/order", ORDER))
    s.close()
    deadline = time.monotonic() + 5
    while node.exchange.last_seq == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert node.exchange.last_seq == before + 1
    s = _conn(base)
    s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    assert _read_responses(s, 1)[0][0] == 200


def test_bad_requests_on_the_fast_path(base, node):
    seq = node.exchange.last_seq
    s = _conn(base)
    s.sendall(_post("/order", b"{not json") + _post("/order", {**ORDER, "symbol": "NOPE-USD"})
              + b"GET /book/BTC-USD?depth=0 HTTP/1.1\r\nhost: x\r\n\r\n")
    (a, _, ba), (b, _, bb), (c, _, bc) = _read_responses(s, 3)
    assert (a, json.loads(ba)["error"]["code"]) == (400, "INVALID_JSON")
    assert (b, json.loads(bb)["error"]["field"]) == (404, "symbol")
    assert (c, json.loads(bc)["error"]["field"]) == (400, "depth")
    s.sendall(b"DELETE /health HTTP/1.1\r\nhost: x\r\n\r\n")  # a fast route, another method: Starlette's 405
    (status, _, body), = _read_responses(s, 1)
    assert status == 405 and json.loads(body)["error"]["code"] == "METHOD_NOT_ALLOWED"
    s.sendall(b"GARBAGE\r\n\r\n")
    assert _read_responses(s, 1)[0][0] == 400
    assert node.exchange.last_seq == seq


# -- the router and the handler contract, on a small app --------------------------------------------------------


def _echo(req):
    return json.dumps({"path": req.path, "params": req.path_params, "q": req.query_params,
                       "h": req.headers.get("X-Thing"), "body": req.body.decode()}).encode()


def test_router_follows_starlette_precedence():
    async def slow(request):
        return PlainTextResponse("slow")

    routes = [
        Route("/a/static", slow, methods=["GET"]),
        fast_route("/a/{x}", _echo, ["GET"], 1000),
        fast_route("/b/{x}", _echo, ["POST"], 1000),
        Route("/b/{x}", slow, methods=["GET"]),
        Mount("/m", routes=[fast_route("/{y}/z", _echo, ["GET"], 1000)]),
    ]
    r = FastRoutes(routes)
    assert r.match("GET", "/a/static") is None  # declared first, no fast handler: Starlette's
    assert r.match("GET", "/a/q")[1] == {"x": "q"}
    assert r.match("GET", "/b/q") is None and r.match("POST", "/b/q")[1] == {"x": "q"}
    assert r.match("GET", "/m/7/z")[1] == {"y": "7"}
    assert r.match("GET", "/m/7/w") is None and r.match("PUT", "/a/q") is None


def test_handler_contract_over_a_socket():
    """bytes -> 200 JSON; Response as is; Later -> its continuation; an
    exception -> a logged 500, the connection usable after it."""
    import asyncio

    def later(req):
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.05, fut.set_result, 21)
        return Later(fut, lambda v: json.dumps({"v": v * 2}).encode())

    def boom(req):
        raise RuntimeError("boom")

    app = Starlette(routes=[
        fast_route("/echo/{x}", _echo, ["GET", "POST"], 1000),
        fast_route("/resp", lambda req: JSONResponse({"r": 1}, status_code=201, headers={"X-A": "b"}), ["GET"], 1000),
        fast_route("/later", later, ["GET"], 1000),
        fast_route("/boom", boom, ["GET"], 1000),
    ])
    app.starlette, app.max_body = app, 1000
    with served(app) as b:
        s = _conn(b)
        s.sendall(b"POST /echo/k%20v?a=1&a=2&b= HTTP/1.1\r\nhost: x\r\nx-thing: T\r\ncontent-length: 3\r\n\r\nabc"
                  b"GET /resp HTTP/1.1\r\nhost: x\r\n\r\nGET /later HTTP/1.1\r\nhost: x\r\n\r\n"
                  b"GET /boom HTTP/1.1\r\nhost: x\r\n\r\nGET /echo/z HTTP/1.1\r\nhost: x\r\n\r\n")
        (s1, _, b1), (s2, h2, b2), (s3, _, b3), (s4, _, b4), (s5, _, b5) = _read_responses(s, 5)
        assert s1 == 200 and json.loads(b1) == {"path": "/echo/k v", "params": {"x": "k v"}, "q": {"a": "2", "b": ""},
                                                "h": "T", "body": "abc"}
        assert (s2, h2["x-a"], json.loads(b2)) == (201, "b", {"r": 1})
        assert (s3, json.loads(b3)) == (200, {"v": 42})
        assert s4 == 500 and json.loads(b4)["error"]["code"] == "INTERNAL"
        assert s5 == 200 and json.loads(b5)["params"] == {"x": "z"}
