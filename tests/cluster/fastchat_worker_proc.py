"""A FastChat model worker answering canned text: the real ``fschat`` ``BaseModelWorker`` and its FastAPI app.

Run with the python of FastChat's own virtualenv (``fastchat_env.py``)::

    python fastchat_worker_proc.py --controller-address http://127.0.0.1:4000/cluster-x \\
        --worker-address http://127.0.0.1:21002 --port 21002 --model-names canned --conv-template vicuna_v1.1 \\
        --params-log params.jsonl

No torch, transformers or accelerate are needed: ``make_conv_template`` is overridden to take the template by
name from ``fastchat.conversation`` (the base class would import ``fastchat.model``, which imports them), and
``/count_token`` is answered here (the base class uses a tokenizer), as Langchain-Chatchat's online workers do.

The answer streams the canned text in pieces, cumulative, NUL-delimited, with ``usage`` and a final
``finish_reason``; a prompt containing ``TRIGGER-ERROR-<code>`` gets an error frame with that ``error_code``.
Every request's parameters are appended to ``--params-log`` (one JSON object a line) for the test to read.
"""

from __future__ import annotations

import argparse
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastchat.conversation import Conversation, get_conv_template
from fastchat.serve import base_model_worker
from fastchat.serve.base_model_worker import BaseModelWorker

CANNED = "Hello from a FastChat worker, in five pieces."


class CannedWorker(BaseModelWorker):
    def __init__(self, params_log: str, **kwargs: Any) -> None:
        self.params_log = params_log
        super().__init__(**kwargs)
        self.context_len = 4096
        self.init_heart_beat()

    def make_conv_template(self, conv_template: str | None = None, model_path: str | None = None) -> Conversation:
        return get_conv_template(conv_template or "vicuna_v1.1")

    def count_token(self, params: dict[str, Any]) -> dict[str, int]:
        return {"count": len(str(params["prompt"]).split()), "error_code": 0}

    def _chunks(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        with open(self.params_log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(params) + "\n")
        prompt = str(params["prompt"])
        failed = re.search(r"TRIGGER-ERROR-(\d+)", prompt)
        if failed:
            yield {"text": "the worker failed on purpose", "error_code": int(failed.group(1))}
            return
        words = CANNED.split(" ")
        step = max(1, len(words) // 5)
        prompt_tokens = len(prompt.split())
        for i in range(step, len(words) + step, step):
            done = i >= len(words)
            text = " ".join(words[: min(i, len(words))])
            n = min(i, len(words))
            yield {
                "text": text,
                "error_code": 0,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n},
                "finish_reason": "stop" if done else None,
            }
            if done:
                return

    def generate_stream_gate(self, params: dict[str, Any]) -> Iterator[bytes]:
        for chunk in self._chunks(params):
            yield json.dumps(chunk).encode() + b"\0"

    def generate_gate(self, params: dict[str, Any]) -> dict[str, Any]:
        last: dict[str, Any] = {}
        for chunk in self._chunks(params):
            last = chunk
        return last


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--controller-address", required=True)
    p.add_argument("--worker-address", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model-names", required=True)
    p.add_argument("--conv-template", default="vicuna_v1.1")
    p.add_argument("--params-log", required=True)
    a = p.parse_args()
    CannedWorker(
        a.params_log,
        controller_addr=a.controller_address,
        worker_addr=a.worker_address,
        worker_id=uuid.uuid4().hex[:8],
        model_path="",
        model_names=a.model_names.split(","),
        limit_worker_concurrency=5,
        conv_template=a.conv_template,
    )
    uvicorn.run(base_model_worker.app, host="127.0.0.1", port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
