"""``modelway keys`` and ``modelway usage``: the control plane from the command line.

They work on the store of the config file (``store.url``) directly, so they need no running gateway; a running
gateway picks up created and revoked keys within ``store.key_refresh`` seconds. They need the server extra (SQLAlchemy
and the database's driver): without it they say which extra to install, and exit 1.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from .cli_chart import bars
from .errors import InvalidRequestError, ModelwayError
from .usage.records import GROUP_BY, MAX_HOURS

if TYPE_CHECKING:
    from .config import Config
    from .store.sql import SQLStore

__all__ = ["keys", "need_store_extra", "usage"]

T = TypeVar("T")

#: the metadata role of a key made with ``keys create --admin``
ADMIN_ROLE = "admin"


def config_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-c/--config`` (or ``$MODELWAY_CONFIG``): the admin commands work on the config's store (without a file: the
    store the ``MODELWAY_STORE__*`` variables give)."""
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        envvar="MODELWAY_CONFIG",
        help=help + " (env MODELWAY_CONFIG; without one: the environment's MODELWAY_STORE__URL)",
    )


_CONFIG = config_option("The gateway's YAML config; its store.url says where keys and usage are kept.")
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
_JSON = JSON_OPTION


def with_config_store(
    config_path: str | None, work: Callable[[SQLStore, Config], Awaitable[T]], *, needs: str = "keys and usage"
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
        where = config_path or "no config file (-c or MODELWAY_CONFIG), and the environment"
        click.secho(
            f"error: {where} has no store.url (nor MODELWAY_STORE__URL): {needs} need a store", fg="red", err=True
        )
        sys.exit(2)
    need_store_extra(config.store.url)
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


def need_store_extra(url: str) -> None:
    """Exit 1 saying which extra to install when a module the store at ``url`` needs is missing (SQLAlchemy and
    aiosqlite come with ``modelway[server]``, asyncpg with ``modelway[postgres]``), rather than fail with a
    ModuleNotFoundError traceback."""
    sqlite = url.startswith("sqlite")
    for module, extra in (("sqlalchemy", "server"), ("aiosqlite", "server") if sqlite else ("asyncpg", "postgres")):
        try:
            importlib.import_module(module)
        except ImportError:
            ctx, names = click.get_current_context(silent=True), []
            while ctx is not None and ctx.parent is not None:  # (the root's name is how it was run: not shown)
                names.append(ctx.info_name or "")
                ctx = ctx.parent
            command = f"`modelway {' '.join(reversed(names))}`" if names else "this command"
            click.secho(
                f"error: {command} needs {module}, which modelway[{extra}] installs: pip install 'modelway[{extra}]'",
                fg="red",
                err=True,
            )
            sys.exit(1)


def _with_store(config_path: str | None, work: Callable[[SQLStore], Awaitable[T]]) -> T:
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
@click.option("--admin", "admin", is_flag=True, help='An admin-scoped key: its metadata says {"role": "admin"}.')
@_JSON
def create_key(
    config_path: str | None,
    name: str,
    models: tuple[str, ...],
    rpm: int | None,
    tpm: int | None,
    max_parallel: int | None,
    budget: float | None,
    budget_period: str,
    expires_in: float | None,
    admin: bool,
    as_json: bool,
) -> None:
    """Create a key and print its secret (shown only now: the store keeps a hash).

    \b
    Examples:
      modelway keys create -c modelway.yaml --name team-a --models chat --rpm 60 --budget 20 --budget-period month
      modelway keys create -c modelway.yaml --name ops --admin      # signs in to the console (/ui)
    """
    from .auth.keys import key_fields, new_key

    data: dict[str, Any] = {"name": name, "budget_period": budget_period}
    if admin:
        data["metadata"] = {"role": ADMIN_ROLE}
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
def list_keys(config_path: str | None, include_revoked: bool, as_json: bool) -> None:
    """List keys: id, name, role, prefix, models, limits, expiry (and revocation, with --all).

    \b
    Examples:
      modelway keys list -c modelway.yaml
      modelway keys list -c modelway.yaml --all --json
    """

    async def fetch(store: SQLStore) -> list[dict[str, Any]]:
        return [k.to_dict() for k in await store.list_keys(include_revoked=True)]

    every = _with_store(config_path, fetch)
    revoked = sum(k["revoked_at"] is not None for k in every)
    found = every if include_revoked else [k for k in every if k["revoked_at"] is None]
    if as_json:
        click.echo(orjson.dumps(found).decode())
        return
    if not every:
        click.echo("no keys yet: create one with `modelway keys create`", err=True)
        return
    if not found:
        click.echo(f"no active keys; {revoked} revoked (--all to list them)", err=True)
        return
    header = ["id", "name", "role", "prefix", "models", "rpm", "tpm", "parallel", "budget", "expires"]
    rows = [[*header, "revoked"] if include_revoked else header]
    for k in found:
        budget = f"{k['budget']:g}/{k['budget_period']}" if k["budget"] is not None else "-"
        row = [
            k["id"],
            k["name"],
            str(k["metadata"].get("role") or "-"),
            k["prefix"] + "…",
            ",".join(k["models"]) if k["models"] else "*",
            str(k["rpm"] or "-"),
            str(k["tpm"] or "-"),
            str(k["max_parallel"] or "-"),
            budget,
            when(k["expires_at"]),
        ]
        rows.append([*row, when(k["revoked_at"])] if include_revoked else row)
    table(rows)
    if revoked and not include_revoked:
        click.echo(f"{revoked} revoked (--all to list them)", err=True)


@keys.command("revoke")
@_CONFIG
@click.argument("key_id")
def revoke_key(config_path: str | None, key_id: str) -> None:
    """Revoke KEY_ID: running gateways refuse it within store.key_refresh seconds.

    \b
    Example:
      modelway keys revoke -c modelway.yaml key_3f9a0c1d2e4b5a69
    """

    async def revoke(store: SQLStore) -> bool:
        return await store.revoke_key(key_id, at=time.time())

    if not _with_store(config_path, revoke):
        click.secho(f"error: no active key {key_id!r}", fg="red", err=True)
        sys.exit(1)
    click.echo(f"revoked {key_id}")


#: the longest range shown per hour, and the days a chart shows (the last ones)
CHART_DAYS = 14
MAX_CHART_DAYS = 60


@click.command()
@_CONFIG
@click.option(
    "--by",
    "group_by",
    type=click.Choice(list(GROUP_BY)),
    default="model",
    show_default=True,
    help="How to group the totals (hour: the last 2 days unless --days says otherwise, at most 14).",
)
@click.option("--days", type=click.FloatRange(min=0, min_open=True), help="Only the last N days.")
@click.option("--key", "key", help="Only this key's usage: its id, or its name.")
@click.option("--model", "model", help="Only this model's usage (the name callers asked for).")
@click.option(
    "--chart/--no-chart",
    default=True,
    show_default=True,
    help=f"Under the table, a bar per day of cost (of requests when nothing has a price): the last {CHART_DAYS} days, "
    f"or --days (at most {MAX_CHART_DAYS}).",
)
@_JSON
def usage(
    config_path: str | None,
    group_by: str,
    days: float | None,
    key: str | None,
    model: str | None,
    chart: bool,
    as_json: bool,
) -> None:
    """Requests, errors, tokens, cost and latency from the usage ledger's hourly and daily totals, grouped by model,
    key (shown by name), deployment, endpoint (the API the caller spoke: chat, messages, responses, completions,
    embeddings, rerank, dbgpt), day or hour (UTC). Totals count whole hours; records deleted by usage.retention_days
    still count.

    \b
    Examples:
      modelway usage -c modelway.yaml --by key --days 7
      modelway usage -c modelway.yaml --by hour --model chat --no-chart
    """
    now = time.time()
    if group_by == "hour" and days is None:
        days = 2.0
    if group_by == "hour" and days is not None and days * 24 > MAX_HOURS:
        raise click.UsageError(f"--by hour covers at most {MAX_HOURS // 24} days: use a smaller --days, or --by day")
    since = now - days * 86_400 if days else None
    chart_days = min(math.ceil(days), MAX_CHART_DAYS) if days else CHART_DAYS

    async def summary(store: SQLStore) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        key_id = await _key_id(store, key) if key is not None else None
        rows = await store.usage_summary(group_by=group_by, since=since, key_id=key_id, model=model)
        points: list[dict[str, Any]] = []
        if chart and not as_json and rows:
            start = (now // 86_400 - chart_days + 1) * 86_400
            series = await store.usage_series(bucket="day", since=start, until=now, key_id=key_id, model=model)
            points = series["series"][0]["points"]
        return rows, points

    rows, points = _with_store(config_path, summary)
    if as_json:
        click.echo(orjson.dumps(rows).decode())
        return
    if not rows:
        click.echo(
            "no usage recorded yet" if since is None and not (key or model) else "no usage in that range", err=True
        )
        return
    table(_usage_table(group_by, rows))
    if points:
        click.echo()
        for line in _chart(points, chart_days):
            click.echo(line)


async def _key_id(store: SQLStore, key: str) -> str:
    """The id of the key ``key`` names: its id, or the name of exactly one key (revoked ones too)."""
    found = await store.list_keys(include_revoked=True)
    if any(k.id == key for k in found):
        return key
    named = [k.id for k in found if k.name == key]
    if len(named) == 1:
        return named[0]
    if named:
        raise InvalidRequestError(f"{len(named)} keys are named {key!r}: give one's id ({', '.join(named)})")
    raise InvalidRequestError(f"no key has the id or name {key!r} (modelway keys list --all)")


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _usage_table(group_by: str, rows: list[dict[str, Any]]) -> list[list[str]]:
    """The totals as table rows: keys by name (the id too when two share one), no key as ``(no key)``."""
    names = [r.get("key_name") for r in rows] if group_by == "key" else []
    shared = {n for n in names if n is not None and names.count(n) > 1}
    out = [[group_by, "requests", "errors", "prompt", "completion", "cost", "p50 ms", "p95 ms", "ttft p50 ms"]]
    for r in rows:
        group = r["group"]
        if group_by == "key":
            name = r.get("key_name")
            if group is None:
                label = "(no key)"
            elif name is None:
                label = group  # a key id no key has (deleted from the database by hand)
            else:
                label = f"{name} ({group})" if name in shared else name
        else:
            label = str(group)
        out.append(
            [
                label,
                str(r["requests"]),
                str(r["errors"]),
                str(r["prompt_tokens"]),
                str(r["completion_tokens"]),
                f"{r['cost']:.6f}",
                _ms(r["p50_ms"]),
                _ms(r["p95_ms"]),
                _ms(r["ttft_p50_ms"]),
            ]
        )
    return out


def _chart(points: list[dict[str, Any]], days: int) -> list[str]:
    """A bar per day: cost, or requests when nothing had a cost."""
    by_cost = any(p["cost"] > 0 for p in points)
    what = "cost" if by_cost else "requests"
    values = [(time.strftime("%Y-%m-%d %a", time.gmtime(p["t"])), float(p[what])) for p in points]
    fmt = (lambda v: f"{v:.6f}") if by_cost else (lambda v: f"{v:,.0f}")
    return [f"{what} per day (UTC), the last {days} days", *bars(values, fmt)]
