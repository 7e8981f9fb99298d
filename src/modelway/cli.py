"""The ``modelway`` command: ``chat``, ``models``, ``providers``, ``completion`` and, with the server installed,
``serve`` and ``worker`` (``check`` is in :mod:`.cli_check`, ``keys`` and ``usage`` in :mod:`.cli_admin`,
``deployments`` in :mod:`.cli_deployments`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import click
from click.shell_completion import CompletionItem

from .errors import AuthenticationError, ModelwayError

#: ``chat --demo`` with a provider's own model name (the names before demo/...): the simulator of each provider
_DEMO_SIMULATORS = {
    "zhipu": "ZhipuSimulator",
    "dashscope": "DashScopeSimulator",
    "openai": "OpenAISimulator",
    "deepseek": "DeepSeekSimulator",
    "moonshot": "MoonshotSimulator",
    "dashscope-compatible": "DashScopeCompatibleSimulator",
    "anthropic": "AnthropicSimulator",
}


def complete_models(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Shell completion of a model name: the demo models, then every provider's known models."""
    from .providers import PROVIDERS
    from .testing.demo import DEMO_MODELS

    names = [*DEMO_MODELS, *(f"{p}/{m}" for p, cls in sorted(PROVIDERS.items()) for m in cls.known_models)]
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="modelway")
def main() -> None:
    """modelway: one API and one OpenAI-compatible gateway for every LLM provider.

    Models are addressed as provider/model, e.g. zhipu/glm-4-flash, dashscope/qwen-plus,
    openai/gpt-4o-mini, deepseek/deepseek-chat. Keys come from the providers' usual environment
    variables (ZHIPUAI_API_KEY, DASHSCOPE_API_KEY, OPENAI_API_KEY, DEEPSEEK_API_KEY, ...);
    `modelway providers` shows which were found. The demo/... models (demo/glm-4-flash, ...) answer from
    local simulators: no key, no network. `COMMAND --help` explains each command, with examples.

    \b
    Examples:
      modelway chat --demo -m demo/glm-4-flash "hello"     # no key needed
      modelway serve --demo                                # the gateway on 127.0.0.1:4000
      modelway check -c modelway.yaml                      # does every deployment answer?
      eval "$(modelway completion bash)"                   # tab completion in this shell
    """


