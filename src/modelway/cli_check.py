"""``modelway check``: does every deployment of a config answer? (the checks are :mod:`modelway.health`)"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click
import orjson

from .errors import ModelwayError

__all__ = ["check"]


@click.command()
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="MODELWAY_CONFIG",
    help="YAML config file, as for `modelway serve` (env MODELWAY_CONFIG). Without one: the direct models of "
    "every provider whose key is in the environment.",
)
@click.option(
    "-m",
    "--model",
    "models",
    multiple=True,
    metavar="NAME",
    help="Check only this alias (all its deployments) or provider/model. Repeat for more.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=20.0,
    show_default=True,
    help="Seconds each deployment has to answer (a deployment's own shorter timeout wins).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=64),
    default=8,
    show_default=True,
    help="Deployments checked at once.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per deployment) instead of a table.")
def check(config_path: str | None, models: tuple[str, ...], timeout: float, concurrency: int, as_json: bool) -> None:
    """Send one tiny request to every deployment of the config and print a health table: alias, deployment,
    status (ok or error), latency, and the error. Exit status 1 when any deployment failed.

    Each deployment is built as `modelway serve` builds it (its key from the deployment, the providers: section
    or the environment; demo/... deployments over their local simulators) and called directly, not through a
    running gateway: a chat completion of at most 1 token (an embedding of one word, a rerank of one document
    for embedding and rerank models), with no retry. Deployments without a key fail at once, without a request.
    The direct models the config names (prices:, providers:) are checked too, under the alias "(direct)".
    A progress bar is shown on a terminal.

    \b
    Examples:
      modelway check -c modelway.yaml
      modelway check -c modelway.yaml -m chat -m embed --timeout 10
      modelway check -c modelway.yaml --json | jq '.[] | select(.status == "error")'
      modelway check                              # every provider whose key is in the environment
    """
    import logging

    from .config import load_config
    from .health import CheckResult, run_checks

    # the table says what the gateway's start-up warnings would (a deployment without a key)
    logging.getLogger("modelway.server").setLevel(logging.ERROR)

    try:
        config = load_config(config_path)
    except ModelwayError as exc:
        click.secho(f"error: invalid configuration: {exc}", fg="red", err=True)
        sys.exit(2)
    bar: Any = None

    def started(n: int) -> None:
        nonlocal bar
        if n and sys.stderr.isatty():
            bar = click.progressbar(length=n, label="checking", file=sys.stderr, show_pos=True)
            bar.__enter__()

    def done(result: CheckResult) -> None:
        if bar is not None:
            bar.update(1)

    try:
        results = asyncio.run(
            run_checks(
                config,
                models=models,
                timeout=timeout,
                concurrency=concurrency,
                file=config_path is not None,
                on_start=started,
                on_result=done,
            )
        )
    except ModelwayError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if as_json:
        click.echo(orjson.dumps([r.to_dict() for r in results], option=orjson.OPT_INDENT_2).decode())
    elif not results:
        click.echo("nothing to check: the config has no models, and no provider has a key", err=True)
    else:
        _print_table(results)
    if any(not r.ok for r in results):
        sys.exit(1)


def _print_table(results: list[Any]) -> None:
    head = ("alias", "deployment", "status", "latency", "error")
    rows = [
        (
            r.alias,
            r.deployment,
            "ok" if r.ok else "error",
            "-" if r.latency is None else f"{r.latency * 1000:.0f} ms",
            r.error or "",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in (head, *rows)) for i in range(4)]
    click.echo("  ".join([*(h.ljust(w) for h, w in zip(head, widths, strict=False)), head[4]]))
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        cells[2] = click.style(cells[2], fg="green" if row[2] == "ok" else "red")
        click.echo("  ".join([*cells, row[4]]).rstrip())
    failed = sum(1 for r in results if not r.ok)
    summary = f"{len(results) - failed} of {len(results)} deployments answered"
    click.secho(summary if not failed else f"{summary}; {failed} failed", fg="red" if failed else "green", err=True)
