"""``modelway config``: the configuration as ``modelway serve`` would run with it (the YAML file, then the
``MODELWAY_*`` variables over it: :mod:`modelway.config_env`), checked and printed with its secrets hidden."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from typing import Any

import click
import yaml

from .errors import ModelwayError

__all__ = ["config", "redacted"]

REDACTED = "<redacted>"
#: settings whose values are secrets (``master_key``, ``api_key``, a header's value, ...)
_SECRET_KEY = re.compile(r"(^|_)(key|secret|password|token|credentials?)$|^(authorization|path_prefix)$", re.I)
#: the password of a URL's user part (``postgresql://user:password@host/db``)
_URL_PASSWORD = re.compile(r"(?<=://)([^/@:\s]*):[^/@\s]+@")
#: a password given as a URL's query option (redis-py's ``password``, ``sentinel_password``, ``ssl_password``;
#: libpq's ``password``, ``sslpassword``)
_QUERY_PASSWORD = re.compile(r"(?<=[?&])([a-z_]*password=)[^&#\s]*", re.I)


def redacted(value: Any, key: str = "") -> Any:
    """Plain data (dataclasses as mappings) with secrets replaced by ``<redacted>``: values of secret-looking keys,
    every header's value, and the passwords in URLs (in the user part or as a query option)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        if key == "headers":
            return {str(k): REDACTED for k in value}
        return {str(k): redacted(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redacted(v, key) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool) and _SECRET_KEY.search(key):
        return REDACTED  # a key YAML read as a number (api_key: 123456789)
    if isinstance(value, str):
        if value and _SECRET_KEY.search(key):
            return REDACTED
        value = _URL_PASSWORD.sub(rf"\1:{REDACTED}@", value)
        return _QUERY_PASSWORD.sub(rf"\1{REDACTED}", value)
    return value


@click.command("config")
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="MODELWAY_CONFIG",
    help="YAML config file, as for `modelway serve` (env MODELWAY_CONFIG). Without one: the embedded defaults "
    "and the environment's settings.",
)
@click.option("--json", "as_json", is_flag=True, help='Print JSON: {"environment": ..., "config": ...}.')
def config(config_path: str | None, as_json: bool) -> None:
    """Check the configuration and print it as `modelway serve` would run with it: the YAML file (-c, or
    MODELWAY_CONFIG), then the MODELWAY_* variables over it, every default filled in. The settings the environment
    gave are listed first. Secrets (keys, headers, passwords in URLs) are shown as <redacted>. Exit status 2 when
    the configuration is invalid: the error names the field, and the variable when one gave it.

    \b
    Every setting can come from a variable, MODELWAY_<SECTION>__<FIELD> (two underscores), over the file:
      MODELWAY_SERVER__PORT=8080                   read as YAML: 8080, true, 1.5, [a, b], {k: v}
      MODELWAY_SERVER__CORS_ORIGINS=https://a.example,https://b.example      lists: commas (or [...])
      MODELWAY_STORE__URL=postgresql://...         text settings (URLs, keys, paths): as written
      MODELWAY_MODELS_FILE=/etc/modelway/models.yaml    a whole section (models, providers, prices, ...)
      MODELWAY_SERVER__MASTER_KEY_FILE=/run/secrets/master-key    any variable from a file: <VARIABLE>_FILE
    ${VAR} in the YAML reads the file VAR_FILE names when VAR is not set; so do the providers' key variables
    (ZHIPUAI_API_KEY_FILE, ...). A MODELWAY_ name that looks like a setting but is none is an error.

    \b
    Examples:
      modelway config -c modelway.yaml
      MODELWAY_SERVER__PORT=8080 MODELWAY_USAGE__RETENTION_DAYS=30 modelway config -c modelway.yaml
      modelway config --json | jq .environment
    """
    from .config import load_config_explained

    try:
        cfg, sources = load_config_explained(config_path)
    except ModelwayError as exc:
        click.secho(f"error: invalid configuration: {exc}", fg="red", err=True)
        sys.exit(2)
    settings = redacted(cfg)
    if as_json:
        click.echo(json.dumps({"environment": sources, "config": settings}, indent=2, default=str))
        return
    where = f"# {config_path}" if config_path else "# no config file: the embedded defaults"
    lines = [where + (", with the environment's settings:" if sources else "")]
    lines += [f"#   {field}: {var}" for field, var in sources.items()]
    click.echo("\n".join(lines))
    click.echo(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True, default_flow_style=False), nl=False)
