"""A separate virtualenv with DB-GPT's official client (``dbgpt-client``), created once and cached.

``dbgpt-client`` pins old dependencies (aiohttp 3.8.4, SQLAlchemy < 2.0.29, FastAPI 0.112) and needs
``beautifulsoup4`` to import, so it cannot live in the project's virtualenv. Tests run it in a subprocess
with this virtualenv's python (see ``dbgpt_driver.py``).

The virtualenv lives outside the repository: ``$MODELWAY_DBGPT_VENV`` or, by default,
``~/.cache/modelway/dbgpt-client-<version>``. It is reused when its python can ``import dbgpt_client``
and rebuilt otherwise. A lock file next to it keeps parallel runs from building it at the same time.

Build it ahead of time with ``python tests/server/dbgpt_env.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, when run as a script
from venvs import CachedVenv, VenvError

__all__ = ["DBGPT_CLIENT", "DbgptEnvError", "ensure_dbgpt_venv"]

DBGPT_CLIENT_VERSION = "0.8.2"
DBGPT_CLIENT = CachedVenv(
    name=f"dbgpt-client-{DBGPT_CLIENT_VERSION}",
    packages=(f"dbgpt-client=={DBGPT_CLIENT_VERSION}", "beautifulsoup4"),
    probe="import dbgpt_client",
    env_var="MODELWAY_DBGPT_VENV",
)
#: what a failed build raises
DbgptEnvError = VenvError


def ensure_dbgpt_venv() -> Path:
    """The python of a virtualenv where ``import dbgpt_client`` works, built first when needed."""
    return DBGPT_CLIENT.ensure()


if __name__ == "__main__":
    try:
        print(ensure_dbgpt_venv())
    except DbgptEnvError as e:
        print(e, file=sys.stderr)
        sys.exit(1)
