"""Zhipu AI (BigModel, GLM) API v4.

The v4 wire format is OpenAI's Chat Completions with a few differences, so this adapter is the generic
:class:`~modelway.providers.openai_compat.OpenAICompatAdapter` plus:

* **Auth.** ``options["auth"]`` picks the credential. ``"key"`` (default, as the current official SDK and docs
  do) sends ``Authorization: Bearer <id>.<secret>``. ``"jwt"`` sends a short-lived HS256 JWT signed with the
  secret half of the key (``options["jwt_ttl"]`` seconds, default 210 like the SDK). The token is cached on
  the adapter instance, never in a module global, so two adapters with two keys never share a token, and it is
  re-signed only when less than 30 s of its life is left.
* **Sampling.** Zhipu's server rejects ``temperature`` and ``top_p`` outside the open interval (0, 1). Like
  the official SDK, ``temperature <= 0`` is sent as ``do_sample: false, temperature: 0.01`` (``0`` means
  greedy, it is never dropped), ``temperature >= 1`` as ``0.99``, and ``top_p`` is clamped into [0.01, 0.99].
  A ``do_sample`` the caller passes in ``extra`` wins over the derived one.
* **Parameters.** ``developer`` messages become ``system`` (Zhipu supports system messages);
  ``max_completion_tokens`` becomes ``max_tokens`` (it wins when both are given); ``user`` becomes
  ``user_id``; ``stream_options`` is never sent: Zhipu always puts the usage on the final chunk.
* **Finish reasons.** ``sensitive`` (the safety filter stopped the output) becomes OpenAI's
  ``content_filter``; ``model_context_window_exceeded`` becomes ``length``; ``network_error`` (an inference
  failure) raises :class:`~modelway.errors.UpstreamServerError` with code ``network_error``.
* **Errors.** Business codes are strings in ``{"error": {"code", "message"}}``; see :data:`ZHIPU_CODES`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import orjson

from ..errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContentFilterError,
    ContextLengthError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    UpstreamServerError,
)
from ..types import ChatRequest, EmbeddingRequest
from .base import HTTPRequest, ProviderSettings, developer_to_system
from .openai_compat import OpenAICompatAdapter, OpenAISpec
from .rerank import ZhipuRerank

__all__ = ["ZHIPU_CODES", "ZHIPU_SPEC", "ZhipuAdapter", "sign_jwt"]


def _codes() -> dict[str, type[ProviderError]]:
    codes: dict[str, type[ProviderError]] = {"500": UpstreamServerError}
    codes.update({str(c): AuthenticationError for c in range(1000, 1005)})
    # 1113 (arrears / no resource package) arrives as HTTP 429, but waiting does not help: the account must be
    # topped up, so it is a PermissionDeniedError (not retried), not a RateLimitError
    codes.update({str(c): PermissionDeniedError for c in range(1110, 1122)})
    codes.update({str(c): BadRequestError for c in (1210, 1212, 1213, 1214, 1215)})
    codes.update({"1211": NotFoundError, "1221": NotFoundError, "1222": NotFoundError})
    codes["1220"] = PermissionDeniedError
    codes.update({"1234": UpstreamServerError, "1261": ContextLengthError, "1301": ContentFilterError})
    # 1302 concurrency, 1303 frequency, 1304 daily quota, 1305 traffic; 1308-1313 coding-plan usage limits
    codes.update({str(c): RateLimitError for c in (1302, 1303, 1304, 1305, *range(1308, 1314))})
    return codes


#: Zhipu business code → error class (codes not listed fall back to the HTTP status)
ZHIPU_CODES: dict[str, type[ProviderError]] = _codes()

ZHIPU_SPEC = OpenAISpec(
    name="zhipu",
    label="Zhipu AI (GLM, API v4)",
    base_url="https://open.bigmodel.cn/api/paas/v4",
    key_env=("ZHIPUAI_API_KEY",),
    base_url_env=("ZHIPUAI_BASE_URL",),
    known_models=("glm-4-flash", "glm-4-plus", "glm-4.5", "glm-4.6", "embedding-3"),
    embeddings=True,
    # Zhipu always sends the usage on the final chunk; the official SDK never sends stream_options
    stream_usage=False,
    drop_params=frozenset({"stream_options"}),
    rename_params={"user": "user_id"},
    codes=ZHIPU_CODES,
    # "sensitive": the safety filter cut the output; OpenAI calls that "content_filter"
    finish_reasons={"sensitive": "content_filter", "model_context_window_exceeded": "length"},
    finish_errors={"network_error": UpstreamServerError},
    reasoning="thinking",  # GLM-4.5 and later: thinking {"type": "enabled" | "disabled"}
)

#: default JWT lifetime (seconds), as the official SDK
JWT_TTL = 210.0
#: a cached JWT is re-signed when less than this many seconds of its life remain
JWT_RENEW_MARGIN = 30.0


def _b64url(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def sign_jwt(api_key_id: str, secret: str, now_ms: int, ttl_ms: int) -> str:
    """An HS256 JWT as Zhipu wants it: header ``{"alg","sign_type"}``, payload times in **milliseconds**."""
    header = _b64url(orjson.dumps({"alg": "HS256", "sign_type": "SIGN"}))
    payload = _b64url(orjson.dumps({"api_key": api_key_id, "exp": now_ms + ttl_ms, "timestamp": now_ms}))
    signing_input = header + b"." + payload
    sig = _b64url(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + sig).decode("ascii")


class ZhipuAdapter(ZhipuRerank, OpenAICompatAdapter):
    """Zhipu GLM API v4: OpenAI-shaped, with JWT or raw-key auth and Zhipu's sampling bounds."""

    spec = ZHIPU_SPEC
    name = ZHIPU_SPEC.name
    label = ZHIPU_SPEC.label
    default_base_url = ZHIPU_SPEC.base_url
    key_env = ZHIPU_SPEC.key_env
    base_url_env = ZHIPU_SPEC.base_url_env
    known_models = ZHIPU_SPEC.known_models
    supports_embeddings = ZHIPU_SPEC.embeddings

    def __init__(self, settings: ProviderSettings, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(settings)
        auth = settings.options.get("auth", "key")
        if auth not in ("key", "jwt"):
            raise ConfigError(f"zhipu: options.auth must be 'key' or 'jwt', not {auth!r}")
        self.auth_mode: str = auth
        ttl = float(settings.options.get("jwt_ttl", JWT_TTL))
        if ttl <= 0:
            raise ConfigError(f"zhipu: options.jwt_ttl must be a positive number of seconds, not {ttl!r}")
        self.jwt_ttl = ttl
        # renew 30 s before expiry, or halfway through a token that lives less than a minute
        self._renew_margin = min(JWT_RENEW_MARGIN, ttl / 2)
        #: wall clock in seconds (the JWT carries absolute times); injectable for tests
        self._clock = clock
        self._token: str | None = None
        self._token_exp = 0.0

    # -- auth -------------------------------------------------------------------------------------
    def token(self) -> str:
        """The JWT to send now: the cached one, or a new one when the cached one is close to expiry."""
        now = self._clock()
        if self._token is not None and now < self._token_exp - self._renew_margin:
            return self._token
        key = self.require_key()
        key_id, _, secret = key.partition(".")
        if not key_id or not secret:
            raise ConfigError(
                "zhipu: auth 'jwt' needs an API key of the form '<id>.<secret>' (as the BigModel console gives it)"
            )
        now_ms = int(now * 1000)
        self._token = sign_jwt(key_id, secret, now_ms, int(self.jwt_ttl * 1000))
        self._token_exp = now + self.jwt_ttl
        return self._token

    def auth_headers(self) -> dict[str, str]:
        if self.auth_mode == "jwt":
            return {"Authorization": f"Bearer {self.token()}"}
        return {"Authorization": f"Bearer {self.require_key()}"}

    # -- requests ---------------------------------------------------------------------------------
    def chat_payload(self, req: ChatRequest) -> dict[str, Any]:
        params = dict(req.params)
        if "max_completion_tokens" in params:
            params["max_tokens"] = params.pop("max_completion_tokens")
        temperature = params.get("temperature")
        if temperature is not None:
            if temperature <= 0:
                # greedy: Zhipu rejects 0; the SDK sends do_sample=false and the smallest accepted value
                params["temperature"] = 0.01
                params["do_sample"] = False
            elif temperature >= 1:
                params["temperature"] = 0.99
        top_p = params.get("top_p")
        if top_p is not None:
            params["top_p"] = min(0.99, max(0.01, top_p))
        # the generic payload renames user → user_id, drops stream_options and lays the extras on top
        return super().chat_payload(replace(req, messages=developer_to_system(req.messages), params=params))

    def embed_request(self, req: EmbeddingRequest) -> HTTPRequest:
        # exactly what the caller gave: model, input, dimensions, ... (Zhipu answers with floats)
        return self.json_request("/embeddings", {"model": req.model, "input": req.input, **req.params})

    def error_from_payload(self, status: int | None, headers: Mapping[str, str], data: Any) -> ProviderError:
        err = super().error_from_payload(status, headers, data)
        if isinstance(data, dict) and isinstance(data.get("error"), dict) and not err.request_id:
            rid = data["error"].get("request_id") or data["error"].get("id")
            err.request_id = str(rid) if rid else None
        return err
