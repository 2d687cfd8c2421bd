"""Schemathesis hooks for the fuzz test (fuzz.rs).

An `Idempotency-Key` or a `reservation_id` names one request: sent again with a different request,
it is refused with 422 `idempotency_key_reused` or `reservation_conflict`, as it should be. The
fuzzer draws keys and ids from a small pool ("0", the nil UUID, ...), so left alone it reuses them
across unrelated requests, and most of its schema-valid purchases end in that refusal instead of
reaching the purchase logic. So each valid key gets a serial number and each valid id a fresh UUID
before the request is sent, as a real client's would; invalid ones are sent as drawn, so they still
test the rejection. (Repeats with the same key are tested in ticketing.rs.)
"""

import itertools
import re
import uuid

import schemathesis

# `IdempotencyKey` in src/domain.rs: 1 to 255 visible ASCII characters.
KEY = re.compile(r"[!-~]{1,255}")
KEY_LEN_MAX = 255
UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
SERIALS = itertools.count()
# Keeps serials apart from those of earlier runs against the same server.
RUN = uuid.uuid4().hex[:8]


@schemathesis.hook
def before_call(context, case, kwargs):
    for name, key in (case.headers or {}).items():
        if name.lower() == "idempotency-key" and isinstance(key, str) and KEY.fullmatch(key):
            serial = f"~{RUN}.{next(SERIALS)}"
            case.headers[name] = key[: KEY_LEN_MAX - len(serial)] + serial
    body = case.body
    if isinstance(body, dict):
        reservation = body.get("reservation_id")
        if isinstance(reservation, str) and UUID.fullmatch(reservation):
            body["reservation_id"] = str(uuid.uuid4())
