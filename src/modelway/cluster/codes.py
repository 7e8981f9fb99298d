"""FastChat's error codes (``fastchat.constants.ErrorCode``), and which one a gateway error is told with.

FastChat workers answer errors in-band, HTTP 200 with ``{"text": <message>, "error_code": <code>}``; its API server
turns the code into the ``code`` of its OpenAI-style error. DB-GPT's API server uses the same codes, so the DB-GPT
worker API reports them in ``ModelOutput.error_code`` too.
"""

from __future__ import annotations

from enum import IntEnum

from ..errors import (
    AllDeploymentsFailedError,
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    InvalidRequestError,
    ModelwayError,
    PermissionDeniedError,
    ProviderTimeoutError,
    RateLimitError,
    ServiceUnavailableError,
    UnknownModelError,
)
from ..limits.base import LimitExceededError
from ..server.errors import Forbidden, GatewayAuthError

__all__ = ["ErrorCode", "error_code"]


class ErrorCode(IntEnum):
    VALIDATION_TYPE_ERROR = 40001
    INVALID_AUTH_KEY = 40101
    INCORRECT_AUTH_KEY = 40102
    NO_PERMISSION = 40103
    INVALID_MODEL = 40301
    PARAM_OUT_OF_RANGE = 40302
    CONTEXT_OVERFLOW = 40303
    RATE_LIMIT = 42901
    QUOTA_EXCEEDED = 42902
    ENGINE_OVERLOADED = 42903
    INTERNAL_ERROR = 50001
    CUDA_OUT_OF_MEMORY = 50002
    GRADIO_REQUEST_ERROR = 50003
    GRADIO_STREAM_UNKNOWN_ERROR = 50004
    CONTROLLER_NO_WORKER = 50005
    CONTROLLER_WORKER_TIMEOUT = 50006


def error_code(exc: BaseException) -> ErrorCode:
    """The FastChat code for ``exc``. The caller's mistakes are 4xxxx; the gateway's limits 429xx; a worker that is
    shutting down (or cannot check limits now) ``ENGINE_OVERLOADED``; an upstream that timed out
    ``CONTROLLER_WORKER_TIMEOUT``; any other upstream failure, including the provider refusing the gateway's own
    key, ``INTERNAL_ERROR`` (not the caller's fault)."""
    if isinstance(exc, AllDeploymentsFailedError) and exc.attempts:
        return error_code(exc.attempts[-1])
    if isinstance(exc, LimitExceededError):
        return ErrorCode.QUOTA_EXCEEDED if exc.limit == "budget" else ErrorCode.RATE_LIMIT
    if isinstance(exc, GatewayAuthError):
        return ErrorCode.INVALID_AUTH_KEY
    if isinstance(exc, Forbidden):
        return ErrorCode.NO_PERMISSION
    if isinstance(exc, UnknownModelError):
        return ErrorCode.INVALID_MODEL
    if isinstance(exc, ContextLengthError):
        return ErrorCode.CONTEXT_OVERFLOW
    if isinstance(exc, InvalidRequestError):
        return ErrorCode.PARAM_OUT_OF_RANGE if exc.param else ErrorCode.VALIDATION_TYPE_ERROR
    if isinstance(exc, RateLimitError):
        return ErrorCode.QUOTA_EXCEEDED if exc.code == "insufficient_quota" else ErrorCode.RATE_LIMIT
    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        return ErrorCode.INTERNAL_ERROR
    if isinstance(exc, BadRequestError):
        return ErrorCode.VALIDATION_TYPE_ERROR
    if isinstance(exc, ProviderTimeoutError):
        return ErrorCode.CONTROLLER_WORKER_TIMEOUT
    if isinstance(exc, ServiceUnavailableError):
        return ErrorCode.ENGINE_OVERLOADED
    if isinstance(exc, ModelwayError):
        return ErrorCode.INTERNAL_ERROR
    return ErrorCode.INTERNAL_ERROR
