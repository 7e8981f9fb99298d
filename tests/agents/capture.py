"""Regenerate ``tests/agents/captures/``: what Claude Code and Codex CLI send, recorded by ``recorder.py``.

Run: ``.venv/bin/python tests/agents/capture.py`` (installs the CLIs like ``scripts/try-agents``). Each scenario
gets a directory of ``NNN-METHOD-path.json`` files, one per request: method, path, query, headers (secrets
redacted: ``authorization``, ``x-api-key`` and any header named like key/token/secret) and the JSON body.
Strings longer than 400 characters (the CLIs' system prompts, tool descriptions, environment blurbs) are cut to
their first 160 characters plus ``…[elided N chars]``: every field, block type and schema is kept, the vendors'
prompt text is not. ``captures/index.json`` lists the scenarios, the CLI versions and the requests.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import agent_harness as h

HERE = Path(__file__).resolve().parent
OUT = HERE / "captures"
ELIDE_OVER = 400
KEEP = 160


def elide(value: Any) -> Any:
    if isinstance(value, str) and len(value) > ELIDE_OVER:
        return value[:KEEP] + f"…[elided {len(value) - KEEP} chars]"
    if isinstance(value, list):
        return [elide(v) for v in value]
    if isinstance(value, dict):
        return {k: elide(v) for k, v in value.items()}
    return value


class Recorder:
    def __init__(self, out: Path, *args: str) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "recorder.py"), "--port", "0", "--out", str(out), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"http://[\d.]+:\d+", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"the recorder did not start: {line!r}")
        self.url = m.group(0)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()


def main() -> int:
    clis = h.ensure_clis(log=print)
    print(f"claude {clis.versions['claude']}; {clis.versions['codex']}; node {clis.node_version}")
    tmp = Path(tempfile.mkdtemp(prefix="captures-", dir=h.cache_dir()))
    tool_read = ["--tool", "Read", "--tool-args", json.dumps({"file_path": "{secret}"})]
    scenarios: list[dict[str, Any]] = [
        {
            "name": "claude-hello-default-env",
            "about": "claude -p 'Say hello' with only ANTHROPIC_BASE_URL and ANTHROPIC_AUTH_TOKEN set (what a user "
            "who sets nothing else sends: a HEAD /api/hello probe first; Authorization: Bearer)",
            "client": "claude",
            "env": {k: None for k in h.claude_env(Path("/"), "", "", "") if k not in _CLAUDE_MINIMAL},
        },
        {
            "name": "claude-hello",
            "about": "claude -p 'Say hello' with the harness's environment (x-api-key; non-essential traffic off)",
            "client": "claude",
            "x_api_key": True,
        },
        {
            "name": "claude-tool-read",
            "about": "claude -p 'Read hello.txt ...': the recorder answers a Read tool_use, Claude Code reads the "
            "file and sends a second request with the tool_result",
            "client": "claude",
            "recorder": tool_read,
            "prompt": f"Read {h.SECRET_FILE} and tell me the secret word",
        },
        {
            "name": "claude-tool-read-thinking",
            "about": "as claude-tool-read, but each answer starts with a thinking block (with a signature): the "
            "second request sends the thinking block back in the assistant turn",
            "client": "claude",
            "recorder": [*tool_read, "--reasoning", "I should read the file first."],
            "prompt": f"Read {h.SECRET_FILE} and tell me the secret word",
        },
        {
            "name": "codex-hello",
            "about": "codex exec 'Say hello' with Codex's default tools (model demo/qwen-plus, unknown to Codex): "
            "its web_search tool and the multi_agent_v1 namespace tool included",
            "client": "codex",
        },
        {
            "name": "codex-hello-no-builtin-tools",
            "about": "codex exec 'Say hello' with web_search = \"disabled\" and [features] multi_agent = false: "
            "function tools only",
            "client": "codex",
            "builtin_tools": False,
        },
        {
            "name": "codex-tool-exec",
            "about": "codex exec: the recorder answers an exec_command function_call (cat hello.txt), Codex runs it "
            "and sends a second request with the function_call_output",
            "client": "codex",
            "recorder": ["--tool", "exec_command", "--tool-args", json.dumps({"cmd": f"cat {h.SECRET_FILE}"})],
            "prompt": f"Show me what {h.SECRET_FILE} says",
        },
        {
            "name": "codex-tool-exec-reasoning",
            "about": "as codex-tool-exec, but each answer starts with a reasoning item (a summary, no "
            "encrypted_content): the second request sends the reasoning item back as input",
            "client": "codex",
            "recorder": [
                "--tool",
                "exec_command",
                "--tool-args",
                json.dumps({"cmd": f"cat {h.SECRET_FILE}"}),
                "--reasoning",
                "I should look at the file.",
            ],
            "prompt": f"Show me what {h.SECRET_FILE} says",
        },
        {
            "name": "codex-known-model-reasoning",
            "about": "codex exec with a model name Codex knows (gpt-5.2-codex) and model_reasoning_effort=high, "
            "model_reasoning_summary=detailed, model_verbosity=low: the fields a gateway gets when a user names "
            "an OpenAI model (an alias of that name)",
            "client": "codex",
            "model": "gpt-5.2-codex",
            "config": {
                "model_reasoning_effort": '"high"',
                "model_reasoning_summary": '"detailed"',
                "model_verbosity": '"low"',
            },
        },
    ]
    index: dict[str, Any] = {
        "generated_by": "tests/agents/capture.py",
        "date": time.strftime("%Y-%m-%d"),
        "versions": {**clis.versions, "node": clis.node_version},
        "elided": f"strings over {ELIDE_OVER} characters are cut to {KEEP} + '…[elided N chars]'",
        "scenarios": [],
    }
    try:
        if OUT.exists():
            shutil.rmtree(OUT)
        OUT.mkdir()
        for sc in scenarios:
            raw = tmp / sc["name"]
            with h.scratch("capture-") as work:
                secret = h.write_secret(work)
                args = [a.replace("{secret}", str(secret)) for a in sc.get("recorder", [])]
                rec = Recorder(raw, *args)
                prompt = sc.get("prompt", "Say hello")
                try:
                    if sc["client"] == "claude":
                        run = h.run_claude(
                            clis,
                            rec.url,
                            "sk-capture-key",
                            prompt,
                            model=sc.get("model", h.CLAUDE_MODEL),
                            workdir=work,
                            x_api_key=sc.get("x_api_key", False),
                            env_overrides=sc.get("env"),
                            timeout=180,
                        )
                    else:
                        run = h.run_codex(
                            clis,
                            rec.url + "/v1",
                            "sk-capture-key",
                            prompt,
                            model=sc.get("model", h.CODEX_MODEL),
                            workdir=work,
                            config_extra=sc.get("config"),
                            builtin_tools=sc.get("builtin_tools", True),
                            timeout=180,
                        )
                finally:
                    rec.stop()
            dest = OUT / sc["name"]
            dest.mkdir()
            files = []
            for f in sorted(raw.glob("*.json")):
                entry = json.loads(f.read_text())
                entry.pop("time", None)
                (dest / f.name).write_text(json.dumps(elide(entry), indent=1, ensure_ascii=False) + "\n")
                files.append(f"{entry['method']} {entry['path']}" + (f"?{entry['query']}" if entry["query"] else ""))
            print(f"{sc['name']}: {run.describe()}; {files}; answer: {run.stdout.strip()[-80:]!r}")
            index["scenarios"].append(
                {
                    "name": sc["name"],
                    "about": sc["about"],
                    "exit": run.returncode,
                    "requests": files,
                    "unset_env": sorted(sc["env"]) if sc.get("env") else None,
                    "codex_config": sc.get("config"),
                }
            )
        (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


#: the variables a user minimally sets for Claude Code and a gateway
_CLAUDE_MINIMAL = {"PATH", "HOME", "TERM", "LANG", "NO_COLOR", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN"}


if __name__ == "__main__":
    sys.exit(main())
