"""``modelway deployments``: deployments and models (aliases) changed at run time, from the command line.

Like ``modelway keys``, it works on the store of the config file (``store.url``) directly, with the checks of the
admin API (the YAML's parser); running gateways apply a change within a second or two.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from .cli_admin import JSON_OPTION, config_option, table, when, with_config_store

if TYPE_CHECKING:
    from .store.deployments import RuntimeChanges

__all__ = ["deployments"]

T = TypeVar("T")

_CONFIG = config_option("The gateway's YAML config: its models are the base, its store.url keeps the changes.")
_JSON = JSON_OPTION
_SET = click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="FIELD=JSON",
    help="Any other field of the YAML, its value as JSON: --set quota='{\"rpm\": 60}' --set params='{\"top_p\": 0.9}'.",
)


def _run(config_path: str | None, work: Callable[[RuntimeChanges], Awaitable[T]]) -> T:
    from .store.deployments import RuntimeChanges

    return with_config_store(
        config_path, lambda store, config: work(RuntimeChanges(store, config)), needs="run-time changes"
    )


def _fields(sets: tuple[str, ...], **given: Any) -> dict[str, Any]:
    out = {k: v for k, v in given.items() if v is not None}
    for item in sets:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise click.UsageError(f"--set {item!r}: expected FIELD=JSON")
        try:
            out[name] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            out[name] = raw  # a plain string: --set api_base=http://...
    return out


def _show(data: dict[str, Any], as_json: bool, message: str) -> None:
    if as_json:
        click.echo(orjson.dumps(data).decode())
    else:
        click.echo(message)
        click.secho("running gateways apply it within a second or two", err=True)


@click.group()
def deployments() -> None:
    """List, add, change, disable, enable and remove deployments without a restart.

    The YAML config stays the source at start; the changes are kept in its store and applied by every running
    gateway within a second or two. A configured deployment keeps its id (cfg_...) across restarts; removing it
    hides it until `reset`. Keys: prefer --api-key-env (each gateway reads the variable); an --api-key is stored
    as given and never shown again.

    \b
    Examples:
      modelway deployments list -c modelway.yaml
      modelway deployments add -c modelway.yaml --model-name chat --model openai/gpt-4o-mini --api-key-env OPENAI_KEY
      modelway deployments update -c modelway.yaml dep_1a2b3c4d5e6f7a8b --weight 3 --set quota='{"rpm": 60}'
      modelway deployments disable -c modelway.yaml cfg_0a1b2c3d4e5f
      modelway deployments aliases update -c modelway.yaml chat --set routing='{"strategy": "latency"}'
    """


@deployments.command("list")
@_CONFIG
@_JSON
def list_deployments(config_path: str | None, as_json: bool) -> None:
    """Every deployment of every model: id, model, upstream, source (config|api), state, weight, tier, key.

    \b
    Example:
      modelway deployments list -c modelway.yaml --json
    """

    async def fetch(changes: RuntimeChanges) -> list[dict[str, Any]]:
        return [d.to_dict() for a in await changes.catalog() for d in a.deployments]

    found = _run(config_path, fetch)
    if as_json:
        click.echo(orjson.dumps(found).decode())
        return
    if not found:
        click.echo("no deployments: the config has no models and none were added", err=True)
        return
    rows = [["id", "model", "upstream", "source", "state", "weight", "tier", "key", "changed"]]
    for d in found:
        spec = d["spec"]
        key = spec.get("api_key") or (f"${spec['api_key_env']}" if spec.get("api_key_env") else "-")
        rows.append(
            [
                d["id"],
                d["model_name"],
                spec.get("model", "?"),
                d["source"],
                d["state"],
                f"{spec.get('weight', 1.0):g}",
                str(spec.get("tier", 0)),
                key,
                when(d["updated_at"]) if d["changed"] else "-",
            ]
        )
    table(rows)


def _deployment_options(f: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(
        [
            click.option("--model", "model", help="provider/model, e.g. openai/gpt-4o-mini."),
            click.option("--api-base", help="The upstream's base URL."),
            click.option("--api-key-env", help="An environment variable each gateway reads the key from."),
            click.option("--api-key", help="The key itself (stored as given; prefer --api-key-env)."),
            click.option("--weight", type=float, help="Share of traffic (weighted strategy)."),
            click.option("--timeout", type=float, help="Seconds per upstream request."),
            click.option("--tier", type=int, help="The priority strategy's tier (0 first)."),
            _SET,
            _JSON,
        ]
    ):
        f = option(f)
    return f


@deployments.command("add")
@_CONFIG
@click.option("--model-name", required=True, help="The model (alias) callers ask for; created if new.")
@_deployment_options
@click.option("--disabled", is_flag=True, help="Add it out of rotation.")
def add_deployment(
    config_path: str | None, model_name: str, sets: tuple[str, ...], as_json: bool, **given: Any
) -> None:
    """Add a deployment to a model, and print its id.

    \b
    Example:
      modelway deployments add -c modelway.yaml --model-name chat --model deepseek/deepseek-chat \\
          --api-key-env DEEPSEEK_API_KEY
    """
    if given.get("model") is None:
        raise click.UsageError("--model is required (provider/model)")
    if not given.pop("disabled"):
        given["disabled"] = None
    body = {"model_name": model_name, **_fields(sets, **given)}
    found = _run(config_path, lambda changes: changes.add_deployment(body))
    _show(found.to_dict(), as_json, found.id)


@deployments.command("update")
@_CONFIG
@click.argument("deployment_id")
@click.option("--model-name", help="Move an API deployment to another model.")
@_deployment_options
@click.option("--unset", multiple=True, metavar="FIELD", help="Back to the config's value or the default.")
def update_deployment(
    config_path: str | None,
    deployment_id: str,
    sets: tuple[str, ...],
    unset: tuple[str, ...],
    as_json: bool,
    **given: Any,
) -> None:
    """Change fields of DEPLOYMENT_ID (a configured one keeps the YAML's other fields).

    \b
    Example:
      modelway deployments update -c modelway.yaml dep_1a2b3c4d5e6f7a8b --weight 3 --set quota='{"rpm": 60}'
    """
    body: dict[str, Any] = {**_fields(sets, **given), **dict.fromkeys(unset)}
    found = _run(config_path, lambda changes: changes.update_deployment(deployment_id, body))
    _show(found.to_dict(), as_json, f"updated {found.id}")


def _action(name: str, doc: str) -> None:
    example = f"\n\n\b\nExample:\n  modelway deployments {name} -c modelway.yaml cfg_0a1b2c3d4e5f\n"

    @deployments.command(name, help=doc + example)
    @_CONFIG
    @click.argument("deployment_id")
    @_JSON
    def command(config_path: str | None, deployment_id: str, as_json: bool) -> None:
        async def work(changes: RuntimeChanges) -> dict[str, Any]:
            if name == "remove":
                return (await changes.remove_deployment(deployment_id)).to_dict()
            if name == "reset":
                return (await changes.reset_deployment(deployment_id)).to_dict()
            return (await changes.set_disabled(deployment_id, name == "disable")).to_dict()

        found = _run(config_path, work)
        _show(found, as_json, f"{name}d {deployment_id}" if name != "reset" else f"reset {deployment_id}")


_action("disable", "Take DEPLOYMENT_ID out of rotation (requests in flight finish).")
_action("enable", "Put DEPLOYMENT_ID back in rotation.")
_action("remove", "Remove DEPLOYMENT_ID (a configured one is hidden until `reset`).")
_action("reset", "Drop the changes of a configured DEPLOYMENT_ID: back to the YAML.")


@deployments.group("aliases")
def aliases() -> None:
    """The models callers ask for: list, add, update (system prompt, price, routing), remove, reset.

    \b
    Example:
      modelway deployments aliases list -c modelway.yaml
    """


@aliases.command("list")
@_CONFIG
@_JSON
def list_aliases(config_path: str | None, as_json: bool) -> None:
    """Every model: name, source, state, strategy, deployments.

    \b
    Example:
      modelway deployments aliases list -c modelway.yaml --json
    """

    async def fetch(changes: RuntimeChanges) -> list[dict[str, Any]]:
        return [a.to_dict() for a in await changes.catalog()]

    found = _run(config_path, fetch)
    if as_json:
        click.echo(orjson.dumps(found).decode())
        return
    rows = [["name", "source", "state", "strategy", "deployments", "changed"]]
    for a in found:
        live = sum(d["state"] != "removed" for d in a["deployments"])
        strategy = (a["spec"].get("routing") or {}).get("strategy", "weighted")
        changed = when(a["updated_at"]) if a["changed"] else "-"
        rows.append([a["name"], a["source"], a["state"], strategy, f"{live}/{len(a['deployments'])}", changed])
    table(rows)


@aliases.command("add")
@_CONFIG
@click.argument("name")
@_SET
@_JSON
def add_alias(config_path: str | None, name: str, sets: tuple[str, ...], as_json: bool) -> None:
    """Add the model NAME (fields: system_prompt, merge_system, description, price, routing).

    \b
    Example:
      modelway deployments aliases add -c modelway.yaml fast --set routing='{"strategy": "latency"}'
    """
    body = {"name": name, **_fields(sets)}
    found = _run(config_path, lambda changes: changes.add_alias(body))
    _show(found.to_dict(), as_json, f"added {name}")


@aliases.command("update")
@_CONFIG
@click.argument("name")
@_SET
@click.option("--unset", multiple=True, metavar="FIELD", help="Back to the config's value or the default.")
@_JSON
def update_alias(
    config_path: str | None, name: str, sets: tuple[str, ...], unset: tuple[str, ...], as_json: bool
) -> None:
    """Change the settings of the model NAME (routing is replaced as a whole).

    \b
    Example:
      modelway deployments aliases update -c modelway.yaml chat --set system_prompt='Answer briefly.'
    """
    body = {**_fields(sets), **dict.fromkeys(unset)}
    found = _run(config_path, lambda changes: changes.update_alias(name, body))
    _show(found.to_dict(), as_json, f"updated {name}")


@aliases.command("remove")
@_CONFIG
@click.argument("name")
@_JSON
def remove_alias(config_path: str | None, name: str, as_json: bool) -> None:
    """Remove the model NAME with its deployments (`aliases reset` or `aliases add` brings it back).

    \b
    Example:
      modelway deployments aliases remove -c modelway.yaml legacy-no-system
    """
    found = _run(config_path, lambda changes: changes.remove_alias(name))
    _show(found.to_dict(), as_json, f"removed {name}")


@aliases.command("reset")
@_CONFIG
@click.argument("name")
@_JSON
def reset_alias(config_path: str | None, name: str, as_json: bool) -> None:
    """Drop the changes of the model NAME's settings (and its removal).

    \b
    Example:
      modelway deployments aliases reset -c modelway.yaml chat
    """
    found = _run(config_path, lambda changes: changes.reset_alias(name))
    _show(found.to_dict(), as_json, f"reset {name}")
