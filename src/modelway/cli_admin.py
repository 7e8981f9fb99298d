"""``modelway keys`` and ``modelway usage``: the control plane from the command line.

They work on the store of the config file (``store.url``) directly, so they need no running gateway; a running
gateway picks up created and revoked keys within ``store.key_refresh`` seconds.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from .errors import InvalidRequestError, ModelwayError
from .usage.records import GROUP_BY

if TYPE_CHECKING:
    from .config import Config
    from .store.sql import SQLStore

__all__ = ["keys", "usage"]

T = TypeVar("T")


def config_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-c/--config`` (or ``$MODELWAY_CONFIG``), required: the admin commands work on the config's store."""
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        envvar="MODELWAY_CONFIG",
        required=True,
        help=help,
    )


_CONFIG = config_option("The gateway's YAML config; its store.url says where keys and usage are kept.")
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
_JSON = JSON_OPTION


def with_config_store(
    config_path: str, work: Callable[[SQLStore, Config], Awaitable[T]], *, needs: str = "keys and usage"
) -> T:
    """Run ``work`` with the config's store open (and the config): a clear error, not a traceback, when the config is
    invalid, has no store, or the store refuses. ``needs`` says what needs the store, in that error."""
    from .config import load_config

    try:
        config = load_config(config_path)
    except ModelwayError as exc:
        click.secho(f"error: invalid configuration: {exc}", fg="red", err=True)
        sys.exit(2)
    if config.store.url is None:
        click.secho(f"error: {config_path} has no store.url: {needs} need a store", fg="red", err=True)
        sys.exit(2)
    from .store.sql import SQLStore

    async def run() -> T:
        store = SQLStore(config.store.url or "")
        await store.open()
        try:
            return await work(store, config)
        finally:
            await store.aclose()

    try:
        return asyncio.run(run())
    except InvalidRequestError as exc:  # the caller's input, checked against the store's data
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2 if exc.http_status == 400 else 1)
    except ModelwayError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)


def _with_store(config_path: str, work: Callable[[SQLStore], Awaitable[T]]) -> T:
    return with_config_store(config_path, lambda store, _config: work(store))


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts)) if ts else "-"


