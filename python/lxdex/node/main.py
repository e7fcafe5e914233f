"""`lxdex node`: a node process — storage, sequencer, HTTP and ZeroMQ
gateways — with structured logs and a graceful shutdown on SIGTERM/SIGINT
(stop taking requests, finish the queued batch, snapshot, exit 0)."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import uvicorn

from .config import Config
from .fasthttp import protocol_for
from .http import build_app
from .metrics import Metrics
from .server import Node

log = logging.getLogger("lxdex.node")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO 8601 UTC), level, logger, msg,
    and the exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(fmt: str = "json", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True


class _Server(uvicorn.Server):
    """uvicorn's server, except that a SIGTERM/SIGINT only asks it to stop:
    uvicorn re-raises the signal after its shutdown, which would kill the
    process before the node's own shutdown (last batch, snapshot) ran."""

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            # a second signal during the node's shutdown is logged, not fatal
            for sig in old:
                signal.signal(sig, lambda s, f: log.warning("signal %d: already shutting down", s))


def uvicorn_config(app, host: str, port: int, **kw) -> uvicorn.Config:
    """How the node serves `app` (from `http.build_app`): uvicorn with the
    node's HTTP protocol (`fasthttp`: the load-carrying routes without the
    ASGI layers), no access log, no lifespan, no Server/Date headers."""
    opts = dict(host=host, port=port, log_config=None, access_log=False, lifespan="off",
                timeout_graceful_shutdown=5, proxy_headers=False, server_header=False, date_header=False,
                http=protocol_for(app))
    opts.update(kw)
    return uvicorn.Config(app, **opts)


@dataclass
class NodeOptions:
    data_dir: Path
    config: Path | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    zmq_host: str = "127.0.0.1"
    zmq_port: int | None = 5555
    pub_port: int | None = None  # default zmq_port + 1
    sync: str = "fdatasync"
    history: bool = True


class NodeProcess:
    """A node with its gateways, run by `serve()` until a signal (or
    `request_stop()`)."""

    def __init__(self, opts: NodeOptions, cfg: Config | None = None) -> None:
        self.opts = opts
        self.cfg = cfg or Config.load(opts.config)
        self.node = Node(opts.data_dir, self.cfg, sync=opts.sync, history=opts.history)
        self.metrics = Metrics(self.node)
        self.gateway = None
        self.server: uvicorn.Server | None = None
        self.on_started: list[Callable[["NodeProcess"], None]] = []

    def serve(self) -> int:
        node = self.node
        rec = node.open()
        node.start()
        try:
            if self.opts.zmq_port is not None:
                from .zmq_gateway import ZmqGateway

                pub = self.opts.pub_port if self.opts.pub_port is not None else self.opts.zmq_port + 1
                host = self.opts.zmq_host
                self.gateway = ZmqGateway(node, f"tcp://{host}:{self.opts.zmq_port}", f"tcp://{host}:{pub}",
                                          metrics=self.metrics)
                self.gateway.start()
            app = build_app(node, self.metrics)
            config = uvicorn_config(app, self.opts.http_host, self.opts.http_port)
            self.server = _Server(config)
            started = threading.Thread(target=self._announce, args=(rec,), daemon=True)
            started.start()
            self.server.run()  # handles SIGINT/SIGTERM: stops accepting, finishes requests in flight
        finally:
            if self.gateway is not None:
                self.gateway.stop()
            node.stop()
        log.info("node %s exited cleanly at seq %d", self.cfg.node_id, node.exchange.last_seq)
        return 0

    def _announce(self, rec) -> None:
        while self.server is not None and not self.server.started:
            if self.server.should_exit:
                return
            time.sleep(0.01)
        log.info("node %s serving: http://%s:%d, zmq %s, pub %s, data dir %s, sync %s", self.cfg.node_id,
                 self.opts.http_host, self.opts.http_port, self.gateway.endpoint if self.gateway else "off",
                 self.gateway.pub_endpoint if self.gateway else "off", self.opts.data_dir, self.opts.sync)
        for cb in self.on_started:
            cb(self)

    def request_stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
