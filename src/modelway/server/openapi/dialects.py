"""Schemas of the other inbound APIs: legacy text completions, rerank."""

from __future__ import annotations

from ...rerank import MAX_RERANK_DOCUMENTS
from ._base import _INT, _NUMBER, _STRING, Schema, _obj
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

_RERANK_REQUEST = _obj(
    {
        "model": {"type": "string", "minLength": 1, "description": "a rerank model: an alias, or provider/model"},
        "query": {"type": "string", "pattern": "\\S"},
        "documents": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_RERANK_DOCUMENTS,
            "items": {"anyOf": [_STRING, _obj({"text": _STRING}, ["text"])]},
        },
        "top_n": {"type": ["integer", "null"], "minimum": 1},
        "return_documents": {"type": ["boolean", "null"], "description": "default true"},
    },
    ["model", "query", "documents"],
    additionalProperties=True,
    description="A rerank request (Cohere's and Jina's shape); other keys are sent to the provider. " + DEPTH_NOTE,
)
_RERANK = _obj(
    {
        "id": _STRING,
        "model": _STRING,
        "results": {
            "type": "array",
            "items": _obj(
                {"index": _INT, "relevance_score": _NUMBER, "document": _obj({"text": _STRING}, ["text"])},
                ["index", "relevance_score"],
            ),
            "description": "best first; index is the document's place in the request",
        },
        "usage": _obj({"prompt_tokens": _INT, "total_tokens": _INT}, ["total_tokens"]),
        "meta": _obj({"billed_units": _obj({"search_units": _NUMBER})}),
    },
    ["id", "model", "results", "usage"],
)

DIALECT_COMPONENTS: Schema = {
    "RerankRequest": _RERANK_REQUEST,
    "Rerank": _RERANK,
    "CompletionRequest": _COMPLETION_REQUEST,
    "Completion": _COMPLETION,
    "CompletionChunk": _COMPLETION_CHUNK,
}
