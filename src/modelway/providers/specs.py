"""OpenAI-compatible providers, as data. Each entry is everything that differs from OpenAI."""

from __future__ import annotations

from ..errors import (
    AuthenticationError,
    ContentFilterError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UpstreamServerError,
)
from .openai_compat import OpenAISpec

__all__ = ["SPECS"]

OPENAI = OpenAISpec(
    name="openai",
    label="OpenAI",
    base_url="https://api.openai.com/v1",
    key_env=("OPENAI_API_KEY",),
    base_url_env=("OPENAI_BASE_URL",),
    known_models=("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small"),
    embeddings=True,
    # OpenAI refuses fields it does not know inside messages
    reasoning_in_messages=False,
)

DEEPSEEK = OpenAISpec(
    name="deepseek",
    label="DeepSeek",
    base_url="https://api.deepseek.com",
    key_env=("DEEPSEEK_API_KEY",),
    base_url_env=("DEEPSEEK_BASE_URL",),
    known_models=("deepseek-chat", "deepseek-reasoner"),
    # the server ran out of capacity mid-generation: a failure, not a normal end
    finish_errors={"insufficient_system_resource": UpstreamServerError},
    reasoning="deepseek",
)

MOONSHOT = OpenAISpec(
    name="moonshot",
    label="Moonshot AI (Kimi)",
    base_url="https://api.moonshot.cn/v1",
    key_env=("MOONSHOT_API_KEY",),
    base_url_env=("MOONSHOT_BASE_URL",),
    known_models=("moonshot-v1-8k", "moonshot-v1-32k", "kimi-k2-0905-preview"),
    codes={
        "content_filter": ContentFilterError,
        "invalid_authentication_error": AuthenticationError,
        "exceeded_current_quota_error": PermissionDeniedError,
        "engine_overloaded_error": RateLimitError,
        "rate_limit_reached_error": RateLimitError,
    },
    reasoning="drop",  # thinking is chosen by the model (kimi-k2-thinking)
)

DASHSCOPE_COMPATIBLE = OpenAISpec(
    name="dashscope-compatible",
    label="Alibaba DashScope (OpenAI-compatible mode)",
    base_url="https://dashscope.aliyuncs.com/compatible-mode/v1",
    key_env=("DASHSCOPE_API_KEY",),
    base_url_env=("DASHSCOPE_COMPATIBLE_BASE_URL",),
    known_models=("qwen-plus", "qwen-turbo", "qwen-max", "text-embedding-v3"),
    embeddings=True,
    codes={
        "data_inspection_failed": ContentFilterError,
        "limit_requests": RateLimitError,
        "Throttling": RateLimitError,
        "Arrearage": PermissionDeniedError,
        "invalid_api_key": AuthenticationError,
        "model_not_found": NotFoundError,
    },
    reasoning="enable_thinking",
)

QIANFAN = OpenAISpec(
    name="qianfan",
    label="Baidu Qianfan v2",
    base_url="https://qianfan.baidubce.com/v2",
    key_env=("QIANFAN_API_KEY", "QIANFAN_BEARER_TOKEN"),
    base_url_env=("QIANFAN_BASE_URL",),
    known_models=("ernie-4.0-8k", "ernie-3.5-8k", "ernie-speed-128k"),
    embeddings=True,
    codes={"rate_limit_exceeded": RateLimitError, "invalid_model": NotFoundError},
    reasoning="drop",
)

VOLCENGINE = OpenAISpec(
    name="volcengine",
    label="Volcengine Ark (Doubao)",
    base_url="https://ark.cn-beijing.volces.com/api/v3",
    key_env=("ARK_API_KEY", "VOLCENGINE_API_KEY"),
    base_url_env=("ARK_BASE_URL",),
    known_models=("doubao-seed-1-6-250615",),
    embeddings=True,
    codes={
        "SensitiveContentDetected": ContentFilterError,
        "InputTextSensitiveContentDetected": ContentFilterError,
        "OutputTextSensitiveContentDetected": ContentFilterError,
        "AuthenticationError": AuthenticationError,
        "AccountOverdueError": PermissionDeniedError,
        "AccessDenied": PermissionDeniedError,
        "InvalidEndpointOrModel.NotFound": NotFoundError,
        "RateLimitExceeded.EndpointRPMExceeded": RateLimitError,
        "RateLimitExceeded.EndpointTPMExceeded": RateLimitError,
        "ServerOverloaded": RateLimitError,
    },
    reasoning="thinking",
)

SILICONFLOW = OpenAISpec(
    name="siliconflow",
    label="SiliconFlow",
    base_url="https://api.siliconflow.cn/v1",
    key_env=("SILICONFLOW_API_KEY",),
    known_models=("Qwen/Qwen2.5-7B-Instruct", "deepseek-ai/DeepSeek-V3"),
    embeddings=True,
    reasoning="enable_thinking",
)

HUNYUAN = OpenAISpec(
    name="hunyuan",
    label="Tencent Hunyuan (OpenAI-compatible)",
    base_url="https://api.hunyuan.cloud.tencent.com/v1",
    key_env=("HUNYUAN_API_KEY",),
    known_models=("hunyuan-turbos-latest", "hunyuan-lite"),
    embeddings=True,
    # Hunyuan answers its rate limit as HTTP 400 with code 2003
    codes={"2003": RateLimitError},
    reasoning="drop",
)

OLLAMA = OpenAISpec(
    name="ollama",
    label="Ollama (local)",
    base_url="http://127.0.0.1:11434/v1",
    base_url_env=("OLLAMA_BASE_URL",),
    embeddings=True,
    key_required=False,
)

VLLM = OpenAISpec(
    name="vllm",
    label="vLLM (self-hosted)",
    base_url="http://127.0.0.1:8000/v1",
    key_env=("VLLM_API_KEY",),
    base_url_env=("VLLM_BASE_URL",),
    embeddings=True,
    key_required=False,
)

SPECS: tuple[OpenAISpec, ...] = (
    OPENAI,
    DEEPSEEK,
    MOONSHOT,
    DASHSCOPE_COMPATIBLE,
    QIANFAN,
    VOLCENGINE,
    SILICONFLOW,
    HUNYUAN,
    OLLAMA,
    VLLM,
)