@contextmanager
def _demo_provider(model: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Start the bundled simulator serving ``model`` (``demo/glm-4-flash``, or a provider's own name such as
    ``zhipu/glm-4-flash``); yield the client's provider settings pointing at it and the model to ask it for."""
    from . import testing
    from .testing.demo import DEMO_MODELS

    demo = DEMO_MODELS.get(model)
    if demo is not None:
        provider, sim_name, call = demo.provider, demo.simulator, f"{demo.provider}/{model.partition('/')[2]}"
    else:
        provider, sim_name, call = model.partition("/")[0], _DEMO_SIMULATORS.get(model.partition("/")[0], ""), model
    if not sim_name:
        raise click.UsageError(
            f"--demo serves the demo models ({', '.join(DEMO_MODELS)}) and {', '.join(_DEMO_SIMULATORS)}/...; "
            f"not {model!r}"
        )
    with getattr(testing, sim_name)(record=False) as sim:
        click.secho(
            f"[demo] answers come from modelway's local {type(sim).__name__}, not from {provider}",
            fg="yellow",
            err=True,
        )
        yield {provider: {"api_key": sim.api_key, "base_url": sim.base_url}}, call


@main.command()
@click.argument("prompt", required=False)
@click.option(
    "-m",
    "--model",
    envvar="MODELWAY_MODEL",
    required=True,
    help="provider/model to call, e.g. zhipu/glm-4-flash (env MODELWAY_MODEL); with --demo, demo/glm-4-flash; "
    "with --base-url, a model of that gateway.",
    shell_complete=complete_models,
)
@click.option("-s", "--system", help="A system prompt sent before your prompt.")
@click.option("-t", "--temperature", type=float, help="Sampling temperature (0 = greedy; kept, not dropped).")
@click.option("--max-tokens", type=int, help="Upper bound on generated tokens.")
@click.option("--no-stream", is_flag=True, help="Wait for the whole answer instead of streaming it.")
@click.option(
    "--base-url",
    envvar="MODELWAY_BASE_URL",
    help="Talk to a modelway gateway (or any OpenAI-compatible server) at this URL instead.",
)
@click.option(
    "--api-key",
    envvar="MODELWAY_API_KEY",
    help="Key for --base-url (env MODELWAY_API_KEY); a gateway without a master key needs none.",
)
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for the provider.")
@click.option("--usage", "show_usage", is_flag=True, help="Print token usage to stderr at the end.")
@click.option(
    "--demo",
    is_flag=True,
    help="Answer from a bundled local simulator (no key, no network): -m demo/glm-4-flash, demo/qwen-plus, ...",
)
def chat(
    prompt: str | None,
    model: str,
    system: str | None,
    temperature: float | None,
    max_tokens: int | None,
    no_stream: bool,
    base_url: str | None,
    api_key: str | None,
    timeout: float,
    show_usage: bool,
    demo: bool,
) -> None:
    """Send PROMPT to MODEL and stream the answer to the terminal.

    PROMPT may also come on standard input: echo "你好" | modelway chat -m zhipu/glm-4-flash

    \b
    Examples:
      modelway chat -m zhipu/glm-4-flash "用一句话介绍你自己"
      modelway chat -m dashscope/qwen-plus -s "Answer briefly." "What is SSE?"
      modelway chat --demo -m demo/glm-4-flash "hello"         # no key needed: local simulator
      modelway chat --base-url http://127.0.0.1:4000/v1 -m demo/qwen-plus "hi"   # through a gateway
    """
    from .client import Client

    if prompt is None:
        if sys.stdin.isatty():
            raise click.UsageError("give a PROMPT argument or pipe one on standard input")
        prompt = sys.stdin.read().strip()
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    params: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}

    def run(client_kwargs: dict[str, Any], model: str) -> None:
        with Client(timeout=timeout, **client_kwargs) as client:
            usage = None
            if no_stream:
                resp = client.chat(model, messages, **params)
                click.echo(resp.content or "")
                usage = resp.usage
            else:
                dim = sys.stderr.isatty()
                for chunk in client.chat(model, messages, stream=True, **params):
                    if chunk.usage is not None:
                        usage = chunk.usage
                    if not chunk.choices:
                        continue
                    delta = chunk.choices[0].delta
                    if delta.reasoning_content:
                        click.secho(delta.reasoning_content, nl=False, err=True, dim=dim)
                    if delta.content:
                        click.echo(delta.content, nl=False)
                click.echo()
            if show_usage and usage is not None:
                click.echo(
                    f"usage: prompt {usage.prompt_tokens}, completion {usage.completion_tokens}, "
                    f"total {usage.total_tokens}",
                    err=True,
                )

    if not demo and not base_url and model.startswith("demo/"):
        raise click.UsageError(f"{model} answers from a local simulator: add --demo (or --base-url of a gateway)")
    try:
        if demo:
            with _demo_provider(model) as (providers, call):
                run({"providers": providers}, call)
        elif base_url:
            run({"base_url": base_url, "api_key": api_key}, model)
        else:
            run({}, model)
    except ModelwayError as exc:
        hint = ""
        if base_url and isinstance(exc, AuthenticationError):
            hint = " (the gateway wants a key: --api-key or MODELWAY_API_KEY)"
        click.secho(f"error: {exc}{hint}", fg="red", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


@main.command()
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="MODELWAY_CONFIG",
    help="YAML config file (see modelway.example.yaml; env MODELWAY_CONFIG). Without one: embedded defaults, serving "
    "every provider whose key is in the environment as provider/model.",
)
@click.option("--host", help="Interface to listen on (default: config server.host, else 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default: config server.port, else 4000).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes (each runs the whole gateway).",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Also serve simulated providers (demo/glm-4-flash, demo/qwen-plus, ...) from modelway.testing: "
    "no key, no network. Their answers are made up locally.",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Log level.")
def serve(
    config_path: str | None, host: str | None, port: int | None, workers: int, demo: bool, log_level: str | None
) -> None:
    """Run the gateway: the OpenAI-compatible API (/v1/chat/completions, /v1/embeddings, /v1/models),
    DB-GPT API v2 (/api/v2/chat/completions), health checks (/health/liveness, /health/readiness) and
    Prometheus metrics (/metrics). With store.url in the config: virtual keys with rate limits and budgets,
    the usage ledger, and the admin API (/admin/keys, /admin/usage); see `modelway keys --help`.

    A deployment that cannot work (no key for its provider) is logged at start and skipped; a model with no
    working deployment answers 503 deployment_unavailable. `modelway check -c FILE` tries every deployment first.
    Deployments may be demo models (model: demo/glm-4-flash, with fault options): their simulators start with the
    gateway.

    Every setting can also come from an environment variable, over the file: MODELWAY_<SECTION>__<FIELD>
    (MODELWAY_SERVER__PORT=8080, MODELWAY_STORE__URL=...), a whole section (MODELWAY_MODELS=<YAML>), any of them
    from a mounted file (MODELWAY_SERVER__MASTER_KEY_FILE=/run/secrets/master-key). `modelway config` prints what
    the gateway would run with; `modelway config --help` explains the variables.

    \b
    Examples:
      modelway serve --demo                       # try it with no key: demo/glm-4-flash, demo/qwen-plus, ...
      modelway serve -c modelway.yaml --port 4000 --workers 2
      modelway serve -c demo.yaml                 # aliases over demo/... deployments (see the README)
      MODELWAY_SERVER__PORT=8080 MODELWAY_STORE__URL=sqlite:///gw.db modelway serve    # no file: the environment
    """
    from .config import load_config

    try:
        config = load_config(config_path)
    except ModelwayError as exc:
        click.secho(f"error: invalid configuration: {exc}", fg="red", err=True)
        sys.exit(2)
    try:
        import uvicorn  # noqa: F401  (the server extra)
    except ImportError:
        click.secho("error: the server needs uvicorn: pip install 'modelway[server]'", fg="red", err=True)
        sys.exit(2)
    if workers > 1 and config.control_plane and config.store.redis_url is None:
        click.secho(
            f"error: --workers {workers} with a store needs store.redis_url: without Redis every worker would count "
            "rate limits and budgets on its own, letting through up to "
            f"{workers}x what a key is allowed. Set store.redis_url, or run one worker.",
            fg="red",
            err=True,
        )
        sys.exit(2)
    if workers > 1 and config.store.url is None:
        click.secho(
            f"warning: --workers {workers} without store.url: each worker keeps its own stored Responses, so a "
            "previous_response_id made on one worker is not found (404) on another. Set store.url to share them.",
            fg="yellow",
            err=True,
        )
    os.environ["MODELWAY_CONFIG"] = os.path.abspath(config_path) if config_path else ""
    os.environ["MODELWAY_DEMO"] = "1" if demo else "0"
    level = log_level or config.server.log_level
    h = host or config.server.host
    p = port if port is not None else config.server.port
    if demo:
        click.secho(
            "[demo] demo/* models answer from local simulators (modelway.testing), not real providers",
            fg="yellow",
            err=True,
        )
    from .server.runner import raise_open_files, run, serve_config

    kwargs: dict[str, Any] = {
        "factory": True,
        "host": h,
        "port": p,
        "workers": workers,
        "log_level": level,
        "access_log": level == "debug",
        "lifespan": "on",
        # the gateway does not use the client address: skip uvicorn's X-Forwarded-* rewriting on every request
        "proxy_headers": False,
        "ws": "none",
    }
    try:
        import uvloop  # noqa: F401

        kwargs["loop"] = "uvloop"
    except ImportError:
        pass
    metrics_dir = None
    if workers > 1 and config.metrics.enabled and not os.environ.get("MODELWAY_METRICS_DIR"):
        # every worker writes its metrics here, and any worker's /metrics answers for all of them
        import tempfile

        metrics_dir = tempfile.mkdtemp(prefix="modelway-metrics-")
        os.environ["MODELWAY_METRICS_DIR"] = metrics_dir
    raise_open_files(config, workers)
    try:
        run(serve_config("modelway.server.main:app_factory", config, **kwargs))
    finally:
        if metrics_dir is not None:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)


