"""Schemas of the other inbound dialects: legacy text completions."""

from __future__ import annotations

from ._base import _INT, _STRING, Schema, _obj
from .chat import CHAT_PARAMS_SCHEMA, DEPTH_NOTE

__all__ = ["DIALECT_COMPONENTS"]

_P = CHAT_PARAMS_SCHEMA

_COMPLETION_REQUEST = _obj(
    {
        "model": {"type": "string", "minLength": 1, "description": "an alias from the config, or provider/model"},
        "prompt": {
            "anyOf": [_STRING, {"type": "array", "items": _STRING, "minItems": 1, "maxItems": 1}],
            "description": "one prompt (several prompts, or token ids, are refused with 400)",
        },
        "stream": {"type": ["boolean", "null"]},
        "echo": {"type": ["boolean", "null"]},
        "suffix": {"type": "null", "description": "not supported: chat models do not fill in the middle"},
        "best_of": {"enum": [1, None]},
        "logprobs": {"type": "null", "description": "not supported here: use chat completions with logprobs"},
        **{
            k: _P[k]
            for k in (
                "max_tokens",
                "temperature",
                "top_p",
                "n",
                "stop",
                "presence_penalty",
                "frequency_penalty",
                "seed",
                "user",
                "logit_bias",
                "stream_options",
                "reasoning_effort",
            )
        },
    },
    ["model", "prompt"],
    not_={"required": ["messages"]},
    additionalProperties=True,
    description="A legacy text completion, served by a chat model (the prompt is one user message). " + DEPTH_NOTE,
)
_COMPLETION_REQUEST["not"] = _COMPLETION_REQUEST.pop("not_")

_COMPLETION_CHOICE = _obj(
    {"text": _STRING, "index": _INT, "logprobs": {"type": "null"}, "finish_reason": {"type": ["string", "null"]}},
    ["text", "index", "logprobs", "finish_reason"],
)
_COMPLETION = _obj(
    {
        "id": _STRING,
        "object": {"const": "text_completion"},
        "created": _INT,
        "model": _STRING,
        "choices": {"type": "array", "items": _COMPLETION_CHOICE},
        "usage": {"$ref": "#/components/schemas/Usage"},
    },
    ["id", "object", "created", "model", "choices"],
)
_COMPLETION_CHUNK = _obj(
    {
        "id": _STRING,
        "object": {"const": "text_completion"},
        "created": _INT,
        "model": _STRING,
        "choices": {"type": "array", "items": _COMPLETION_CHOICE},
        "usage": {"$ref": "#/components/schemas/Usage"},
    },
    ["id", "object", "created", "model", "choices"],
)

DIALECT_COMPONENTS: Schema = {
    "CompletionRequest": _COMPLETION_REQUEST,
    "Completion": _COMPLETION,
    "CompletionChunk": _COMPLETION_CHUNK,
}
