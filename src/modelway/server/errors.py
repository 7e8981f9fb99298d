"""Errors → the OpenAI error body ``{"error": {"message", "type", "param", "code"}}`` with the right status.

Upstream failures are the gateway's upstream's fault, not the caller's: an upstream 401/403 (our provider key is
refused, or the account is in arrears) is answered 502, so callers never mistake it for their own key being wrong.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

import orjson

from ..auth.authenticator import Caller, GatewayAuthError
from ..errors import (
    AllDeploymentsFailedError,
    AuthenticationError,
    ConfigError,
    ContentFilterError,
    InvalidRequestError,
    ModelwayError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
)
from ..limits.base import LimitExceededError

__all__ = [
    "Forbidden",
    "GatewayAuthError",
    "MethodNotAllowed",
    "NotFound",
    "master_only",
    "public_message",
    "render_error",
    "sse_error",
]

log = logging.getLogger("modelway.server")


class Forbidden(InvalidRequestError):
    http_status = 403
    error_type = "permission_error"


def master_only(caller: Caller, what: str) -> None:
    """Refuse ``what`` to an admin key: only the master key may do it. An admin key may not make or change admin
    keys (its revocation must lock it out: it could otherwise mint itself a successor or lift its own expiry), nor
    add or change deployments (a deployment's ``api_key_env`` and ``api_base`` could send the gateway's secrets to a
    server of its choosing); it may disable, enable and reset them."""
    if caller.key is not None:
        raise Forbidden(f"{what} needs the master key (server.master_key), not an admin key", code="master_only")


class NotFound(InvalidRequestError):
    http_status = 404

    def __init__(self, message: str, *, param: str | None = None, code: str | None = "not_found") -> None:
        super().__init__(message, param=param, code=code)


class MethodNotAllowed(InvalidRequestError):
    """Answered 405 with an ``Allow`` header."""

    http_status = 405

    def __init__(self, method: str, path: str, allow: str) -> None:
        super().__init__(f"{method} is not allowed on {path} (allowed: {allow})", code="method_not_allowed")
        self.allow = allow


def _describe(exc: ModelwayError) -> tuple[int, str, str | None, str | None, float | None]:
    """status, type, param, code, retry_after"""
    if isinstance(exc, AllDeploymentsFailedError) and exc.attempts:
        status, etype, param, code, retry_after = _describe(exc.attempts[-1])
        if all(isinstance(a, RateLimitError) for a in exc.attempts):
            waits = [a.retry_after for a in exc.attempts if isinstance(a, ProviderError) and a.retry_after]
            retry_after = min(waits) if waits else retry_after
        return status, etype, param, code, retry_after
    if isinstance(exc, LimitExceededError):
        return exc.http_status, exc.error_type, exc.param, exc.code, exc.retry_after
    if isinstance(exc, InvalidRequestError):
        return exc.http_status, exc.error_type, exc.param, exc.code, None
    if isinstance(exc, ProviderError):
        if isinstance(exc, AuthenticationError):
            return 502, "upstream_error", None, "upstream_authentication_failed", None
        if isinstance(exc, PermissionDeniedError):
            return 502, "upstream_error", None, "upstream_permission_denied", None
        if isinstance(exc, ContentFilterError):
            return 400, "content_filter", exc.param, "content_filter", None
        code = exc.code
        if isinstance(exc, RateLimitError):
            code = "rate_limit_exceeded"
        return exc.http_status, exc.error_type, exc.param, code, exc.retry_after
    if isinstance(exc, ConfigError):
        return 500, exc.error_type, None, "configuration_error", None
    return exc.http_status, exc.error_type, None, getattr(exc, "code", None), None


#: what looks like a credential (or a masked one: providers quote a key's first and last characters)
_SECRET = re.compile(r"\b(?:sk|ak|pk|rk|key|api[-_]?key)[-_][A-Za-z0-9*._\-]{6,}|\S*\*{3,}\S*", re.IGNORECASE)


def public_message(exc: ModelwayError) -> str:
    """The message a caller of the gateway may see: an upstream's refusal of the gateway's own key is told without
    the provider's words (they quote the key), and anything like a key is masked in other upstream messages. The
    whole message is logged for the operator."""
    if isinstance(exc, AllDeploymentsFailedError) and exc.attempts:
        return f"all {len(exc.attempts)} deployments failed; last: {_provider_message(exc.attempts[-1])}"
    if isinstance(exc, ProviderError):
        return _provider_message(exc)
    return str(exc)


def _provider_message(exc: ModelwayError) -> str:
    if not isinstance(exc, ProviderError):
        return str(exc)
    if isinstance(exc, AuthenticationError):
        message = (
            f"the provider refused the gateway's credentials (HTTP {exc.status_code}); the gateway's operator must "
            "check its key for this provider"
        )
    else:
        message = _SECRET.sub("[redacted]", str(exc))
    if exc.provider and not message.startswith("["):
        message = f"[{exc.provider}] {message}"
    return message


def error_payload(exc: ModelwayError, request_id: str | None) -> tuple[int, dict[str, Any], float | None]:
    status, etype, param, code, retry_after = _describe(exc)
    message = public_message(exc)
    body: dict[str, Any] = {"message": message, "type": etype, "param": param, "code": code}
    if request_id:
        body["request_id"] = request_id
    return status, {"error": body}, retry_after


def render_error(exc: ModelwayError, request_id: str | None) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """HTTP status, JSON body and extra headers (``Retry-After``) for an error before any response was sent."""
    status, body, retry_after = error_payload(exc, request_id)
    headers: list[tuple[bytes, bytes]] = []
    if isinstance(exc, MethodNotAllowed):
        headers.append((b"allow", exc.allow.encode()))
    if status == 429 and retry_after is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
    level = logging.WARNING if status < 500 else logging.ERROR
    log.log(level, "request %s failed: %s %s", request_id, status, exc)
    return status, orjson.dumps(body), headers


def sse_error(exc: ModelwayError, request_id: str | None) -> bytes:
    """The SSE event that ends a stream which failed after it started."""
    status, body, _ = error_payload(exc, request_id)
    body["error"]["status"] = status
    log.error("request %s failed mid-stream: %s", request_id, exc)
    return b"data: " + orjson.dumps(body) + b"\n\n"
