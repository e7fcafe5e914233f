"""A client of the node's ZeroMQ gateway (docs/node.md has the wire format).

>>> rows = order_rows([{"kind": "submit", "owner": 0, "market": 0, "side": "buy", "price": 5_000_000, "qty": 10}])
>>> len(rows), rows["kind"][0], rows["price"][0]
(1, 0, 5000000)
"""

from __future__ import annotations

import itertools

import numpy as np
import zmq

from ..enums import COMMAND_DTYPE, CommandKind, OrderType, Side, Stp, TimeInForce
from .zmq_gateway import ACK_DTYPE, DEPTH_DTYPE, TRADE_DTYPE, GatewayError, decode_reply, encode_request

__all__ = ["ZmqClient", "order_rows", "GatewayError", "ACK_DTYPE", "TRADE_DTYPE", "DEPTH_DTYPE"]

_ENUMS = {"kind": CommandKind, "side": Side, "order_type": OrderType, "tif": TimeInForce, "stp": Stp}


def order_rows(rows: list[dict]) -> np.ndarray:
    """COMMAND_DTYPE rows from dicts of their fields (integers: ticks, lots;
    enum fields also by name, e.g. `"side": "buy"`)."""
    arr = np.zeros(len(rows), COMMAND_DTYPE)
    for i, r in enumerate(rows):
        for k, v in r.items():
            if isinstance(v, str) and k in _ENUMS:
                v = _ENUMS[k][v.upper()]
            arr[i][k] = v
    return arr


class ZmqClient:
    """A DEALER connected to a gateway: `request()` sends rows and waits for
    their acks; `send()`/`recv()` pipeline many requests."""

    def __init__(self, endpoint: str, ctx: zmq.Context | None = None) -> None:
        self.ctx = ctx or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 100_000)
        self.sock.setsockopt(zmq.RCVHWM, 100_000)
        self.sock.connect(endpoint)
        self._ids = itertools.count(1)

    def send(self, rows: np.ndarray, request_id: int | None = None) -> int:
        rid = next(self._ids) if request_id is None else request_id
        self.sock.send(encode_request(rows, rid))
        return rid

    def send_raw(self, *frames: bytes) -> None:
        self.sock.send_multipart(list(frames))

    def recv(self, timeout: float = 10.0) -> tuple[int, int, np.ndarray]:
        """`(request id, seq, acks)`; raises GatewayError for an error reply,
        TimeoutError when nothing arrives in time."""
        if not self.sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"no reply from the gateway in {timeout} s")
        return decode_reply(self.sock.recv())

    def request(self, rows: np.ndarray, timeout: float = 10.0) -> tuple[int, np.ndarray]:
        rid = self.send(rows)
        got, seq, acks = self.recv(timeout)
        if got != rid:
            raise RuntimeError(f"reply for request {got}, expected {rid}")
        return seq, acks

    def close(self) -> None:
        self.sock.close(0)

    def __enter__(self) -> "ZmqClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
