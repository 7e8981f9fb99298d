"""A cached virtualenv with DB-GPT 0.8.2 (``dbgpt[cli,framework]``), whose model controller the worker tests
register with (see ``fastchat_env.CachedVenv`` for where it lives and how it is built).

``dbgpt start controller`` needs ``dbgpt_serve``, which these extras do not install; the controller's own FastAPI
router does not (``initialize_controller(app=app)``), so the tests serve that router with uvicorn
(``CONTROLLER_SCRIPT``). Named ``dbgpt_cluster_env`` so that it never shadows ``tests/server/dbgpt_env.py`` (test
directories share one module namespace).

Build it ahead of time with ``python tests/cluster/dbgpt_cluster_env.py``.
"""

from __future__ import annotations

import sys

from fastchat_env import CachedVenv, VenvError  # (which puts tests/ on the path for venvs)

__all__ = ["CONTROLLER_SCRIPT", "DBGPT"]

DBGPT_VERSION = "0.8.2"
DBGPT = CachedVenv(
    name=f"dbgpt-{DBGPT_VERSION}",
    packages=(f"dbgpt[cli,framework]=={DBGPT_VERSION}", "cloudpickle", "shortuuid", "fastapi", "uvicorn"),
    probe="from dbgpt.model.cluster.controller.controller import initialize_controller",
    env_var="MODELWAY_DBGPT_VENV_FULL",
)

#: DB-GPT's model controller (embedded registry) on 127.0.0.1:<argv[1]>: its own router, nothing of ours
CONTROLLER_SCRIPT = """
import sys
import uvicorn
from fastapi import FastAPI
from dbgpt.model.cluster.controller.controller import initialize_controller

app = FastAPI()
initialize_controller(app=app)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


if __name__ == "__main__":
    try:
        print(DBGPT.ensure())
    except VenvError as e:
        print(e, file=sys.stderr)
        sys.exit(1)
