"""Reference model of the binary gateway's per-row acks (docs/node.md):
the obvious numpy formulation, against which the Rust `gateway_acks` is
tested."""

from __future__ import annotations

import numpy as np

from lxdex.enums import EventKind
from lxdex.node.zmq_gateway import ACK_DTYPE


def acks_for(rows: np.ndarray, events: np.ndarray) -> np.ndarray:
    """The ACK_DTYPE rows for `rows` given their EVENT_DTYPE `events`."""
    n = len(rows)
    ack = np.zeros(n, ACK_DTYPE)
    ack["kind"] = rows["kind"]
    ack["order_id"] = rows["order_id"]
    if not len(events):
        return ack
    kind, idx = events["kind"], events["cmd_index"].astype(np.intp)
    m = kind == EventKind.ACCEPTED
    ack["order_id"][idx[m]] = events["order_id"][m]
    m = kind == EventKind.REJECTED
    ack["status"][idx[m]] = 1
    ack["reason"][idx[m]] = events["reason"][m]
    own = events["order_id"] == ack["order_id"][idx]
    f = (kind == EventKind.FILL) & own
    np.add.at(ack["filled"], idx[f], events["qty"][f])
    np.add.at(ack["fills"], idx[f], 1)
    ack["remaining"][idx[f]] = events["remaining"][f]
    done_fill = f & (events["remaining"] == 0)
    ack["done"][idx[done_fill]] = 1
    c = (kind == EventKind.CANCELLED) & own
    ack["done"][idx[c]] = 1
    ack["reason"][idx[c]] = events["reason"][c]
    ack["remaining"][idx[c]] = 0
    return ack


