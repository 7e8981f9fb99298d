"""The modelway exception tree.

Every error modelway raises derives from :class:`ModelwayError`::

    ModelwayError
    ├── ConfigError                    bad configuration, unknown provider, missing credentials
    ├── ServiceUnavailableError        the gateway's store or limiter is down (503)
    │   └── GatewayShutdownError       the gateway is shutting down and ended the request (503)
    ├── InvalidRequestError            the caller's request is malformed (raised before any I/O)
    │   └── UnknownModelError          the model or alias is not served
    ├── ProviderError                  the upstream provider answered with an error, or could not be reached
    │   ├── BadRequestError            400: the provider rejected the request
    │   │   ├── ContentFilterError     the provider's safety filter blocked input or output
    │   │   └── ContextLengthError     the prompt is longer than the model's context window
    │   ├── AuthenticationError        401: missing, wrong or expired key
    │   ├── PermissionDeniedError      403 (and account-level refusals such as arrears)
    │   ├── NotFoundError              404: model or endpoint does not exist upstream
    │   ├── RateLimitError             429: too many requests or quota exhausted (carries retry_after)
    │   ├── UpstreamServerError        5xx, overloaded, or an inference failure inside a stream
    │   ├── ProviderTimeoutError       the provider did not answer within the timeout
    │   ├── ProviderConnectionError    the provider could not be reached or cut the connection
    │   └── StreamError                the stream broke: malformed event, cut before its end
    └── RoutingError                   no deployment could serve the request
        ├── AllDeploymentsFailedError  every attempt failed; ``attempts`` holds each error
        └── DeploymentUnavailableError no deployment of the model can work as configured (no key for its provider)

Each :class:`ProviderError` carries ``provider``, ``status_code``, ``code`` (the provider's own
error code, as a string), ``request_id``, ``retry_after`` (seconds, if the provider said) and ``body``.
``retryable`` says whether sending the same request again may succeed.
"""

from __future__ import annotations

import builtins
from typing import Any, ClassVar

__all__ = [
    "AllDeploymentsFailedError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigError",
    "ContentFilterError",
    "ContextLengthError",
    "DeploymentUnavailableError",
    "GatewayShutdownError",
    "InvalidRequestError",
    "ModelwayError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitError",
    "RoutingError",
    "ServiceUnavailableError",
    "StreamError",
    "UnknownModelError",
    "UpstreamServerError",
    "error_for_status",
]


class ModelwayError(Exception):
    """Root of every error modelway raises."""

    #: HTTP status the gateway answers with when this error reaches a client.
    http_status: ClassVar[int] = 500
    #: OpenAI error ``type`` used when rendering this error.
    error_type: ClassVar[str] = "api_error"
    #: Whether retrying the same request may succeed.
    retryable: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ServiceUnavailableError(ModelwayError):
    """A service the gateway depends on (its store, its limiter) is unavailable; the request is refused, never
    admitted unchecked (answered 503)."""

    http_status = 503
    error_type = "unavailable"


class GatewayShutdownError(ServiceUnavailableError):
    """The gateway is shutting down and its deadline for requests in flight passed: the request was ended (a
    stream with an error event). Another replica can serve it: retry."""

    code = "shutting_down"

    def __init__(self, message: str = "the gateway is shutting down; send the request again") -> None:
        super().__init__(message)


class ConfigError(ModelwayError):
    """Raised when configuration is invalid: unknown provider, missing credentials, bad config field."""

    http_status = 500
    error_type = "configuration_error"


class InvalidRequestError(ModelwayError):
    """Raised before any I/O when the caller's request is malformed. ``param`` names the field."""

    http_status = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class UnknownModelError(InvalidRequestError):
    """Raised when the requested model is neither ``provider/model`` of a known provider nor a configured alias."""

    http_status = 404

    def __init__(self, message: str, *, param: str | None = "model", code: str | None = "model_not_found") -> None:
        super().__init__(message, param=param, code=code)


