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
    if _is_positive(case):
        case.body = _in_64_bits(case.body)
        _reach_real_resources(case)
    if case.operation.path not in INGRESS or _broken_headers(case) or _no_such_webhook_body(case):
        # A case whose headers were generated to break the document (a signature header of
        # the wrong shape) goes out as generated, unsigned, and must be refused.
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



def _is_positive(case):
    meta = case.meta
    return meta is not None and str(meta.generation.mode) == "positive"


def _no_such_webhook_body(case):
    """A webhook's body is the node's own payload, any JSON value, so no body breaks its schema;
    Schemathesis still makes "negative" ones (`null`, which is valid JSON and accepted). Those
    go out unsigned, and the check sees the refusal it asks for; the positive phase covers
    acceptance of every JSON value, `null` included."""
    meta = case.meta
    if case.operation.path != "/webhook/{node}" or meta is None:
        return False
    return any(
        getattr(location, "value", location) == "body" and str(info.mode) == "negative"
        for location, info in meta.components.items()
    )


def _broken_headers(case):
    meta = case.meta
    if meta is None:
        return False
    if str(meta.generation.mode) == "negative":
        # The coverage phase names the one location it broke.
        location = getattr(meta.phase.data, "parameter_location", None)
        if getattr(location, "value", location) == "header":
            return True
    return any(
        getattr(location, "value", location) == "header" and str(info.mode) == "negative"
        for location, info in meta.components.items()
    )


def _in_64_bits(value):
    """Integers anywhere in a JSON value brought inside -2^63 .. 2^64-1. The server refuses one
    beyond 64 bits with 400 (README "Limits": another parser could read it differently), a rule
    on every number inside any JSON value, which a schema of "any value" cannot carry. Applied
    to positive cases only, where the document promises acceptance."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return max(-(2**63), min(value, 2**64 - 1))
    if isinstance(value, list):
        return [_in_64_bits(v) for v in value]
    if isinstance(value, dict):
        return {k: _in_64_bits(v) for k, v in value.items()}
    return value


def _keep_cross_field_rules(case):
    """Four rules that OpenAPI 3.0 cannot say: a replay's `until` must be above its `after`, an
    event type's examples must each be valid against its schema (two fields each), the events of
    a batch have distinct ids, and a filter's keys are JSON pointers (3.0 has no
    `propertyNames`). A body that the document
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
    elif path == "/events/batch":
        # API.md section 2: an id twice in one batch is refused (400 at the second one).
        events = body.get("events")
        if isinstance(events, list):
            seen = set()
            for i, event in enumerate(events):
                if isinstance(event, dict) and isinstance(event.get("id"), str) and event["id"]:
                    if event["id"] in seen:
                        event["id"] = f"{event['id'][:100]}-{i}"
                    seen.add(event["id"])
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



def _reach_real_resources(case):
    """Without a config file only the built-in webhook mappings exist (`flowpay`, `factory`),
    and `reactors` is the one replay target always there: in positive cases, two node names in
    three become one of the two, and one replay target in two becomes `reactors`, so those
    paths are exercised, not only their 404. Negative cases keep what broke the document."""
    if case.operation.path == "/webhook/{node}" and case.path_parameters:
        pick = _next() % 3
        if pick < 2:
            case.path_parameters["node"] = ("flowpay", "factory")[pick]
    if case.operation.path == "/api/replay" and isinstance(case.body, dict) and _next() % 2:
        case.body["target"] = "reactors"

def _next():
    global _count
    _count += 1
    return _count
