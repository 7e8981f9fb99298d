"""The admin API's usage routes (master key, a store): totals and series from the hourly and daily aggregates, and the
raw records. The web console is built on these answers: their shape is a contract.

::

    GET /admin/usage                     totals per group: ?group_by=key|model|deployment|endpoint|day|hour &since=
                                         &until= &key_id= &model= &format=json|csv
    GET /admin/usage/series              points per hour or day for charts: ?bucket=hour|day &since= &until=
                                         &group_by=key|model|deployment|endpoint &key_id= &model= &limit=
    GET /admin/usage/records             the newest records first: ?limit= &before=<id> &key_id= &model=
                                         &deployment= &endpoint= &status=<code>|2xx|4xx|5xx &since= &until=
    GET /admin/usage/records/{record_id} one record, with ``request_body`` and ``response_body`` (``null``: not kept;
                                         see ``request_log.bodies``)

Times are Unix seconds. Totals and series are read at whole UTC hours (``since`` rounded down, ``until`` up; the
answer says which range it covers); records at the second. A deployment of ``None`` (a request refused before one
was chosen) is the group and the filter value ``(none)``. Totals rows: ``group``, ``requests``, ``errors`` (status
400 or more), ``prompt_tokens``, ``completion_tokens``, ``total_tokens``, ``cost``, ``p50_ms``, ``p95_ms``,
``ttft_p50_ms`` (from fixed-bucket histograms, ``null`` without a value), and ``key_name`` when grouped by key.
"""

from __future__ import annotations

import csv
import io
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError
from ..usage.records import ENDPOINTS, GROUP_BY, MAX_HOURS
from .errors import NotFound
from .gateway import Gateway
from .http import Request, Send, send_json

if TYPE_CHECKING:
    from ..store.sql import SQLStore

__all__ = ["USAGE_ROOT", "usage_route"]

#: the first path segment after /admin/ of these routes
USAGE_ROOT = "usage"

HOUR, DAY = 3600, 86_400
#: the longest range a series per day covers (per hour: MAX_HOURS): the points an answer holds
MAX_DAYS = 366
#: the range of a series, or of totals per hour, when ``since`` is not given
DEFAULT_RANGE = {"hour": 2 * DAY, "day": 30 * DAY}
#: the groups a series can be split by, and the most series shown (the rest summed in one "(other)" series)
SERIES_GROUP_BY = ("key", "model", "deployment", "endpoint")
MAX_SERIES = 50
#: the most characters of a key id, model or deployment filter, and of a record id
MAX_FILTER = 256
CSV_COLUMNS = (
    *("group", "requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens", "cost"),
    *("p50_ms", "p95_ms", "ttft_p50_ms"),
)
_STATUS = re.compile(r"([1-5])(?:xx|([0-9]{2}))")

Route = Callable[[], Awaitable[None]] | None


def usage_route(gw: Gateway, store: SQLStore, req: Request, send: Send, parts: list[str]) -> tuple[Route, str]:
    """The handler of ``req`` under /admin/usage (``None``: the method is not allowed), and the methods allowed."""
    get = req.method == "GET"
    if parts == ["usage"]:
        return ((lambda: _totals(gw, store, req, send)) if get else None), "GET"
    if parts == ["usage", "series"]:
        return ((lambda: _series(gw, store, req, send)) if get else None), "GET"
    if parts == ["usage", "records"]:
        return ((lambda: _records(gw, store, req, send)) if get else None), "GET"
    if len(parts) == 3 and parts[:2] == ["usage", "records"]:
        record_id = parts[2]
        return ((lambda: _record(gw, store, req, send, record_id)) if get else None), "GET"
    raise NotFound(f"no route {req.method} {req.path}")


# -- the query string -------------------------------------------------------------------------------------------------


def _time(q: dict[str, str], name: str) -> float | None:
    v = q.get(name)
    if v is None:
        return None
    try:
        t = float(v)
    except ValueError:
        t = math.nan
    if not math.isfinite(t) or not 0 <= t < 1e11:
        raise InvalidRequestError(f"{name} must be a Unix time in seconds (got {v!r})", param=name)
    return t


def _range(q: dict[str, str]) -> tuple[float | None, float | None]:
    since, until = _time(q, "since"), _time(q, "until")
    if since is not None and until is not None and since >= until:
        raise InvalidRequestError("since must be before until", param="since")
    return since, until


def _text(q: dict[str, str], name: str) -> str | None:
    """A filter's value; empty is no filter."""
    v = q.get(name) or None
    if v is not None and (len(v) > MAX_FILTER or "\x00" in v):
        raise InvalidRequestError(f"{name} must be at most {MAX_FILTER} characters, without NUL", param=name)
    return v


def _choice(q: dict[str, str], name: str, choices: tuple[str, ...], default: str | None) -> str | None:
    v = q.get(name, default)  # (given empty: not one of them)
    if v is not None and v not in choices:
        raise InvalidRequestError(f"{name} must be one of {', '.join(choices)} (got {v!r})", param=name)
    return v


