"""Real agent CLIs (Claude Code, Codex CLI) against a real ``modelway serve --demo``: shared by
``scripts/try-agents``, ``tests/agents/test_agents.py`` and ``tests/agents/capture.py``.

* :func:`ensure_clis` installs ``@anthropic-ai/claude-code`` and ``@openai/codex`` from npm into a private prefix
  (``~/.cache/modelway-agents`` or ``$MODELWAY_AGENTS_CACHE``) on first use, pinned to the versions below
  (``$MODELWAY_CLAUDE_CODE_VERSION`` / ``$MODELWAY_CODEX_VERSION`` override them, ``latest`` included). It raises
  :class:`Unavailable` (a reason to skip) when node/npm are missing or the install fails.
* :class:`Gateway` runs ``.venv/bin/modelway serve --demo`` on a free loopback port, with a master key and, for
  tool calls, one more model over a scriptable :class:`~modelway.testing.OpenAISimulator`; :meth:`Gateway.requests`
  reads the ``modelway_requests_total`` counters of ``/metrics``.
* :func:`run_claude` and :func:`run_codex` run ``claude -p`` and ``codex exec`` in a clean environment (a private
  HOME / CODEX_HOME, none of the caller's ``ANTHROPIC_*``/``OPENAI_*`` variables, telemetry, update checks and
  plugin syncs off) so that the only host either CLI talks to is the given base URL, with hard timeouts
  (Codex waits forever for an unreachable server: "Reconnecting... waiting for network").
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]

#: npm package and the version tested with it (override: $MODELWAY_CLAUDE_CODE_VERSION, $MODELWAY_CODEX_VERSION)
CLAUDE_PACKAGE = "@anthropic-ai/claude-code"
CLAUDE_VERSION = "2.1.332"
CODEX_PACKAGE = "@openai/codex"
CODEX_VERSION = "0.171.0"

#: the demo models each CLI is pointed at (see src/modelway/server/demo.py)
CLAUDE_MODEL = "demo/glm-4-flash"
CODEX_MODEL = "demo/qwen-plus"
#: a model of our own over a simulator whose answers we script (tool calls); not a demo model
TOOL_MODEL = "agents/tool-sim"

#: the file the tool-call runs read, and the word in it that must come back through the gateway
SECRET_FILE = "hello.txt"
SECRET_WORD = "pineapple"

Log = Callable[[str], None]


class Unavailable(RuntimeError):
    """node, npm or the CLI packages cannot be had on this machine: a reason to skip, not a failure."""


def cache_dir() -> Path:
    return Path(os.environ.get("MODELWAY_AGENTS_CACHE") or Path.home() / ".cache" / "modelway-agents")


def _quiet(msg: str) -> None:
    pass


# -- installing the CLIs ----------------------------------------------------------------------------------------


@dataclass
class Clis:
    claude: Path
    codex: Path
    #: "2.1.332 (Claude Code)", "codex-cli 0.171.0"
    versions: dict[str, str]
    node_version: str
    #: seconds npm took, when this call installed anything
    install_seconds: float | None = None


def _version_of(binary: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def ensure_clis(cache: Path | None = None, log: Log = _quiet) -> Clis:
    """The two CLIs, installed into ``cache`` (npm ``--prefix``) unless the wanted versions are there already."""
    cache = cache or cache_dir()
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise Unavailable("node and npm are needed to install Claude Code and Codex CLI (not found on PATH)")
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    m = re.match(r"v(\d+)", node_version)
    major = int(m.group(1)) if m else 0
    if major < 18:
        # Claude Code is a native binary (node only runs its postinstall); Codex's launcher needs node >= 16
        raise Unavailable(f"node {node_version} is too old for the agent CLIs' launchers (18 or newer needed)")
    wanted = {
        "claude": (CLAUDE_PACKAGE, os.environ.get("MODELWAY_CLAUDE_CODE_VERSION") or CLAUDE_VERSION),
        "codex": (CODEX_PACKAGE, os.environ.get("MODELWAY_CODEX_VERSION") or CODEX_VERSION),
    }
    bins = {name: cache / "node_modules" / ".bin" / name for name in wanted}

    def current() -> dict[str, str | None]:
        return {name: _version_of(path) if path.exists() else None for name, path in bins.items()}

    def fits(name: str, have: str | None) -> bool:
        version = wanted[name][1]
        return have is not None and (version == "latest" or re.search(rf"\b{re.escape(version)}\b", have) is not None)

    have = current()
    seconds = None
    if not all(fits(n, have[n]) for n in wanted):
        cache.mkdir(parents=True, exist_ok=True)
        # "@latest" is spelled out: npm on a node older than a package's `engines` (claude-code wants node >= 22
        # though it ships a native binary) otherwise quietly picks an older release that still fits
        specs = [f"{pkg}@{version}" for pkg, version in wanted.values()]
        log(f"installing {' '.join(specs)} into {cache} (npm, node {node_version}) ...")
        started = time.monotonic()
        logfile = cache / "npm-install.log"
        with logfile.open("w") as f:
            try:
                proc = subprocess.run(
                    [
                        npm,
                        "install",
                        "--prefix",
                        str(cache),
                        "--no-audit",
                        "--no-fund",
                        "--no-update-notifier",
                        # an unreachable registry fails in seconds, not after npm's default minutes of back-off
                        "--fetch-retries=2",
                        "--fetch-retry-mintimeout=2000",
                        "--fetch-retry-maxtimeout=10000",
                        *specs,
                    ],
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    timeout=900,
                    stdin=subprocess.DEVNULL,
                    cwd=cache,
                )
            except subprocess.TimeoutExpired as exc:
                raise Unavailable(f"npm install took over 15 minutes (log: {logfile})") from exc
        seconds = time.monotonic() - started
        if proc.returncode != 0:
            lines = logfile.read_text(errors="replace").strip().splitlines()
            # npm's own summary: "npm error code E...", then the message; else the last lines
            errors = [ln for ln in lines if ln.startswith("npm error") and not ln.startswith("npm error  ")]
            why = " | ".join(errors[:4] if errors else lines[-4:])
            raise Unavailable(f"npm install failed (exit {proc.returncode}; {logfile}): {why}")
        log(f"installed in {seconds:.1f}s")
        have = current()
    if have["claude"] is None and (cache / "node_modules" / CLAUDE_PACKAGE / "install.cjs").exists():
        # npm ran without install scripts (--ignore-scripts, or a policy that blocks them): bin/claude.exe is
        # still the placeholder that only prints an error; its postinstall copies the native binary over it
        subprocess.run(
            [node, "install.cjs"], cwd=cache / "node_modules" / CLAUDE_PACKAGE, timeout=120, capture_output=True
        )
        have = current()
    missing = [n for n in wanted if have[n] is None]
    if missing:
        raise Unavailable(f"installed, but {', '.join(missing)} --version fails (see {cache / 'npm-install.log'})")
    return Clis(bins["claude"], bins["codex"], {n: str(v) for n, v in have.items()}, node_version, seconds)


# -- the gateway ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_SAMPLE = re.compile(r"^modelway_requests_total\{([^}]*)\}\s+([0-9.eE+-]+)\s*$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class Gateway:
    """``modelway serve --demo`` in a subprocess on a free port; a context manager."""

    def __init__(
        self,
        workdir: Path,
        *,
        master_key: str | None = None,
        extra_models: list[dict[str, Any]] | None = None,
        modelway: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.master_key = master_key
        self.extra_models = extra_models or []
        self.modelway = modelway or _modelway_command()
        self.port = 0
        self.url = ""
        self.log_path = workdir / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Gateway:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [self.modelway, "serve", "--demo", "--host", "127.0.0.1", "--log-level", "info"]
        config: dict[str, Any] = {"server": {"max_retries": 0}}
        if self.master_key:
            config["server"]["master_key"] = self.master_key
        if self.extra_models:
            config["models"] = self.extra_models
        cfg = self.workdir / "modelway.yaml"
        cfg.write_text(yaml.safe_dump(config, sort_keys=False))
        cmd += ["-c", str(cfg)]
        for _ in range(5):  # a free port can be taken between the probe and the bind: try another
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    [*cmd, "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                with (
                    contextlib.suppress(OSError),
                    urllib.request.urlopen(self.url + "/health/readiness", timeout=2) as r,
                ):
                    if r.status == 200:
                        return self
                time.sleep(0.2)
            if self.proc.poll() is None:
                self.stop()
                raise RuntimeError(f"the gateway did not get ready in {timeout}s:\n{self.log()[-3000:]}")
        raise RuntimeError(f"the gateway would not start:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def requests(self) -> dict[tuple[str, str, str], float]:
        """``modelway_requests_total`` from ``/metrics``: (endpoint, model, status) → count."""
        req = urllib.request.Request(self.url + "/metrics")
        if self.master_key:
            req.add_header("Authorization", f"Bearer {self.master_key}")
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode()
        out: dict[tuple[str, str, str], float] = {}
        for line in text.splitlines():
            m = _SAMPLE.match(line)
            if m:
                labels = dict(_LABEL.findall(m.group(1)))
                out[(labels.get("endpoint", ""), labels.get("model", ""), labels.get("status", ""))] = float(m.group(2))
        return out


def _modelway_command() -> str:
    venv = REPO / ".venv" / "bin" / "modelway"
    if venv.exists():
        return str(venv)
    found = shutil.which("modelway")
    if found is None:
        raise RuntimeError("modelway is not installed: no .venv/bin/modelway and none on PATH (run scripts/demo once)")
    return found


def counted(before: dict[tuple[str, str, str], float], after: dict[tuple[str, str, str], float]) -> dict[str, float]:
    """What changed between two :meth:`Gateway.requests`, as ``"endpoint model status" → n``."""
    out = {}
    for key, value in after.items():
        n = value - before.get(key, 0.0)
        if n:
            out[" ".join(key)] = n
    return out


# -- running the CLIs -------------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def describe(self) -> str:
        status = "timed out" if self.timed_out else f"exit {self.returncode}"
        return f"{self.name}: {status} in {self.seconds:.1f}s"


def _base_env(home: Path, node_bin: Path | None = None) -> dict[str, str]:
    """A clean environment: nothing of the caller's (no real ANTHROPIC_*/OPENAI_* keys, no proxies) but PATH."""
    path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    if node_bin is not None:
        path = f"{node_bin}{os.pathsep}{path}"
    return {"PATH": path, "HOME": str(home), "TERM": "dumb", "LANG": "C.UTF-8", "NO_COLOR": "1"}