def table(rows: list[list[str]]) -> None:
    """Rows as aligned columns (the first row is the header)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@click.group()
def keys() -> None:
    """Create, list and revoke virtual keys (the keys callers send to the gateway).

    \b
    Examples:
      modelway keys create -c modelway.yaml --name team-a --models chat --rpm 60 --budget 20 --budget-period month
      modelway keys list -c modelway.yaml
      modelway keys revoke -c modelway.yaml key_3f9a0c1d2e4b5a69
    """


@keys.command("create")
@_CONFIG
@click.option("--name", required=True, help="A label to recognise the key by (a team, a service).")
@click.option("--models", "models", multiple=True, help="A model the key may call (repeat it); default: every model.")
@click.option("--rpm", type=click.IntRange(min=1), help="Requests per minute.")
@click.option("--tpm", type=click.IntRange(min=1), help="Tokens (prompt + completion) per minute.")
@click.option("--max-parallel", type=click.IntRange(min=1), help="Requests in flight at once.")
@click.option("--budget", type=click.FloatRange(min=0), help="The most the key may spend per budget period.")
@click.option(
    "--budget-period",
    type=click.Choice(["total", "day", "month"]),
    default="total",
    show_default=True,
    help="When the spend counter starts again (UTC).",
)
@click.option("--expires-in", type=click.FloatRange(min=1), help="Seconds until the key stops working.")
@_JSON
def create_key(
    config_path: str,
    name: str,
    models: tuple[str, ...],
    rpm: int | None,
    tpm: int | None,
    max_parallel: int | None,
    budget: float | None,
    budget_period: str,
    expires_in: float | None,
    as_json: bool,
) -> None:
    """Create a key and print its secret (shown only now: the store keeps a hash)."""
    from .auth.keys import key_fields, new_key

    data: dict[str, Any] = {"name": name, "budget_period": budget_period}
    for field, value in (
        ("models", list(models) or None),
        ("rpm", rpm),
        ("tpm", tpm),
        ("max_parallel", max_parallel),
        ("budget", budget),
        ("expires_in", expires_in),
    ):
        if value is not None:
            data[field] = value
    try:
        fields = key_fields(data, creating=True)
    except ModelwayError as exc:
        raise click.UsageError(str(exc)) from None
    secret, key = new_key(fields.pop("name"), **fields)

    async def insert(store: SQLStore) -> None:
        await store.insert_key(key)

    _with_store(config_path, insert)
    if as_json:
        click.echo(orjson.dumps({"key": secret, **key.to_dict()}).decode())
        return
    click.echo(secret)
    click.secho(f"created {key.id} ({key.name}); the secret above is shown only once", err=True)


@keys.command("list")
@_CONFIG
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@_JSON
def list_keys(config_path: str, include_revoked: bool, as_json: bool) -> None:
    """List keys: id, name, prefix, models, limits, expiry."""

    async def fetch(store: SQLStore) -> list[dict[str, Any]]:
        return [k.to_dict() for k in await store.list_keys(include_revoked=include_revoked)]

    found = _with_store(config_path, fetch)
    if as_json:
        click.echo(orjson.dumps(found).decode())
        return
    if not found:
        click.echo("no keys yet: create one with `modelway keys create`", err=True)
        return
    rows = [["id", "name", "prefix", "models", "rpm", "tpm", "parallel", "budget", "expires", "revoked"]]
    for k in found:
        budget = f"{k['budget']:g}/{k['budget_period']}" if k["budget"] is not None else "-"
        rows.append(
            [
                k["id"],
                k["name"],
                k["prefix"] + "…",
                ",".join(k["models"]) if k["models"] else "*",
                str(k["rpm"] or "-"),
                str(k["tpm"] or "-"),
                str(k["max_parallel"] or "-"),
                budget,
                when(k["expires_at"]),
                when(k["revoked_at"]),
            ]
        )
    table(rows)


@keys.command("revoke")
@_CONFIG
@click.argument("key_id")
def revoke_key(config_path: str, key_id: str) -> None:
    """Revoke KEY_ID: running gateways refuse it within store.key_refresh seconds."""

    async def revoke(store: SQLStore) -> bool:
        return await store.revoke_key(key_id, at=time.time())

    if not _with_store(config_path, revoke):
        click.secho(f"error: no active key {key_id!r}", fg="red", err=True)
        sys.exit(1)
    click.echo(f"revoked {key_id}")


@click.command()
@_CONFIG
@click.option(
    "--by",
    "group_by",
    type=click.Choice(list(GROUP_BY)),
    default="model",
    show_default=True,
    help="How to group the totals.",
)
@click.option("--days", type=click.FloatRange(min=0, min_open=True), help="Only the last N days.")
@click.option("--key", "key_id", help="Only this key's usage.")
@_JSON
def usage(config_path: str, group_by: str, days: float | None, key_id: str | None, as_json: bool) -> None:
    """Requests, tokens and cost from the usage ledger, grouped by model, key, deployment, endpoint (the API the
    caller spoke: chat, messages, responses, completions, embeddings, rerank, dbgpt) or day."""
    since = time.time() - days * 86400 if days else None

    async def summary(store: SQLStore) -> list[dict[str, Any]]:
        return await store.usage_summary(group_by=group_by, since=since, key_id=key_id)

    rows = _with_store(config_path, summary)
    if as_json:
        click.echo(orjson.dumps(rows).decode())
        return
    if not rows:
        click.echo("no usage recorded yet", err=True)
        return
    lines = [[group_by, "requests", "errors", "prompt", "completion", "cost"]]
    for r in rows:
        lines.append(
            [
                str(r["group"]),
                str(r["requests"]),
                str(r["errors"]),
                str(r["prompt_tokens"]),
                str(r["completion_tokens"]),
                f"{r['cost']:.6f}",
            ]
        )
    table(lines)