def _int(q: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(name)
    if raw is None:
        return default
    # ASCII digits only ("²" is a digit to isdigit(), not to int()), and few of them (int() refuses 4,300+)
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not lo <= int(raw) <= hi:
        raise InvalidRequestError(f"{name} must be an integer from {lo} to {hi}", param=name)
    return int(raw)


def _status(q: dict[str, str]) -> tuple[int, int] | None:
    raw = q.get("status") or None
    if raw is None:
        return None
    m = _STATUS.fullmatch(raw)
    if m is None:
        raise InvalidRequestError("status must be an HTTP status (e.g. 429) or a class: 2xx, 4xx, 5xx", param="status")
    if m.group(2) is None:
        lo = int(m.group(1)) * 100
        return lo, lo + 100
    code = int(raw)
    return code, code + 1


def _bounded(since: float | None, until: float | None, unit: str, most: int) -> tuple[float, float]:
    """A range of at most ``most`` hours or days (``unit``), ending now and starting ``DEFAULT_RANGE`` before its end
    when not given."""
    step = HOUR if unit == "hour" else DAY
    end = time.time() if until is None else until
    start = end - DEFAULT_RANGE[unit] if since is None else since
    if start >= end:
        raise InvalidRequestError("since must be before until (which is now when not given)", param="since")
    if math.ceil(end / step) - math.floor(start / step) > most:
        raise InvalidRequestError(
            f"a range by {unit} covers at most {most} {unit}s: narrow since and until"
            + (", or group by day" if unit == "hour" else ""),
            param="since",
        )
    return start, end


async def _flush(gw: Gateway) -> None:
    if gw.control.ledger is not None:
        await gw.control.ledger.flush()  # so that the answer includes the records still in memory


# -- the routes -------------------------------------------------------------------------------------------------------


async def _totals(gw: Gateway, store: SQLStore, req: Request, send: Send) -> None:
    q = req.query()
    group_by = _choice(q, "group_by", GROUP_BY, "model") or "model"
    fmt = _choice(q, "format", ("json", "csv"), "json")
    since, until = _range(q)
    if group_by == "hour":
        since, until = _bounded(since, until, "hour", MAX_HOURS)
    key_id, model = _text(q, "key_id"), _text(q, "model")
    await _flush(gw)
    start, end, rows = await store.usage_totals(group_by=group_by, since=since, until=until, key_id=key_id, model=model)
    if fmt == "csv":
        await _send_csv(send, rows, group_by, req.request_id)
        return
    body = {
        "object": "list",
        "group_by": group_by,
        "currency": gw.config.usage.currency,
        "since": start,
        "until": end,
        "data": rows,
    }
    await send_json(send, 200, body, request_id=req.request_id)


async def _send_csv(send: Send, rows: list[dict[str, Any]], group_by: str, request_id: str | None) -> None:
    columns = list(CSV_COLUMNS)
    if group_by == "key":
        columns.insert(1, "key_name")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else _cell(r[c]) for c in columns])
    payload = out.getvalue().encode()
    headers = [
        (b"content-type", b"text/csv; charset=utf-8"),
        (b"content-disposition", f'attachment; filename="usage-by-{group_by}.csv"'.encode()),
        (b"content-length", str(len(payload)).encode()),
    ]
    if request_id:
        headers.append((b"x-request-id", request_id.encode("latin-1")))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _series(gw: Gateway, store: SQLStore, req: Request, send: Send) -> None:
    q = req.query()
    bucket = _choice(q, "bucket", ("hour", "day"), "hour") or "hour"
    group_by = _choice(q, "group_by", SERIES_GROUP_BY, None)
    limit = _int(q, "limit", 10, 1, MAX_SERIES)
    since, until = _range(q)
    start, end = _bounded(since, until, bucket, MAX_HOURS if bucket == "hour" else MAX_DAYS)
    key_id, model = _text(q, "key_id"), _text(q, "model")
    await _flush(gw)
    body = await store.usage_series(
        bucket=bucket, since=start, until=end, group_by=group_by, key_id=key_id, model=model, limit=limit
    )
    body["currency"] = gw.config.usage.currency
    await send_json(send, 200, body, request_id=req.request_id)


def _record_dict(row: tuple[int, str | None, Any]) -> dict[str, Any]:
    row_id, key_name, rec = row
    return {"id": row_id, **rec.to_dict(), "key_name": key_name}


async def _records(gw: Gateway, store: SQLStore, req: Request, send: Send) -> None:
    from ..store.sql import RecordFilter

    q = req.query()
    limit = _int(q, "limit", 100, 1, 10_000)
    before = _int(q, "before", 0, 1, 2**63 - 1) or None
    since, until = _range(q)
    endpoint = _choice(q, "endpoint", ENDPOINTS, None)
    where = RecordFilter(
        key_id=_text(q, "key_id"),
        model=_text(q, "model"),
        deployment=_text(q, "deployment"),
        endpoint=endpoint,
        status=_status(q),
        since=since,
        until=until,
        before=before,
    )
    await _flush(gw)
    rows, more = await store.usage_page(where, limit=limit)
    body = {
        "object": "list",
        "data": [_record_dict(r) for r in rows],
        "has_more": more,
        "next_before": rows[-1][0] if more else None,
    }
    await send_json(send, 200, body, request_id=req.request_id)


async def _record(gw: Gateway, store: SQLStore, req: Request, send: Send, record_id: str) -> None:
    if len(record_id) > MAX_FILTER or "\x00" in record_id:
        raise NotFound(f"no usage record {record_id[:64]!r}", param="record_id", code="record_not_found")
    await _flush(gw)
    row = await store.usage_record(record_id)
    if row is None:
        raise NotFound(f"no usage record {record_id!r}", param="record_id", code="record_not_found")
    body = _record_dict(row)  # (a record kept with its bodies has them; null for one without)
    body.setdefault("request_body", None)
    body.setdefault("response_body", None)
    await send_json(send, 200, body, request_id=req.request_id)


def _cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text starting like a formula (``=``, ``+``, ``-``, ``@``, tab, CR) gets
    a leading ``'`` (model names and key names come from callers)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
