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
    make_references_hold(case)
    keep_long_polls_short(case)


# `wait_seconds` of `GET /api/v1/changes` may be up to 60: a read with nothing after its cursor
# then waits that long, by design, past the fuzzer's request timeout. Valid waits are cut to one
# second (the long poll itself is tested in changes.rs); invalid ones are sent as drawn.
def keep_long_polls_short(case):
    if case.path != "/api/v1/changes" or not isinstance(case.query, dict):
        return
    wait = case.query.get("wait_seconds")
    if isinstance(wait, (int, str)) and str(wait).isdigit() and int(wait) > 1:
        case.query["wait_seconds"] = 1


# Categories and quotas are named by id, and which ids exist is the server's state, not the
# document's: a line naming a category the event does not sell is refused (422
# `unknown_category`), as is an event whose categories draw on quotas it does not list. Left alone,
# the fuzzer names ids at random and almost never reaches the purchase or the new event. So, as a
# real client would, purchases name the category every event made with a capacity sells
# (`general`), and a new event's categories draw on quotas it lists, in one currency, with windows
# that open before they close; ill-formed values are sent as drawn.
ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
BUYING = re.compile(r".*/(purchase|holds|reserve|waitlist)$")


def _valid_id(value):
    return isinstance(value, str) and ID.fullmatch(value)


def _buyable(body):
    if _valid_id(body.get("category")):
        body["category"] = "general"
    elif "category" not in body and "lines" not in body and "qty" in body:
        # An event of several categories needs one named; every event sells `general`.
        body["category"] = "general"
    lines = body.get("lines")
    if isinstance(lines, list) and lines:
        # One line: two lines of the one category would be refused as a repeat.
        lines[:] = lines[:1]
        if isinstance(lines[0], dict) and _valid_id(lines[0].get("category")):
            lines[0]["category"] = "general"


def _well_formed_event(body):
    quotas = body.get("quotas")
    if isinstance(quotas, list) and all(isinstance(q, dict) for q in quotas):
        known = []
        for n, quota in enumerate(quotas):
            # Quotas without categories are one category each, named after the quota: the first
            # is `general`, the category purchases name (see `_buyable`).
            if n == 0 and _valid_id(quota.get("id")):
                quota["id"] = "general"
            if _valid_id(quota.get("id")):
                if quota["id"] in known:
                    quota["id"] = f"q{n}"
                known.append(quota["id"])
    elif "quotas" not in body:
        known = ["general"]
    else:
        return
    categories = body.get("categories")
    if not isinstance(categories, list) or not known:
        return
    seen, currency = set(), None
    for n, category in enumerate(categories):
        if not isinstance(category, dict):
            continue
        # Every event sells `general`, the category purchases name (see `_buyable`).
        if n == 0 and _valid_id(category.get("id")):
            category["id"] = "general"
        if _valid_id(category.get("id")):
            if category["id"] in seen:
                category["id"] = f"c{n}"
            seen.add(category["id"])
        drawn = category.get("quotas")
        if isinstance(drawn, list) and all(_valid_id(q) for q in drawn):
            category["quotas"] = list(dict.fromkeys(q if q in known else known[0] for q in drawn))
        price = category.get("price")
        if isinstance(price, dict) and isinstance(price.get("currency"), str):
            currency = currency or price["currency"]
            price["currency"] = currency
        _whole_window(category)


TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|([+-])(\d{2}):(\d{2}))"
)


def _days_in_month(year, month):
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]


def _instant(value):
    """Seconds since year 0 (proleptic Gregorian, as the server reads RFC 3339), or None."""
    match = TIME.fullmatch(value) if isinstance(value, str) else None
    if not match:
        return None
    year, month, day, hour, minute, second = (int(match[n]) for n in range(1, 7))
    if not 1 <= month <= 12 or not 1 <= day <= _days_in_month(year, month):
        return None
    days = year * 365 + year // 4 - year // 100 + year // 400
    days += sum(_days_in_month(year, m) for m in range(1, month)) + day
    offset = 0 if match[8] == "Z" else (int(match[10]) * 60 + int(match[11])) * 60
    offset = -offset if match[9] == "-" else offset
    fraction = float(match[7]) if match[7] else 0.0
    return ((days * 24 + hour) * 60 + minute) * 60 + second + fraction - offset


def _real_day(body, field):
    # The document's pattern cannot say which days a month has: a 31st of April becomes the 28th.
    value = body.get(field)
    match = TIME.fullmatch(value) if isinstance(value, str) else None
    if match and _instant(value) is None and 1 <= int(match[2]) <= 12:
        body[field] = value[:8] + "28" + value[10:]


def _whole_window(body):
    _real_day(body, "sales_start")
    _real_day(body, "sales_end")
    start, end = _instant(body.get("sales_start")), _instant(body.get("sales_end"))
    if start is not None and end is not None and start >= end:
        body["sales_end"] = None


def make_references_hold(case):
    body = case.body
    if not isinstance(body, dict):
        return
    path = case.formatted_path
    if case.method.upper() == "POST" and BUYING.match(path):
        _buyable(body)
    elif case.method.upper() == "POST" and path == "/api/v1/events":
        _well_formed_event(body)
    elif case.method.upper() == "PATCH" and "/categories/" in path:
        # Both ends together, so a new end never meets an old one the wrong way round.
        if "sales_start" in body or "sales_end" in body:
            body.setdefault("sales_start", None)
            body.setdefault("sales_end", None)
        _whole_window(body)
    elif case.method.upper() == "POST" and path == "/api/v1/webhooks":
        _loopback_url(body)


# A webhook's url is where the server will post, and the fuzz run must reach nothing but this
# machine: the host of every url is 127.0.0.1. Everything else about the url (scheme, user name,
# port, path) is sent as drawn, so a url that was invalid stays invalid and still tests the
# refusal; one whose host itself is ill-formed (empty, not visible ASCII, an unclosed IPv6
# bracket) is refused for that host, and left as drawn.
URL = re.compile(r"(?is)^(https?://)([^/?#]*)(.*)$")
HOST = re.compile(r"[!-~]+")


def _loopback_url(body):
    url = body.get("url")
    match = URL.match(url) if isinstance(url, str) else None
    if not match:
        return
    scheme, authority, rest = match.groups()
    userinfo, _, hostport = authority.rpartition("@")
    userinfo = userinfo + "@" if userinfo else ""
    if hostport.startswith("["):
        host, bracket, port = hostport.partition("]")
        if not bracket:
            return
        host += "]"
    else:
        host, colon, port = hostport.partition(":")
        port = colon + port
    if not HOST.fullmatch(host):
        return
    body["url"] = f"{scheme}{userinfo}127.0.0.1{port}{rest}"
