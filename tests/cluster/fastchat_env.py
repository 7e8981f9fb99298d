"""The real FastChat (``fschat``) in a cached virtualenv (:class:`venvs.CachedVenv`).

FastChat 0.2.36 cannot live in the project's virtualenv: its OpenAI API server streams only with pydantic v1
(``chunk.json(ensure_ascii=False)``), so it needs ``pydantic<2`` and a FastAPI that still supports it
(``fastapi==0.110.3``). Tests run its controller and API server as subprocesses of that virtualenv's python.

Build it ahead of time with ``python tests/cluster/fastchat_env.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, when run as a script
from venvs import CachedVenv, VenvError, clean_env

__all__ = ["FASTCHAT", "CachedVenv", "VenvError", "clean_env"]

FASTCHAT_VERSION = "0.2.36"
#: the controller and the OpenAI API server import without torch; psutil, httpx, shortuuid and uvicorn are needed
#: at run time (the API server's streaming needs pydantic v1, hence the pins)
FASTCHAT = CachedVenv(
    name=f"fschat-{FASTCHAT_VERSION}",
    packages=(
        f"fschat=={FASTCHAT_VERSION}",
        "pydantic<2",
        "fastapi==0.110.3",
        "uvicorn",
        "httpx",
        "shortuuid",
        "psutil",
        "requests",
    ),
    probe="import fastchat.serve.controller, fastchat.serve.openai_api_server",
    env_var="MODELWAY_FASTCHAT_VENV",
)


if __name__ == "__main__":
    try:
        print(FASTCHAT.ensure())
    except VenvError as e:
        print(e, file=sys.stderr)
        sys.exit(1)