class ProviderError(ModelwayError):
    """An upstream provider answered with an error or could not be reached.

    Raised from a non-streaming call, or from inside a stream (an error frame mid-stream raises
    at the point of the stream where it arrived; nothing is swallowed).
    """

    http_status = 502
    error_type = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        body: Any = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body
        self.param = param

    def __str__(self) -> str:
        parts = [p for p in (self.provider, str(self.status_code) if self.status_code else None, self.code) if p]
        prefix = f"[{' '.join(parts)}] " if parts else ""
        suffix = f" (request id {self.request_id})" if self.request_id else ""
        return f"{prefix}{self.message}{suffix}"


class BadRequestError(ProviderError):
    """The provider rejected the request as invalid (HTTP 400 or 422). Not retried."""

    http_status = 400
    error_type = "invalid_request_error"


class ContentFilterError(BadRequestError):
    """The provider's safety filter blocked the input or the output. Not retried."""

    error_type = "content_filter"


class ContextLengthError(BadRequestError):
    """The prompt (plus ``max_tokens``) exceeds the model's context window. Not retried."""

    error_type = "context_length_exceeded"


class AuthenticationError(ProviderError):
    """The provider refused the credential (HTTP 401). Not retried."""

    http_status = 401
    error_type = "authentication_error"


class PermissionDeniedError(ProviderError):
    """The credential is valid but may not do this (HTTP 403, arrears, unpurchased model). Not retried."""

    http_status = 403
    error_type = "permission_error"


class NotFoundError(ProviderError):
    """The model or endpoint does not exist upstream (HTTP 404). Not retried."""

    http_status = 404
    error_type = "not_found_error"


class RateLimitError(ProviderError):
    """Too many requests or quota exhausted (HTTP 429). Retried, after ``retry_after`` when the provider gave one."""

    http_status = 429
    error_type = "rate_limit_error"
    retryable = True


class UpstreamServerError(ProviderError):
    """The provider failed (HTTP 5xx, overloaded, or an inference failure reported in the stream). Retried."""

    http_status = 502
    error_type = "upstream_error"
    retryable = True


class ProviderTimeoutError(ProviderError, builtins.TimeoutError):
    """The provider did not answer (or stopped sending) within the timeout. Retried."""

    http_status = 504
    error_type = "timeout_error"
    retryable = True


class ProviderConnectionError(ProviderError, builtins.ConnectionError):
    """The provider could not be reached, or closed the connection before answering. Retried."""

    http_status = 502
    error_type = "connection_error"
    retryable = True


class StreamError(ProviderError):
    """The stream broke after it started: a malformed event, or the connection closed before the end."""

    http_status = 502
    error_type = "stream_error"


class RoutingError(ModelwayError):
    """No deployment could serve the request."""

    http_status = 503
    error_type = "routing_error"


class AllDeploymentsFailedError(RoutingError):
    """Every attempt failed. ``attempts`` holds each attempt's error, in order; the last one sets the status."""

    def __init__(self, message: str, attempts: list[ModelwayError]) -> None:
        super().__init__(message)
        self.attempts = attempts


class DeploymentUnavailableError(RoutingError):
    """No deployment of the model can work as configured (no key for its provider, say): none was tried. The
    gateway answers 503 with code ``deployment_unavailable`` and logged why at its start. Not retried."""

    code = "deployment_unavailable"


_STATUS_TO_CLASS: dict[int, type[ProviderError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PermissionDeniedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: ProviderTimeoutError,
    413: BadRequestError,
    422: BadRequestError,
    429: RateLimitError,
}


def error_for_status(status: int) -> type[ProviderError]:
    """The error class for an upstream HTTP status (5xx and unknown statuses: :class:`UpstreamServerError`)."""
    cls = _STATUS_TO_CLASS.get(status)
    if cls is not None:
        return cls
    if 400 <= status < 500:
        return BadRequestError
    return UpstreamServerError
