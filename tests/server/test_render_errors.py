"""Error → (status, OpenAI error body, headers), sans-I/O."""

from __future__ import annotations

import orjson
import pytest

from modelway import errors
from modelway.server.errors import render_error, sse_error


def render(exc: errors.ModelwayError) -> tuple[int, dict[str, object], dict[bytes, bytes]]:
    status, body, headers = render_error(exc, "rid-1")
    return status, orjson.loads(body)["error"], dict(headers)


@pytest.mark.parametrize(
    ("exc", "status", "etype", "code"),
    [
        (errors.InvalidRequestError("bad", param="temperature"), 400, "invalid_request_error", None),
        (errors.UnknownModelError("nope"), 404, "invalid_request_error", "model_not_found"),
        (errors.BadRequestError("x", provider="zhipu", code="1214"), 400, "invalid_request_error", "1214"),
        (errors.ContentFilterError("x", provider="zhipu", code="1301"), 400, "content_filter", "content_filter"),
        (errors.ContextLengthError("x", provider="openai"), 400, "context_length_exceeded", None),
        (errors.AuthenticationError("x", provider="zhipu"), 502, "upstream_error", "upstream_authentication_failed"),
        (
            errors.PermissionDeniedError("arrears", provider="dashscope"),
            502,
            "upstream_error",
            "upstream_permission_denied",
        ),
        (
            errors.NotFoundError("x", provider="openai", code="model_not_found"),
            404,
            "not_found_error",
            "model_not_found",
        ),
        (errors.UpstreamServerError("x", provider="openai"), 502, "upstream_error", None),
        (errors.ProviderConnectionError("x", provider="openai"), 502, "connection_error", None),
        (errors.StreamError("x", provider="openai"), 502, "stream_error", None),
        (errors.ProviderTimeoutError("x", provider="openai"), 504, "timeout_error", None),
        (errors.ConfigError("no key"), 500, "configuration_error", "configuration_error"),
    ],
)
def test_statuses_and_bodies(exc: errors.ModelwayError, status: int, etype: str, code: str | None) -> None:
    got_status, body, _ = render(exc)
    assert (got_status, body["type"], body["code"]) == (status, etype, code)
    assert body["message"] and body["request_id"] == "rid-1" and "param" in body


def test_rate_limit_has_retry_after_rounded_up() -> None:
    status, body, headers = render(errors.RateLimitError("slow", provider="zhipu", code="1302", retry_after=2.2))
    assert status == 429 and body["code"] == "rate_limit_exceeded" and headers[b"retry-after"] == b"3"


def test_all_deployments_failed_takes_the_last_status_and_the_soonest_retry() -> None:
    exc = errors.AllDeploymentsFailedError(
        "all failed",
        [
            errors.RateLimitError("a", provider="zhipu", retry_after=9),
            errors.RateLimitError("b", provider="dashscope", retry_after=4),
        ],
    )
    status, body, headers = render(exc)
    assert status == 429 and headers[b"retry-after"] == b"4"
    mixed = errors.AllDeploymentsFailedError(
        "all failed",
        [
            errors.RateLimitError("a", provider="zhipu", retry_after=9),
            errors.ProviderTimeoutError("b", provider="dashscope"),
        ],
    )
    assert render(mixed)[0] == 504


def test_sse_error_event() -> None:
    raw = sse_error(errors.UpstreamServerError("boom", provider="openai"), "rid-2")
    assert raw.startswith(b"data: ") and raw.endswith(b"\n\n")
    err = orjson.loads(raw[6:])["error"]
    assert err["status"] == 502 and err["request_id"] == "rid-2" and "boom" in err["message"]