@main.command()
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="MODELWAY_CONFIG",
    help="YAML config file, as for `modelway serve` (models, keys, store, limits).",
)
@click.option("--controller", help="FastChat controller to register with, e.g. http://127.0.0.1:21001.")
@click.option("--dbgpt-controller", help="DB-GPT model controller to register with, e.g. http://127.0.0.1:8000.")
@click.option(
    "--worker-address",
    help="How the controllers reach this worker (default http://HOST:PORT).",
)
@click.option(
    "-m",
    "--model",
    "model_specs",
    multiple=True,
    metavar="ALIAS[=NAME]",
    help="Serve the gateway model ALIAS under the name NAME (default: ALIAS). Repeat for more models.",
)
@click.option(
    "--embedding-model",
    "embedding_specs",
    multiple=True,
    metavar="ALIAS[=NAME]",
    help="An embedding model (DB-GPT: registered as NAME@text2vec). Repeat for more.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=21002, show_default=True, help="Port to listen on.")
@click.option(
    "--heartbeat-interval",
    type=click.FloatRange(min=0.1),
    envvar="FASTCHAT_WORKER_HEART_BEAT_INTERVAL",
    default=45.0,
    show_default=True,
    help="Seconds between heartbeats (DB-GPT: at most 20).",
)
@click.option(
    "--limit-worker-concurrency",
    type=click.IntRange(min=1),
    help="Serve at most N requests at once; more wait (and count in queue_length). Default: no bound.",
)
@click.option(
    "--context-length",
    type=click.IntRange(min=1),
    default=32768,
    show_default=True,
    help="The context length reported to the controllers (FastChat checks prompts against it).",
)
@click.option(
    "--key",
    envvar="MODELWAY_WORKER_KEY",
    help="Count the worker's requests against this virtual key's limits and usage (env MODELWAY_WORKER_KEY).",
)
@click.option("--demo", is_flag=True, help="Also serve the simulated demo/* models, as `modelway serve --demo` does.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Log level.")
def worker(
    config_path: str | None,
    controller: str | None,
    dbgpt_controller: str | None,
    worker_address: str | None,
    model_specs: tuple[str, ...],
    embedding_specs: tuple[str, ...],
    host: str,
    port: int,
    heartbeat_interval: float,
    limit_worker_concurrency: int | None,
    context_length: int,
    key: str | None,
    demo: bool,
    log_level: str | None,
) -> None:
    """Join a FastChat or DB-GPT cluster as a model worker answered by the gateway's models.

    The worker registers each model with the controllers, sends heartbeats, and serves FastChat's worker API
    (/worker_generate_stream, /worker_generate, /worker_get_embeddings, ...) and DB-GPT's (/api/worker/*), plus
    everything `modelway serve` serves. Keys, limits, failover, usage records and metrics apply to every request.
    On SIGTERM it withdraws from the controllers and finishes what is in flight.

    \b
    Examples:
      modelway worker -c modelway.yaml --controller http://127.0.0.1:21001 \\
          --worker-address http://127.0.0.1:21002 -m glm=glm-4-flash -m qwen=qwen-plus
      modelway worker --demo --dbgpt-controller http://127.0.0.1:8000 -m demo/glm-4-flash=glm-4
    """
    import logging

    from .cluster.worker import WorkerSettings, create_worker_app, parse_models
    from .config import load_config

    def fail(message: str) -> NoReturn:
        click.secho(f"error: {message}", fg="red", err=True)
        sys.exit(2)

    try:
        config = load_config(config_path)
    except ModelwayError as exc:
        fail(f"invalid configuration: {exc}")
    try:
        import uvicorn  # noqa: F401  (the server extra)
    except ImportError:
        fail("the worker needs uvicorn: pip install 'modelway[server]'")
    if not controller and not dbgpt_controller:
        fail("give --controller (FastChat) or --dbgpt-controller (DB-GPT), or both")
    try:
        served = parse_models(model_specs) + parse_models(embedding_specs, embedding=True)
    except ValueError as exc:
        fail(f"--model {exc}")
    if not served:
        fail("give at least one --model ALIAS[=NAME] (a model of the gateway, e.g. -m zhipu/glm-4-flash=glm-4)")
    names = [m.name for m in served]
    if len(set(names)) != len(names):
        fail(f"a model name is announced twice: {', '.join(sorted(n for n in set(names) if names.count(n) > 1))}")
    from .providers import PROVIDERS
    from .server.demo import DEMO_MODELS

    known = {m.name for m in config.models} | (set(DEMO_MODELS) if demo else set())
    for m in served:
        provider = m.alias.partition("/")[0]
        if m.alias not in known and not (config.server.allow_direct and "/" in m.alias and provider in PROVIDERS):
            hint = " (demo/* models need --demo)" if m.alias.startswith("demo/") else ""
            fail(f"--model {m.alias}: not a model of the gateway's config, nor provider/model{hint}")
    if worker_address is None:
        if host in ("0.0.0.0", "::", ""):
            fail(f"--host {host} listens everywhere: give --worker-address, the address the controllers can reach")
        worker_address = f"http://{host}:{port}"
    settings = WorkerSettings(
        worker_address=worker_address.rstrip("/"),
        models=served,
        controller=controller,
        dbgpt_controller=dbgpt_controller,
        heartbeat_interval=heartbeat_interval,
        concurrency=limit_worker_concurrency,
        context_length=context_length,
        key=key,
    )
    level = log_level or config.server.log_level
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    logger = logging.getLogger("modelway")
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    if demo:
        click.secho(
            "[demo] demo/* models answer from local simulators (modelway.testing), not real providers",
            fg="yellow",
            err=True,
        )
    from .server.runner import run, serve_config

    app = create_worker_app(config, settings, demo=demo)
    kwargs: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": level,
        "access_log": level == "debug",
        "lifespan": "on",
        "proxy_headers": False,
        "ws": "none",
    }
    try:
        import uvloop  # noqa: F401

        kwargs["loop"] = "uvloop"
    except ImportError:
        pass
    run(serve_config(app, config, **kwargs))


