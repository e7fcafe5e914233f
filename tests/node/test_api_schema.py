"""The OpenAPI document against the running API: schemathesis generates
requests for every operation of /openapi.json (signed with a real key, so
that they get past authentication), and every response must be no 5xx,
carry a documented status and content type and match its schema. Bounded:
a few examples per operation."""

from __future__ import annotations

import json
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Mount

from lxdex.client import sign
from lxdex.node.http import build_app
from lxdex.node.openapi import document

from .apiutil import ADMIN, transport, admin, api_node, base_url, http, new_user  # noqa: F401

SCHEMA = schemathesis.openapi.from_dict(document())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_openapi_is_served_and_covers_every_route(http, api_node):
    served = http.get("/openapi.json").json()
    assert served == json.loads(json.dumps(document()))
    app = build_app(api_node).starlette
    [mount] = [r for r in app.routes if isinstance(r, Mount) and r.path == "/api/v1"]
    routes = {(m, "/api/v1" + r.path) for r in mount.routes for m in r.methods if m != "HEAD"}
    documented = {(m.upper(), p) for p, ops in served["paths"].items() for m in ops}
    assert routes == documented


@pytest.fixture(scope="module")
def fuzz_user(admin, http):
    return new_user(admin, http, permissions=("read", "trade", "withdraw"), ip_allow=["127.0.0.1"])


@SCHEMA.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_schema(case, http, fuzz_user):
    kw = case.as_transport_kwargs(base_url=base_url(http))
    headers = {k: v for k, v in kw["headers"].items() if not k.lower().startswith(("x-lx-", "authorization"))}
    if "json" in kw:
        content = json.dumps(kw["json"]).encode()
    else:
        content = kw.get("content") or kw.get("data") or b""
        if isinstance(content, str):
            content = content.encode()
    req = http.build_request(kw["method"], kw["url"], params=kw.get("params") or None, headers=headers,
                             content=content or None)
    ts = str(int(time.time() * 1000))
    req.headers["X-LX-APIKEY"] = fuzz_user.api_key
    req.headers["X-LX-TIMESTAMP"] = ts
    req.headers["X-LX-SIGNATURE"] = sign(fuzz_user.secret, ts, req.method, req.url.path,
                                         req.url.query.decode(), req.content)
    req.headers["Authorization"] = f"Bearer {ADMIN}"
    response = http.send(req)
    assert response.status_code < 500, response.text
    case.validate_response(response, checks=CHECKS)