def _run(name: str, argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> Run:
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:

        def text(b: bytes | str | None) -> str:
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")

        return Run(name, argv, None, text(exc.stdout), text(exc.stderr), time.monotonic() - started, timed_out=True)
    return Run(name, argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def claude_env(home: Path, base_url: str, key: str, model: str, *, x_api_key: bool = False) -> dict[str, str]:
    """Claude Code against ``base_url`` (the gateway's root, no ``/v1``) and nothing else."""
    env = _base_env(home)
    env.update(
        {
            "ANTHROPIC_BASE_URL": base_url,
            # ANTHROPIC_AUTH_TOKEN is sent as "Authorization: Bearer", ANTHROPIC_API_KEY as "x-api-key"
            ("ANTHROPIC_API_KEY" if x_api_key else "ANTHROPIC_AUTH_TOKEN"): key,
            "ANTHROPIC_MODEL": model,
            # background and sub-agent calls default to Anthropic model names the gateway does not serve
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
            "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
            "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
            "ANTHROPIC_SMALL_FAST_MODEL": model,
            "CLAUDE_CODE_SUBAGENT_MODEL": model,
            # no HEAD /api/hello probe, no telemetry to api.anthropic.com, no update or error-report traffic
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
            # fail fast instead of ~3 minutes of retries against a refusing or failing server
            "CLAUDE_CODE_MAX_RETRIES": "0",
            "API_TIMEOUT_MS": "120000",
        }
    )
    return env


def run_claude(
    clis: Clis,
    base_url: str,
    key: str,
    prompt: str,
    *,
    model: str = CLAUDE_MODEL,
    workdir: Path,
    x_api_key: bool = False,
    extra_args: list[str] | None = None,
    env_overrides: dict[str, str | None] | None = None,
    timeout: float = 240,
) -> Run:
    home = workdir / "claude-home"
    home.mkdir(parents=True, exist_ok=True)
    env = claude_env(home, base_url, key, model, x_api_key=x_api_key)
    for k, v in (env_overrides or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    argv = [str(clis.claude), "-p", prompt, "--model", model, *(extra_args or [])]
    return _run("claude", argv, env, workdir, timeout)


def codex_config(
    base_url: str, model: str, env_key: str = "MODELWAY_API_KEY", *, builtin_tools: bool = True, **extra: str
) -> str:
    """A ``$CODEX_HOME/config.toml`` for ``base_url`` (the gateway's ``/v1``) and nothing else. ``builtin_tools``
    false turns off the tools Codex sends by default that are not function tools: its ``web_search`` tool and the
    ``multi_agent_v1`` namespace tool (for a gateway that refuses them)."""
    lines = [
        f'model = "{model}"',
        'model_provider = "modelway"',
        *(f"{k} = {v}" for k, v in extra.items()),
        "check_for_update_on_startup = false",
        *(
            []
            if builtin_tools
            else [
                "# OpenAI's built-in web search exists only on OpenAI's own Responses API, not behind a chat upstream",
                'web_search = "disabled"',
            ]
        ),
        "",
        "# no OTel metrics to ab.chatgpt.com",
        "[analytics]",
        "enabled = false",
        "",
        "[features]",
        "# no plugin marketplace sync (github.com, api.github.com, chatgpt.com)",
        "plugins = false",
        *(
            []
            if builtin_tools
            else [
                '# sub-agent tools come as a "namespace" tool (nested function tools), which chat upstreams lack',
                "multi_agent = false",
            ]
        ),
        "",
        "[model_providers.modelway]",
        'name = "modelway"',
        f'base_url = "{base_url}"',
        f'env_key = "{env_key}"',
        'wire_api = "responses"',
        "request_max_retries = 0",
        "stream_max_retries = 0",
        "stream_idle_timeout_ms = 120000",
        "",
    ]
    return "\n".join(lines)


def run_codex(
    clis: Clis,
    base_url: str,
    key: str,
    prompt: str,
    *,
    model: str = CODEX_MODEL,
    workdir: Path,
    config_extra: dict[str, str] | None = None,
    builtin_tools: bool = True,
    timeout: float = 240,
) -> Run:
    home = workdir / "codex-home"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    config = codex_config(base_url, model, builtin_tools=builtin_tools, **(config_extra or {}))
    (codex_home / "config.toml").write_text(config)
    env = _base_env(home)
    env.update({"CODEX_HOME": str(codex_home), "MODELWAY_API_KEY": key})
    argv = [str(clis.codex), "exec", "--skip-git-repo-check", "--ephemeral", "--color", "never", prompt]
    return _run("codex", argv, env, workdir, timeout)


@contextlib.contextmanager
def scratch(prefix: str = "run-") -> Iterator[Path]:
    """A work directory for one run, under the cache (Codex refuses to make its helper links under /tmp)."""
    base = cache_dir() / "runs"
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_secret(workdir: Path) -> Path:
    path = workdir / SECRET_FILE
    path.write_text(f"the secret word is {SECRET_WORD}\n")
    return path


# -- the scenarios (what scripts/try-agents runs and tests/agents/test_agents.py asserts) ----------------------


@dataclass
class Check:
    what: str
    ok: bool
    detail: str = ""


@dataclass
class Outcome:
    scenario: str
    run: Run
    checks: list[Check]
    #: modelway_requests_total changes during the run ("endpoint model status" → n)
    gateway_requests: dict[str, float]

    @property
    def ok(self) -> bool:
        return self.run.ok and all(c.ok for c in self.checks)

    def report(self) -> str:
        lines = [f"== {self.scenario}: {'PASS' if self.ok else 'FAIL'} ({self.run.describe()})"]
        for c in self.checks:
            lines.append(f"   [{'ok' if c.ok else 'FAILED'}] {c.what}" + (f": {c.detail}" if c.detail else ""))
        lines.append(f"   gateway requests during the run: {self.gateway_requests or 'none'}")
        return "\n".join(lines)


def scripted_simulator() -> Any:
    """The upstream whose answers the scenarios script (tool calls, reasoning): a DeepSeek simulator (OpenAI chat
    with ``reasoning_content``), started in a thread."""
    from modelway.testing import DeepSeekSimulator

    return DeepSeekSimulator().start()


def tool_model_config(base_url: str, api_key: str) -> dict[str, Any]:
    """The gateway's model over :func:`scripted_simulator`."""
    return {
        "name": TOOL_MODEL,
        "description": "scripted scenarios of tests/agents (tool calls, reasoning): a local DeepSeekSimulator",
        "price": {"input": 0, "output": 0},
        "deployments": [{"model": "deepseek/deepseek-chat", "api_key": api_key, "api_base": base_url}],
    }


def _excerpt(text: str, n: int = 400) -> str:
    text = text.strip()
    return text if len(text) <= n else text[: n // 2] + " [...] " + text[-n // 2 :]


def _common_checks(run: Run, delta: dict[str, float], endpoint: str, model: str, turns: int) -> list[Check]:
    got = delta.get(f"{endpoint} {model} 200", 0)
    others = {k: v for k, v in delta.items() if not k.endswith(" 200")}
    return [
        Check(
            "the CLI exited 0",
            run.ok,
            "" if run.ok else f"{run.describe()}; stderr: {_excerpt(run.stderr)}; stdout: {_excerpt(run.stdout)}",
        ),
        Check(
            f'the gateway answered {turns} request(s) on endpoint="{endpoint}" for {model} with 200',
            got >= turns,
            f"counted {got:g}" + (f"; other answers: {others}" if others else ""),
        ),
    ]


def claude_hello(clis: Clis, gw: Gateway, key: str, workdir: Path) -> Outcome:
    """``claude -p "Say hello"`` on the demo model; the key goes as ``x-api-key`` (ANTHROPIC_API_KEY)."""
    before = gw.requests()
    run = run_claude(clis, gw.url, key, "Say hello", model=CLAUDE_MODEL, workdir=workdir, x_api_key=True)
    delta = counted(before, gw.requests())
    checks = _common_checks(run, delta, "messages", CLAUDE_MODEL, 1)
    # the simulator echoes the last user message: Claude Code's prompt (after its <system-reminder> blocks)
    checks.append(
        Check(
            'the answer is the simulator\'s echo ("You said: ... Say hello")',
            "You said:" in run.stdout and "Say hello" in run.stdout,
            _excerpt(run.stdout, 200),
        )
    )
    return Outcome("Claude Code: claude -p 'Say hello'", run, checks, delta)


def claude_tool(clis: Clis, gw: Gateway, sim: Any, key: str, workdir: Path) -> Outcome:
    """The simulator asks for Claude Code's ``Read`` tool; Claude Code reads the file and sends the result back
    (a second turn through the gateway); the key goes as ``Authorization: Bearer`` (ANTHROPIC_AUTH_TOKEN)."""
    from modelway.testing import Reply

    secret = write_secret(workdir)
    sim.clear()
    sim.push(Reply(tool_calls=[{"name": "Read", "arguments": {"file_path": str(secret)}}]))
    seen = len(sim.requests)
    before = gw.requests()
    prompt = f"Read {SECRET_FILE} and tell me the secret word"
    run = run_claude(clis, gw.url, key, prompt, model=TOOL_MODEL, workdir=workdir)
    delta = counted(before, gw.requests())
    upstream = sim.requests[seen:]
    checks = _common_checks(run, delta, "messages", TOOL_MODEL, 2)
    checks += _tool_checks(run, upstream, prompt)
    return Outcome("Claude Code: Read tool call", run, checks, delta)


def codex_hello(clis: Clis, gw: Gateway, key: str, workdir: Path) -> Outcome:
    before = gw.requests()
    run = run_codex(clis, gw.url + "/v1", key, "Say hello", model=CODEX_MODEL, workdir=workdir)
    delta = counted(before, gw.requests())
    checks = _common_checks(run, delta, "responses", CODEX_MODEL, 1)
    checks.append(
        Check(
            'the answer is the simulator\'s echo "You said: Say hello"',
            "You said: Say hello" in run.stdout,
            _excerpt(run.stdout, 200),
        )
    )
    return Outcome("Codex CLI: codex exec 'Say hello'", run, checks, delta)


def codex_tool(clis: Clis, gw: Gateway, sim: Any, key: str, workdir: Path) -> Outcome:
    """The simulator asks for Codex's ``exec_command`` tool (``cat hello.txt``, in Codex's read-only sandbox)."""
    from modelway.testing import Reply

    write_secret(workdir)
    sim.clear()
    sim.push(Reply(tool_calls=[{"name": "exec_command", "arguments": {"cmd": f"cat {SECRET_FILE}"}}]))
    seen = len(sim.requests)
    before = gw.requests()
    prompt = f"Show me what {SECRET_FILE} says"
    run = run_codex(clis, gw.url + "/v1", key, prompt, model=TOOL_MODEL, workdir=workdir)
    delta = counted(before, gw.requests())
    upstream = sim.requests[seen:]
    checks = _common_checks(run, delta, "responses", TOOL_MODEL, 2)
    checks += _tool_checks(run, upstream, prompt)
    return Outcome("Codex CLI: exec_command tool call", run, checks, delta)


REASONING = "Let me work out what the user wants first."


def claude_reasoning(clis: Clis, gw: Gateway, sim: Any, key: str, workdir: Path) -> Outcome:
    """The upstream streams ``reasoning_content`` before its text: Claude Code must get a well-formed stream
    (thinking block, then text block) and print only the text."""
    return _reasoning("Claude Code: reasoning before the answer", "messages", clis, gw, sim, key, workdir)


def codex_reasoning(clis: Clis, gw: Gateway, sim: Any, key: str, workdir: Path) -> Outcome:
    """The same for Codex (a reasoning item, then the message item)."""
    return _reasoning("Codex CLI: reasoning before the answer", "responses", clis, gw, sim, key, workdir)


def _reasoning(name: str, endpoint: str, clis: Clis, gw: Gateway, sim: Any, key: str, workdir: Path) -> Outcome:
    from modelway.testing import Reply

    sim.clear()
    sim.push(Reply(reasoning=REASONING))
    seen = len(sim.requests)
    before = gw.requests()
    if endpoint == "messages":
        run = run_claude(clis, gw.url, key, "Say hello", model=TOOL_MODEL, workdir=workdir)
    else:
        run = run_codex(clis, gw.url + "/v1", key, "Say hello", model=TOOL_MODEL, workdir=workdir)
    delta = counted(before, gw.requests())
    checks = _common_checks(run, delta, endpoint, TOOL_MODEL, 1)
    checks += [
        Check("the upstream was asked once", len(sim.requests) - seen == 1, f"{len(sim.requests) - seen} request(s)"),
        Check(
            "the answer is the simulator's echo, without the reasoning text in it",
            "You said:" in run.stdout and "Say hello" in run.stdout and REASONING not in run.stdout,
            _excerpt(run.stdout, 200),
        ),
    ]
    return Outcome(name, run, checks, delta)


def claude_reasoning_tool(clis: Clis, gw: Gateway, sim: Any, key: str, workdir: Path) -> Outcome:
    """A thinking model's tool loop (DeepSeek's thinking mode answers 400 when the reasoning of an earlier assistant
    turn is not sent back): the upstream reasons, then calls Read; the second turn must carry that reasoning back
    as the assistant message's ``reasoning_content``."""
    return _reasoning_tool("Claude Code: reasoning, then a tool call", "messages", clis, gw, sim, key, workdir)


def codex_reasoning_tool(clis: Clis, gw: Gateway, sim: Any, key: str, workdir: Path) -> Outcome:
    """The same for Codex (a reasoning item, then a function_call item; both come back as input)."""
    return _reasoning_tool("Codex CLI: reasoning, then a tool call", "responses", clis, gw, sim, key, workdir)


def _reasoning_tool(name: str, endpoint: str, clis: Clis, gw: Gateway, sim: Any, key: str, workdir: Path) -> Outcome:
    from modelway.testing import Reply

    secret = write_secret(workdir)
    sim.clear()
    if endpoint == "messages":
        call = {"name": "Read", "arguments": {"file_path": str(secret)}}
        prompt = f"Read {SECRET_FILE} and tell me the secret word"
    else:
        call = {"name": "exec_command", "arguments": {"cmd": f"cat {SECRET_FILE}"}}
        prompt = f"Show me what {SECRET_FILE} says"
    sim.push(Reply(reasoning=REASONING, tool_calls=[call]))
    seen = len(sim.requests)
    before = gw.requests()
    if endpoint == "messages":
        run = run_claude(clis, gw.url, key, prompt, model=TOOL_MODEL, workdir=workdir)
    else:
        run = run_codex(clis, gw.url + "/v1", key, prompt, model=TOOL_MODEL, workdir=workdir)
    delta = counted(before, gw.requests())
    upstream = sim.requests[seen:]
    checks = _common_checks(run, delta, endpoint, TOOL_MODEL, 2)
    checks += _tool_checks(run, upstream, prompt)
    assistants = [
        m
        for r in upstream[1:]
        for m in ((r.json or {}).get("messages") or [])
        if isinstance(m, dict) and m.get("role") == "assistant" and m.get("tool_calls")
    ]
    back = [m.get("reasoning_content") for m in assistants]
    checks.append(
        Check(
            "the second turn gave the upstream its reasoning back (reasoning_content on the tool-calling assistant "
            "message)",
            any(r == REASONING for r in back),
            f"reasoning_content sent back: {back!r}",
        )
    )
    return Outcome(name, run, checks, delta)


def _tool_checks(run: Run, upstream: list[Any], prompt: str) -> list[Check]:
    """The tool's output reached the upstream as a ``tool`` message of the second turn, and the final answer is
    the simulator's echo of the user's prompt."""
    later = upstream[1:]
    tool_msgs = [
        m
        for r in later
        for m in ((r.json or {}).get("messages") or [])
        if isinstance(m, dict) and m.get("role") == "tool"
    ]
    carried = any(SECRET_WORD in str(m.get("content")) for m in tool_msgs)
    return [
        Check(
            "the upstream got the tool call's turn and then the tool result's turn",
            len(upstream) >= 2,
            f"{len(upstream)} upstream request(s)",
        ),
        Check(
            f'the tool result (the file says "{SECRET_WORD}") reached the upstream as a role "tool" message',
            carried,
            f"{len(tool_msgs)} tool message(s)"
            + (f": {_excerpt(str(tool_msgs[-1]['content']), 160)}" if tool_msgs else ""),
        ),
        Check(
            "the final answer is the simulator's echo of the prompt",
            "You said:" in run.stdout and prompt in run.stdout,
            _excerpt(run.stdout, 200),
        ),
    ]
