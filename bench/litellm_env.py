"""LiteLLM's proxy in its own virtualenv (``bench/.venv-litellm``, git-ignored), installed from PyPI on first use.

The version is pinned so that runs compare with the same LiteLLM (1.106.2 is the version behind the numbers in
the design's decision 8; PyPI 1.82.7 and 1.82.8 were compromised releases, never use those).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["LITELLM_VERSION", "VENV", "ensure_litellm", "litellm_exe"]

LITELLM_VERSION = "1.106.2"
VENV = Path(__file__).resolve().parent / ".venv-litellm"
_MARKER = VENV / ".bench-installed"


def litellm_exe() -> Path:
    return VENV / "bin" / "litellm"


def _installed_version() -> str | None:
    try:
        return _MARKER.read_text().strip() or None
    except OSError:
        return None


def ensure_litellm(log: Path) -> str:
    """Create the venv and ``pip install 'litellm[proxy]==VERSION'`` unless already there; the installed version.

    pip's output goes to ``log``; raises ``RuntimeError`` pointing at it when the install fails.
    """
    if _installed_version() == LITELLM_VERSION and litellm_exe().exists():
        return LITELLM_VERSION
    print(f"  installing litellm[proxy]=={LITELLM_VERSION} into {VENV} (first run only, a few minutes) ...", flush=True)
    with open(log, "ab") as out:
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(VENV)],
            [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
            [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", f"litellm[proxy]=={LITELLM_VERSION}"],
        ]
        for argv in steps:
            rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=1800).returncode
            if rc != 0:
                raise RuntimeError(f"{' '.join(argv[-3:])} failed (exit {rc}); see {log}")
    _MARKER.write_text(LITELLM_VERSION + "\n")
    return LITELLM_VERSION
