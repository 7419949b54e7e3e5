"""Schemathesis hooks for Nexus (issue 18): sign every ingress request the way a node does.

Loaded through ``SCHEMATHESIS_HOOKS=hooks`` with this directory on ``PYTHONPATH`` (see run.sh).
The ingress routes (``/events``, ``/events/batch``, ``/webhook/{node}``) need an HMAC signature
over the exact bytes sent (API.md section 2), which a static header cannot give: this hook
serialises the generated body itself, passes those bytes as the request body (so Schemathesis
sends them unchanged) and signs them with ``NEXUS_SECRET``, in the Nexus scheme or, for one
request in three, the Standard Webhooks scheme. The admin token comes from ``--header`` on the
command line, so the operator API is exercised as an operator would.
"""

import base64
import re
import hashlib
import hmac
import json
import os
import time
import uuid

import schemathesis

_WRITTEN = os.environ["NEXUS_SECRET"]
# A `whsec_<base64>` secret is used as its decoded bytes, any other as its UTF-8 bytes (API.md 2).
SECRET = base64.b64decode(_WRITTEN[6:]) if _WRITTEN.startswith("whsec_") else _WRITTEN.encode()
SIGNATURE_HEADERS = ("x-nexus-signature", "x-nexus-timestamp", "webhook-id", "webhook-timestamp", "webhook-signature")
NODE = os.environ.get("NEXUS_FUZZ_NODE", "schemathesis")
NODE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
INGRESS = ("/events", "/events/batch", "/webhook/{node}")

_count = 0


def _body_bytes(case):
    """The bytes Schemathesis would send for this case's body, serialised once here."""
    body = case.body
    if isinstance(body, bytes):
        return body
    if type(body).__name__ == "NotSet":
        return b""
    if body is None:
        # The JSON value null, as Schemathesis itself sends it.
        return b"null"
    if isinstance(body, str) and case.media_type and "json" not in case.media_type:
        return body.encode()
    # What `requests` does for `json=`, minus NaN (which no JSON parser takes).
    return json.dumps(body, allow_nan=False).encode()


@schemathesis.hook
def before_call(context, case, kwargs):
    global _count
    _keep_cross_field_rules(case)
    if case.operation.path not in INGRESS:
        return
    try:
        raw = _body_bytes(case)
    except ValueError:
        # A body that is not JSON at all (NaN, infinity) goes out unsigned and must get a 4xx.
        return
    kwargs["data"] = raw
    # Schemathesis fills the security schemes' headers with random values: drop them all, so the
    # request carries exactly one scheme, signed for real.
    headers = {
        k: v for k, v in (case.headers or {}).items() if k.lower() not in SIGNATURE_HEADERS
    }
    headers.setdefault("Content-Type", case.media_type or "application/json")
    timestamp = str(int(time.time()))
    _count += 1
    if _count % 3 == 0:
        msg_id = "msg_" + uuid.uuid4().hex
        mac = hmac.new(SECRET, f"{msg_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest()
        headers["webhook-id"] = msg_id
        headers["webhook-timestamp"] = timestamp
        headers["webhook-signature"] = "v1," + base64.b64encode(mac).decode()
    else:
        mac = hmac.new(SECRET, timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        headers["X-Nexus-Timestamp"] = timestamp
        headers["X-Nexus-Signature"] = "sha256=" + mac
    if case.operation.path != "/webhook/{node}":
        headers["X-Nexus-Node"] = NODE
    case.headers = headers



def _keep_cross_field_rules(case):
    """Three rules that OpenAPI 3.0 cannot say: a replay's `until` must be above its `after`, an
    event type's examples must each be valid against its schema (two fields each), and a
    filter's keys are JSON pointers (3.0 has no `propertyNames`). A body that the document
    allows but that breaks one gets 400 (the integration tests check those), so such a body is
    brought inside the rule before it is sent. Only these fields change, so a body generated to
    break the document still breaks it."""
    body = case.body
    if not isinstance(body, dict):
        return
    path = case.operation.path
    if path == "/api/replay":
        after, until = body.get("after"), body.get("until")
        if isinstance(after, int) and isinstance(until, int) and until <= after:
            if after < 2**64 - 1:
                body["until"] = after + 1
            else:
                body["after"], body["until"] = 2**64 - 2, 2**64 - 1
    elif path == "/api/event-types/{name}":
        examples = body.get("examples")
        if isinstance(examples, list) and examples and body.get("schema") not in (None, True, {}):
            body["examples"] = []
    elif path.startswith("/api/subscriptions"):
        conditions = body.get("filter")
        if isinstance(conditions, dict):
            body["filter"] = {_pointer(key): test for key, test in conditions.items()}


def _pointer(key):
    """`key` as a JSON pointer (RFC 6901): `""`, or `/`-separated tokens with `~` escaped."""
    if key == "":
        return key
    tokens = key[1:].split("/") if key.startswith("/") else [key]
    return "".join("/" + t.replace("~", "~0") for t in tokens)


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    """Without a config file only the built-in webhook mappings exist (`flowpay`, `factory`):
    two node names in three are one of them, so the mapping path is exercised, not only 404.
    Only a valid name is replaced: a case generated to break the document keeps its breakage."""
    node = (path_parameters or {}).get("node")
    if context.operation.path == "/webhook/{node}" and isinstance(node, str) and NODE_NAME.match(node):
        pick = _next() % 3
        if pick < 2:
            path_parameters["node"] = ("flowpay", "factory")[pick]
    return path_parameters


@schemathesis.hook
def map_body(context, body):
    """A replay to `reactors` (always there) one time in two, so a replay runs, not only 404.
    Only a valid target is replaced, as above."""
    target = body.get("target") if isinstance(body, dict) else None
    if context.operation.path == "/api/replay" and isinstance(target, str) and target and _next() % 2:
        body["target"] = "reactors"
    return body


def _next():
    global _count
    _count += 1
    return _count