@main.command()
@click.option(
    "--base-url", envvar="MODELWAY_BASE_URL", help="List a gateway's models (or any OpenAI-compatible server's)."
)
@click.option(
    "--api-key",
    envvar="MODELWAY_API_KEY",
    help="Key for --base-url (env MODELWAY_API_KEY); a gateway without a master key needs none.",
)
@click.option("--demo", is_flag=True, help="List the demo/... models too (they answer from local simulators).")
@click.option("-q", "--quiet", is_flag=True, help="Print the names only, one a line (for scripts).")
def models(base_url: str | None, api_key: str | None, demo: bool, quiet: bool) -> None:
    """List the models you can call, as a table: name, provider, kind (chat, embedding or rerank, told by the
    model's name). With --base-url: a gateway's models (its aliases, and provider/model names it serves); else the
    known models of every provider whose key is in the environment, as provider/model (each provider serves more
    than it lists).

    \b
    Examples:
      modelway models                                          # what your environment's keys can call
      modelway models --demo                                   # and the demo/... models
      modelway models --base-url http://127.0.0.1:4000/v1      # what a gateway serves
      modelway models -q | grep glm
    """
    from .client import Client
    from .health import model_kind

    rows: list[tuple[str, str, str]] = []
    if demo:
        from .testing.demo import DEMO_MODELS

        rows += [(name, "demo", m.kind) for name, m in DEMO_MODELS.items()]
    try:
        with Client(**({"base_url": base_url, "api_key": api_key} if base_url else {})) as client:
            found = client.models()
    except ModelwayError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    rows += [(m.id, m.owned_by, model_kind(m.id)) for m in found if not (demo and m.id.startswith("demo/"))]
    if not rows:
        click.echo(
            "no models: no provider key found in the environment (see `modelway providers`); "
            "`modelway models --demo` lists the demo models, which need none",
            err=True,
        )
        return
    if quiet:
        for name, _, _ in rows:
            click.echo(name)
        return
    _table(("name", "provider", "kind"), rows)


