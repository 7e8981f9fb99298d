"""Prompts rendered by FastChat conversation templates, parsed back into chat messages
(:mod:`modelway.cluster.conversation`).

The prompts below are what fschat 0.2.36's own templates render for one conversation (captured with
``fastchat.conversation.get_conv_template(name).get_prompt()``; Chatchat's online-worker template built as its
``ChatGLMWorker.make_conv_template`` builds it). The worker's own template is rendered by the real FastChat API
server in ``test_worker_fastchat.py``.
"""

from __future__ import annotations

import pytest

from modelway.cluster.conversation import CONV_TEMPLATE, prompt_to_messages
from modelway.cluster.fastchat_worker import gen_params
from modelway.cluster.prompt import ConvTemplate, render_prompt

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "2+2?"},
]

RENDERED = {
    "vicuna_v1.1": "Be brief. USER: Hi there ASSISTANT: Hello!</s>USER: 2+2? ASSISTANT:",
    "one_shot": "Be brief.\n### Human: Hi there\n### Assistant: Hello!\n### Human: 2+2?\n### Assistant:",
    "qwen-7b-chat (ChatML)": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
    "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n",
    "llama-2": "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST] Hello! </s><s>[INST] 2+2? [/INST]",
    "chatglm3": "<|system|>\nBe brief.<|user|>\nHi there<|assistant|>\nHello!<|user|>\n2+2?<|assistant|>",
    "chatglm2": "Be brief.\n\n[Round 1]\n\n问：Hi there\n\n答：Hello!\n\n[Round 2]\n\n问：2+2?\n\n答：",
    "chatchat zhipu-api": "Be brief.\n###user: Hi there\n###assistant: Hello!\n###user: 2+2?\n###assistant:",
}


@pytest.mark.parametrize("template", sorted(RENDERED))
def test_each_template_parses_back_to_the_conversation(template: str) -> None:
    assert prompt_to_messages(RENDERED[template]) == CONVERSATION


def test_the_workers_own_template_round_trips() -> None:
    # rendered by the gateway's renderer of FastChat templates (checked against fschat's own in its tests)
    prompt = render_prompt(ConvTemplate.from_dict(CONV_TEMPLATE), CONVERSATION)
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert prompt_to_messages(prompt) == CONVERSATION


def test_no_system_message_means_none() -> None:
    prompt = render_prompt(ConvTemplate.from_dict(CONV_TEMPLATE), CONVERSATION[1:])
    assert prompt_to_messages(prompt) == CONVERSATION[1:]


def test_multiline_content_is_kept() -> None:
    prompt = "<|im_start|>user\nline one\n\nline two: USER: not a turn<|im_end|>\n<|im_start|>assistant\n"
    assert prompt_to_messages(prompt) == [{"role": "user", "content": "line one\n\nline two: USER: not a turn"}]


@pytest.mark.parametrize(
    "prompt",
    [
        "hello",
        "Write a poem about the user: a person.",
        "user: summarise this text",  # a role-like start, but no open assistant turn at the end
        "Q: what is 2+2?\nA:",
        "### Assistant:",  # an open assistant turn, but no user turn
    ],
)
def test_anything_else_is_one_user_message(prompt: str) -> None:
    assert prompt_to_messages(prompt) == [{"role": "user", "content": prompt}]


def test_generation_parameters() -> None:
    data = {
        "temperature": 0.7,
        "top_p": 1.0,
        "top_k": -1,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.5,
        "max_new_tokens": 256,
        "stop": ["<|im_end|>", "END"],
        "stop_token_ids": [2],
        "echo": False,
    }
    assert gen_params(data, prompt_tokens=10, context_length=4096) == {
        "temperature": 0.7,
        "frequency_penalty": 0.5,
        "max_tokens": 256,
        "stop": ["END"],
    }


def test_max_new_tokens_filled_in_by_fastchat_is_not_forwarded() -> None:
    # FastChat's API server sends context_length - prompt tokens when the caller gave no max_tokens
    assert "max_tokens" not in gen_params({"max_new_tokens": 4086}, prompt_tokens=10, context_length=4096)
    assert gen_params({"max_new_tokens": 4085}, prompt_tokens=10, context_length=4096)["max_tokens"] == 4085
