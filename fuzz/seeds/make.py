#!/usr/bin/env python3
"""Writes the seed inputs of each fuzz target into fuzz/corpus/<target>/ (README, "Fuzzing").

The seeds are the requests, frames, conditions and config files of API.md and the tests, in each
target's input form; signed ones are signed at the targets' clock (NOW) with their secret. Run it
from fuzz/ before a first run; `cargo fuzz cmin` then keeps what adds coverage.
"""
import base64, hashlib, hmac, json, os, sys

NOW = 1_700_000_000
SECRET = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")

def write(target, name, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)

def request(headers, body):
    if isinstance(body, str):
        body = body.encode()
    return "".join(f"{k}: {v}\n" for k, v in headers).encode() + b"\n" + body

def nexus_sig(ts, body, key=SECRET):
    return "sha256=" + hmac.new(key, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()

def std_sig(id_, ts, body, key=SECRET):
    mac = hmac.new(key, f"{id_}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()

# ---- ingress_publish: headers, blank line, body -------------------------------------------------
json_ct = ("content-type", "application/json")
plain = [
    '{"type":"PAYMENT_RECEIVED","payload":{"order":"o-1","amount":2500,"currency":"EUR"}}',
    '{"type":"PAYMENT_RECEIVED","id":"pay-42","correlation_id":"corr-1","payload":null}',
    '{"type":"MINT_CONFIRMED"}',
    '{"type":"a.b:c-d_e","payload":[1,2.5,-3e10,true,false,null,"\\u00e9"],"source":"ignored"}',
    '{"type":"PAYMENT_RECEIVED","payload":{"big":18446744073709551616,"neg":-9223372036854775809}}',
    '{"type":"PAYMENT_RECEIVED","type":"MINT_FAILED"}',
    '{"type":"bad type","payload":{}}',
    '{"payload":{}}',
    '[]',
    '{"type":"' + "A" * 129 + '"}',
]
for i, body in enumerate(plain):
    write("ingress_publish", f"plain-{i}", request([json_ct], body))
write("ingress_publish", "plain-vendor-json", request([("content-type", "application/vnd.acme+json; charset=utf-8")], plain[0]))
write("ingress_publish", "no-content-type", request([], plain[0]))
structured = [
    {"specversion": "1.0", "id": "ce-1", "source": "/flowpay", "type": "PAYMENT_RECEIVED", "data": {"amount": 2500}},
    {"specversion": "1.0", "id": "ce-2", "source": "/flowpay", "type": "PAYMENT_RECEIVED", "data_base64": "aGVsbG8="},
    {"specversion": "1.0", "id": "ce-3", "source": "/flowpay", "type": "PAYMENT_RECEIVED", "data": None},
    {"specversion": "0.3", "id": "ce-4", "source": "/x", "type": "T"},
    {"specversion": "1.0", "source": "/x", "type": "T"},
]
for i, ce in enumerate(structured):
    write("ingress_publish", f"ce-structured-{i}", request([("content-type", "application/cloudevents+json")], json.dumps(ce)))
binary = [
    ([("ce-specversion", "1.0"), ("ce-id", "b-1"), ("ce-type", "PAYMENT_RECEIVED"), ("ce-source", "/flowpay"), json_ct], '{"amount":2500}'),
    ([("ce-specversion", "1.0"), ("ce-id", "b-2"), ("ce-type", "NOTE"), ("content-type", "text/plain; charset=utf-8")], "hello"),
    ([("ce-specversion", "1.0"), ("ce-id", "b-3"), ("ce-type", "NOTE")], ""),
    ([("ce-specversion", "1.0"), ("ce-id", "b-4"), ("ce-type", "NOTE"), ("content-type", "application/octet-stream")], "\x00\x01"),
    ([("ce-specversion", "0.3"), ("ce-id", "b-5"), ("ce-type", "NOTE")], ""),
]
for i, (h, body) in enumerate(binary):
    write("ingress_publish", f"ce-binary-{i}", request(h, body))

# ---- ingress_batch: the body --------------------------------------------------------------------
batches = [
    {"events": [{"type": "PAYMENT_RECEIVED", "payload": {"amount": 1}}, {"type": "MINT_CONFIRMED", "id": "m-1"}]},
    {"events": []},
    {"events": [{"type": "OK"}, {"type": "not ok"}]},
    {"events": [{"type": "OK"}] * 3, "extra": 1},
    {"event": []},
    {"events": {"type": "OK"}},
]
for i, b in enumerate(batches):
    write("ingress_batch", f"batch-{i}", json.dumps(b))
write("ingress_batch", "batch-1001", json.dumps({"events": [{"type": "T"}] * 1001}, separators=(",", ":")))
write("ingress_batch", "not-json", "{\"events\": [")

# ---- signature: headers (x-fuzz-secret optional), blank line, body --------------------------------
body = b'{"type":"PAYMENT_RECEIVED","payload":{"amount":2500}}'
write("signature", "nexus-valid", request(
    [("x-nexus-node", "flowpay"), ("x-nexus-timestamp", NOW), ("x-nexus-signature", nexus_sig(NOW, body))], body))
write("signature", "nexus-upper-hex", request(
    [("x-nexus-node", "flowpay"), ("x-nexus-timestamp", NOW), ("x-nexus-signature", "sha256=" + nexus_sig(NOW, body)[7:].upper())], body))
write("signature", "nexus-plus-timestamp", request(
    [("x-nexus-node", "flowpay"), ("x-nexus-timestamp", f"+{NOW}"), ("x-nexus-signature", nexus_sig(f"+{NOW}", body))], body))
write("signature", "nexus-old", request(
    [("x-nexus-node", "flowpay"), ("x-nexus-timestamp", NOW - 301), ("x-nexus-signature", nexus_sig(NOW - 301, body))], body))
write("signature", "nexus-wrong", request(
    [("x-nexus-node", "flowpay"), ("x-nexus-timestamp", NOW), ("x-nexus-signature", "sha256=" + "0" * 64)], body))
write("signature", "nexus-reserved-node", request(
    [("x-nexus-node", "nexus"), ("x-nexus-timestamp", NOW), ("x-nexus-signature", nexus_sig(NOW, body))], body))
write("signature", "standard-valid", request(
    [("x-nexus-node", "flowpay"), ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"), ("webhook-timestamp", NOW),
     ("webhook-signature", "v1,bm9wZQ== " + std_sig("msg_p5jXN8AQM9LWM0D4loKWxJek", NOW, body))], body))
write("signature", "standard-missing-id", request(
    [("x-nexus-node", "flowpay"), ("webhook-timestamp", NOW), ("webhook-signature", std_sig("", NOW, body))], body))
write("signature", "standard-v2", request(
    [("x-nexus-node", "flowpay"), ("webhook-id", "m"), ("webhook-timestamp", NOW), ("webhook-signature", "v2,abc v1a,xyz")], body))
other_key = b"a plain text secret"
write("signature", "own-secret", request(
    [("x-fuzz-secret", other_key.decode()), ("x-nexus-node", "factory"), ("x-nexus-timestamp", NOW),
     ("x-nexus-signature", nexus_sig(NOW, body, other_key))], body))
write("signature", "whsec-empty", request([("x-fuzz-secret", "whsec_"), ("x-nexus-node", "a")], body))
write("signature", "unsigned", request([("x-nexus-node", "flowpay")], body))

# ---- glob: glob, newline, subject -----------------------------------------------------------------
for i, (g, s) in enumerate([
    ("PAYMENT_*", "PAYMENT_RECEIVED"), ("*", "anything"), ("**", ""), ("*.created", "order.created"),
    ("MINT_*ED", "MINT_CONFIRMED"), ("a*b*c", "aXbYc"), ("*a*b*", "xxaxxbxx"), ("a*a*a", "aaa"),
    ("ab*ba", "aba"), ("*:*-*", "x:y-z"), ("exact", "exact"), ("bad glob", "x"), ("", "x"),
    ("A" * 128, "A" * 128), ("A" * 129, "x"), ("*é", "é"),
]):
    write("glob", f"glob-{i}", f"{g}\n{s}")

# ---- when: conditions JSON, newline, payload JSON -------------------------------------------------
for i, (w, p) in enumerate([
    ({"/amount": {"gte": 1, "lt": 100}}, {"amount": 5}),
    ({"/amount": {"gte": 10000}, "/currency": {"eq": "EUR"}}, {"amount": 20000, "currency": "EUR"}),
    ({"/order/items/0/sku": {"exists": True}}, {"order": {"items": [{"sku": "s"}]}}),
    ({"/a~1b": {"ne": None}, "/c~0d": {"gt": "m"}}, {"a/b": 1, "c~d": "z"}),
    ({"/x": {"lte": 1.5e308}}, {"x": 18446744073709551615}),
    ({}, {}),
    ({"amount": {"gte": 1}}, {}),
    ({"/amount": {"between": [1, 2]}}, {}),
    ({"/amount": {"gt": True}}, {}),
    ({"/amount": 5}, {}),
    ([1], {}),
]):
    write("when", f"when-{i}", json.dumps(w) + "\n" + json.dumps(p))

# ---- ws_client_frame: the text of a frame ---------------------------------------------------------
for i, f in enumerate([
    '{"action": "subscribe", "events": ["PAYMENT_RECEIVED", "MINT_*"], "since": 41}',
    '{"action": "subscribe", "events": ["*"]}',
    '{"action": "unsubscribe", "events": ["MINT_*"]}',
    '{"action": "ping"}',
    '{"action": "subscribe", "events": []}',
    '{"action": "subscribe", "events": ["bad glob"], "since": -1}',
    '{"action": "dance"}',
    '{"events": ["*"]}',
    '{"action": "subscribe", "events": ["A"], "since": 18446744073709551616}',
    '{"action": "ping", "action": "subscribe", "events": ["*"]}',
    'not json',
    '["ping"]',  # serde's sequence form of the tagged enum: the wire type reads it, the server refuses it
]):
    write("ws_client_frame", f"frame-{i}", f)

# ---- config_toml: the file ------------------------------------------------------------------------
spec = """[[nodes]]
name = "flowpay"
secret_env = "FLOWPAY_SECRET"
publish = ["PAYMENT_*"]

[[webhooks]]
node = "flowpay"
event_type = "PAYMENT_RECEIVED"
id_pointer = "/payment_id"

[[subscriptions]]
url = "https://crm.example/hooks"
events = ["MINT_*"]
secret_env = "CRM_WEBHOOK_SECRET"
ordered = false
filter = { "/amount" = { gte = 10000 }, "/currency" = { eq = "EUR" } }

[[reactors]]
name = "mint-on-payment"
on = "PAYMENT_RECEIVED"
when = { "/amount" = { gte = 1 } }
http = { method = "POST", url = "http://127.0.0.1:4000/mint", secret_env = "FACTORY_HOOK_SECRET", timeout_ms = 10000 }
emit_on_success = "MINT_REQUESTED"
emit_on_failure = "MINT_FAILED"

[retry]
schedule_ms = [2000, 4000, 8000, 16000, 32000]
jitter = 0.1
lease_ms = 60000

[breaker]
failure_threshold = 5
success_threshold = 2
reset_timeout_ms = 30000

[[ws_tokens]]
token_env = "DASHBOARD_WS_TOKEN"
events = ["*"]

[[event_types]]
name = "PAYMENT_RECEIVED"
description = "A customer paid; the amount is in minor units."
schema = { type = "object", required = ["amount"], properties = { amount = { type = "integer", minimum = 0 } } }
examples = [ { order = "o-1", amount = 2500, currency = "EUR" } ]
deprecated = false

[[event_types]]
name = "MINT_REQUESTED"
schema = "schemas/mint_requested.json"

[store]
url = "postgres://nexus@127.0.0.1:5432/nexus"
"""
write("config_toml", "spec", spec)
with open("../ops/nexus.toml") as f:
    write("config_toml", "ops", f.read())
for i, t in enumerate([
    '[[nodes]]\nname = "a"\npublish = ["*"]\ncolour = "red"\n',
    '[[nodes]]\nname = "nexus"\npublish = ["*"]\n',
    '[[nodes]]\nname = "a"\nsecret = "x"\npublish = ["*"]\n',
    '[retry]\nschedule_ms = []\n',
    '[retry]\nlease_ms = 18446744073709551615\nhistory_retention_ms = 0\njitter = nan\n',
    '[breaker]\nfailure_threshold = 0\nreset_timeout_ms = 18446744073709551615\n',
    '[[subscriptions]]\nurl = "http://[::1]:99999/x"\nevents = ["*"]\n',
    '[[reactors]]\nname = "r"\non = "*"\nhttp = { url = "http://127.0.0.1:1/", method = "GET", timeout_ms = 0 }\n',
    'nodes = 1\n',
    '[[nodes]\n',
]):
    write("config_toml", f"small-{i}", t)
print("seeds written", file=sys.stderr)