def _table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """Columns as wide as their widest cell; the last one unpadded."""
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head) - 1)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join([*(c.ljust(w) for c, w in zip(cells, widths, strict=False)), cells[-1]])

    click.echo(line(head))
    for r in rows:
        click.echo(line(r))


_COMPLETION_HELP = """Print the shell completion script of modelway for SHELL (bash, zsh or fish).

\b
Install it once (then open a new shell):
  bash:  modelway completion bash > ~/.local/share/bash-completion/completions/modelway
         (or add  eval "$(modelway completion bash)"  to ~/.bashrc)
  zsh:   modelway completion zsh > "${fpath[1]}/_modelway"
         (or add  eval "$(modelway completion zsh)"  to ~/.zshrc, after compinit)
  fish:  modelway completion fish > ~/.config/fish/completions/modelway.fish

\b
Examples:
  eval "$(modelway completion bash)"        # this shell only
  modelway ch<TAB>                          # chat, check
  modelway chat -m demo/<TAB>               # the demo models
"""


@main.command(help=_COMPLETION_HELP)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # (click has all three)
    click.echo(cls(main, {}, "modelway", "_MODELWAY_COMPLETE").source())


@main.command()
def providers() -> None:
    """List the providers modelway speaks, and whether their credentials were found in the environment.

    \b
    Examples:
      modelway providers
      ZHIPUAI_API_KEY=id.secret modelway providers   # zhipu: key found (ZHIPUAI_API_KEY)
    """
    from .envfile import env_source
    from .providers import PROVIDERS

    rows = []
    for name, cls in sorted(PROVIDERS.items()):
        found = next((v for k in cls.key_env if (v := env_source(os.environ, k))), None)
        needs_key = bool(cls.key_env) and getattr(getattr(cls, "spec", None), "key_required", True)
        status = (
            f"key found ({found})"
            if found
            else ("no key: set " + " or ".join(cls.key_env) if needs_key else "no key needed")
        )
        rows.append((name, cls.label or name, status))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    click.echo(f"{'provider':<{w0}}  {'name':<{w1}}  credentials")
    for name, label, status in rows:
        colour = "green" if status.startswith("key found") else None
        click.echo(f"{name:<{w0}}  {label:<{w1}}  " + click.style(status, fg=colour))


from . import cli_admin, cli_check, cli_config, cli_deployments  # noqa: E402  (keys, usage, check, config, deployments)

main.add_command(cli_admin.keys)
main.add_command(cli_admin.usage)
main.add_command(cli_check.check)
main.add_command(cli_config.config)
main.add_command(cli_deployments.deployments)

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="modelway")  # (python -m modelway.cli: the same usage lines and shell completion as `modelway`)
