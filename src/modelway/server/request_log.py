"""One structured line per request: who (the key's name), what (model, deployment, endpoint), how it went (status,
latency, time to first token, tokens, cost, error) — as JSON or ``key=value`` text, to standard error or a file.

A line is written when the request is counted (its ticket settles, before the answer's last byte), or, for a
request the gateway answered without admitting it (bad JSON, a 401, an unknown route), when its answer is sent.
Secrets never reach a line: headers are not logged at all (so neither ``Authorization`` nor ``x-api-key``), a
deployment is its ``provider/model`` (never its base URL or key), a path is the route's (a path no route has is
cut, and anything in it that looks like a key is masked; the cluster's secret prefix is never written). With
``request_log.bodies`` the request's body and a whole answer's body are added, cut at ``max_body_bytes``, with the
values of secret-named fields (``api_key``, ``authorization``, ``password``, ``*_token`` ...; JSON members, in JSON
inside a string too, and URLs' query parameters) and secret-looking strings (``sk-…``, ``mw-…``, ``Bearer …``, JWTs,
AWS access keys) masked as ``[redacted]`` (:func:`clip_body`; the same text is stored with the request's usage
record, for the console). A stream's answer is not kept: its chunks are sent as they come, never gathered.

Each line is one ``write`` to the file descriptor (opened with ``O_APPEND``): the lines of several workers sharing a
file do not interleave.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import string
from typing import Any

import orjson

from ..config import RequestLogConfig
from ..usage.records import UsageRecord

__all__ = ["REDACTED", "RequestLog", "clip_body", "redact_text", "secret_field"]

log = logging.getLogger("modelway.server")

REDACTED = "[redacted]"

#: field names whose values are secrets (compared lower-case, ``-`` read as ``_``)
_SECRET_NAMES = frozenset(
    {
        *("authorization", "proxy_authorization", "cookie", "set_cookie", "password", "passwd", "secret"),
        *("token", "key", "apikey", "api_key", "x_api_key", "access_token", "refresh_token", "id_token"),
        *("auth_token", "client_secret", "private_key", "secret_key", "access_key", "session_token"),
        *("credential", "credentials", "master_key", "x_goog_api_key"),
    }
)
_SECRET_ENDINGS = ("api_key", "_secret", "_password", "_token", "access_key", "private_key", "secret_key")

# a JSON member with a secret's name: its value (a string, possibly cut at the end) is masked
_NAMES = "|".join(
    sorted(
        {n.replace("_", "[-_]") for n in _SECRET_NAMES}
        | {r"[A-Za-z0-9_\-]*" + e.replace("_", "[-_]") for e in _SECRET_ENDINGS}
    )
)
_MEMBER = re.compile(r'("(?i:' + _NAMES + r')"\s*:\s*)"(?:[^"\\]|\\.)*(?:"|\\?$)')
# the same member in JSON inside a JSON string (a tool call's arguments, JSON pasted into a message), its quotes
# escaped: \"api_key\": \"...\" (in the value, \\ and what follows is one of its characters, escaped: \\\" is a quote)
_ESCAPED_MEMBER = re.compile(
    r'(\\"(?i:' + _NAMES + r')\\"\s*:\s*)\\"(?:[^"\\]|\\\\(?:\\.|[^"\\])|\\[^"\\])*(?:\\"|\\*$)'
)
# any JSON member's name: a text without a secret one needs no member pass (finding the names costs a tenth of it)
_NAME = re.compile(r'"([A-Za-z0-9_\-]+)"\s*:')
# the same, its quotes escaped (looked for only in a text that holds \")
_ESCAPED_NAME = re.compile(r'\\"([A-Za-z0-9_\-]+)\\"\s*:')
# a URL's query parameter (in a body: an image's address, a link in a message); masked when its name is a secret's
_QUERY = re.compile(r"([?&][A-Za-z0-9_.\-]+=)([^&#\s\"'\\<>]+)")


def _edge(start: str) -> str:
    """A lookbehind after ``start`` (a regex of fixed width): ``start`` begins at an ASCII word's edge, or right after
    a JSON escape (``\\n``, ``\\u662f``: a key on a new line, or after Chinese text a client escaped): the escape's
    letter is not part of the key."""
    return rf"(?:(?<![A-Za-z0-9_]{start})|(?<=\\[nrtbf]{start})|(?<=\\u[0-9A-Fa-f]{{4}}{start}))"


# strings that look like credentials wherever they are, starting and ending at an ASCII word's edge (a key right
# after Chinese text is found: ``\b`` would see no edge between 是 and sk-). The edge before is a lookbehind after the
# first letters rather than before them: a pattern whose branches all begin with letters is searched for those
# letters only, 7x faster over a body that holds none
_TOKENS = re.compile(
    r"(?i:bearer|basic)\s+[A-Za-z0-9._~+/=\-]{6,}"  # an Authorization value
    rf"|(?:sk|pk|rk|mw)-{_edge('..-')}[A-Za-z0-9_\-]{{6,}}"  # OpenAI/Anthropic-style keys, modelway virtual keys
    rf"|sess-{_edge('sess-')}[A-Za-z0-9_\-]{{6,}}"
    rf"|eyJ{_edge('eyJ')}[A-Za-z0-9_\-]{{4,}}\.[A-Za-z0-9_\-]{{4,}}\.[A-Za-z0-9_\-]*"  # JWTs (Zhipu signs with one)
    rf"|(?:AKIA|ASIA){_edge('....')}[0-9A-Z]{{16}}(?![A-Za-z0-9_])"  # AWS access key ids
    rf"|AIza{_edge('AIza')}[0-9A-Za-z_\-]{{20,}}"  # Google API keys
)
# what a text must hold for _TOKENS to find anything in it (bearer and basic in any case)
_TOKEN_STARTS = ("sk-", "pk-", "rk-", "mw-", "sess-", "eyJ", "AKIA", "ASIA", "AIza")
# the characters re's IGNORECASE matches with an ASCII letter (İ ı ſ K): with one of them, a text is read the slow way
_FOLDS_TO_ASCII = ("\u0130", "\u0131", "\u017f", "\u212a")
# a path segment that looks like a key (long and random, or a known prefix)
_SEGMENT = re.compile(r"(?<=/)(?:(?:sk|pk|rk|mw|sess)-[^/]*|[A-Za-z0-9_\-=.~+]{32,})(?=/|$)")
_MAX_PATH = 200
# the characters of a key, and of the word a cut body's end is dropped to (str.rstrip: a regex anchored at the end
# was tried at every position of a 4 KiB body, 0.2 ms)
_KEY_CHARS = string.ascii_letters + string.digits + "._~+/=-"


def secret_field(name: str) -> bool:
    """Whether a field (a header, a JSON member, a query parameter) of this name holds a secret."""
    n = name.lower().replace("-", "_")
    return n in _SECRET_NAMES or n.endswith(_SECRET_ENDINGS)


def redact_text(text: str) -> str:
    """``text`` (JSON, or any text) with secret-named JSON members' values and secret-looking strings masked.

    Each pass runs only over a text it can change: a secret-named member, or the start of a secret-looking string,
    must be in it (a 4 KiB JSON body: 0.04–0.3 ms, from 0.3–2.2 ms with both passes always run; BENCHMARKS.md)."""
    plain = text.isascii() or not any(c in text for c in _FOLDS_TO_ASCII)
    if not plain or any(map(secret_field, set(_NAME.findall(text)))):
        text = _MEMBER.sub(lambda m: m.group(1) + '"' + REDACTED + '"', text)
    if '\\"' in text and (not plain or any(map(secret_field, set(_ESCAPED_NAME.findall(text))))):
        text = _ESCAPED_MEMBER.sub(lambda m: m.group(1) + '\\"' + REDACTED + '\\"', text)
    if "=" in text and ("?" in text or "&" in text):
        text = _QUERY.sub(_query_parameter, text)
    if not plain or any(s in text for s in _TOKEN_STARTS) or "bearer" in (low := text.lower()) or "basic" in low:
        text = _TOKENS.sub(REDACTED, text)
    return text


def _query_parameter(m: re.Match[str]) -> str:
    return m.group(1) + REDACTED if secret_field(m.group(1)[1:-1]) else m.group(0)


def clip_body(body: bytes, limit: int) -> str:
    """A body as logged: at most ``limit`` bytes of it, redacted, and at most ``limit`` bytes of UTF-8 once redacted;
    a cut body ends with how long it was. The cut
    drops a word it would split (so no prefix of a key is left where masking could not recognise it). Bytes that are
    not UTF-8, and NUL (PostgreSQL's text cannot hold it), become U+FFFD."""
    cut = len(body) > limit
    text = body[:limit].decode("utf-8", "replace")
    if cut:
        text = text.rstrip(_KEY_CHARS)
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    text = redact_text(text)
    if len(text) * 4 > limit and len(encoded := text.encode()) > limit:
        # masking lengthened it, or U+FFFD (3 bytes) took the place of bytes: cut again (nothing secret is left)
        text, cut = encoded[:limit].decode("utf-8", "ignore"), True
    return f"{text}…({len(body)} bytes)" if cut else text


def clean_path(path: str, secret_prefix: str | None = None) -> str:
    """A request's path as logged: the cluster's secret prefix replaced, key-like segments masked, bounded."""
    if secret_prefix and path.startswith(secret_prefix):
        path = "/{cluster}" + path[len(secret_prefix) :]
    path = _SEGMENT.sub(REDACTED, path)
    return path if len(path) <= _MAX_PATH else path[:_MAX_PATH] + "…"


_second: list[Any] = [None, ""]


def _iso(ts: float) -> str:
    """``2026-05-01T12:00:00.123Z`` (the part up to the second made once a second)."""
    whole = int(ts)
    if _second[0] != whole:
        _second[0] = whole
        _second[1] = dt.datetime.fromtimestamp(whole, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_second[1]}.{int((ts - whole) * 1000):03d}Z"


class RequestLog:
    """Where request lines go, and in which format (``request_log:`` in the config)."""

    def __init__(self, config: RequestLogConfig, *, secret_prefix: str | None = None) -> None:
        self.config = config
        self.secret_prefix = secret_prefix or None
        self.json = config.format == "json"
        self.skip_probes = config.skip_probes
        self._own = config.path is not None
        self._fd = os.open(config.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640) if config.path else 2
        self._failing = False

    def close(self) -> None:
        if self._own and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def write(
        self,
        record: UsageRecord,
        *,
        key_name: str | None = None,
        error_type: str | None = None,
        method: str | None = None,
        path: str | None = None,
        request_body: str | None = None,
        response_body: str | None = None,
    ) -> None:
        """Write one request's line, with the bodies given (as :func:`clip_body` made them). Never raises: a log that
        cannot be written is said once, not per request."""
        entry: dict[str, Any] = {
            "ts": _iso(record.ts),
            "request_id": record.request_id,
            "key": key_name,
            "key_id": record.key_id,
            "method": method,
            "path": clean_path(path, self.secret_prefix) if path is not None else None,
            "endpoint": record.endpoint,
            "model": record.model or None,
            "deployment": record.deployment,
            "stream": record.stream,
            "status": record.status,
            "latency_ms": round(record.latency_ms, 3),
            "ttft_ms": round(record.ttft_ms, 3) if record.ttft_ms is not None else None,
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "total_tokens": record.total_tokens,
            "cost": record.cost,
            "estimated": record.estimated,
            "attempts": record.attempts,
            "fallback": record.fallback,
            "error": record.error,
            "error_type": error_type,
        }
        if request_body is not None:
            entry["request_body"] = request_body
        if response_body is not None:
            entry["response_body"] = response_body
        try:
            line = orjson.dumps(entry) + b"\n" if self.json else _text(entry)
            os.write(self._fd, line)
        except Exception as exc:  # a full disk, a closed descriptor: the request itself is not affected
            if not self._failing:
                self._failing = True
                log.warning("cannot write the request log (%s); further failures are not reported", exc)
        else:
            self._failing = False


_QUOTE = re.compile(r'[\s"=\\]|^$')


def _text(entry: dict[str, Any]) -> bytes:
    """logfmt: ``key=value`` pairs, values quoted (as JSON strings) when they hold spaces, quotes or ``=``; empty
    values left out."""
    parts = []
    for k, v in entry.items():
        if v is None:
            continue
        if isinstance(v, str):
            parts.append(f"{k}={orjson.dumps(v).decode()}" if _QUOTE.search(v) else f"{k}={v}")
        elif v is True or v is False:
            parts.append(f"{k}=true" if v else f"{k}=false")
        else:
            parts.append(f"{k}={v}")
    return (" ".join(parts) + "\n").encode()
