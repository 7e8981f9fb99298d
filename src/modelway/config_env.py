"""Settings from ``MODELWAY_*`` environment variables, over the config file: what containers are configured with.

```
MODELWAY_CONFIG=/etc/modelway/modelway.yaml      the config file, when -c is not given
MODELWAY_SERVER__PORT=8080                       one setting: MODELWAY_<SECTION>__<FIELD> (two underscores)
MODELWAY_SERVER__CORS_ORIGINS=https://a.example,https://b.example     a list: commas, or ["...", "..."]
MODELWAY_ROUTING__CIRCUIT={failures: 3}          a mapping: YAML or JSON
MODELWAY_STORE__URL_FILE=/run/secrets/db-url     any of them from a file (a mounted secret): <VARIABLE>_FILE
MODELWAY_MODELS_FILE=/etc/modelway/models.yaml   a whole section as a YAML or JSON document: MODELWAY_<SECTION>
```

A variable wins over the file: a whole section replaces the file's, a field replaces the file's field (and the
section's variable's). Values are read as YAML (``true``, ``8080``, ``1.5``, ``null``) except for text settings
(URLs, keys, paths: taken as written), lists (comma-separated, unless they start with ``[``) and the values of
mappings of text (``tracing.headers``: ``{x-api-key: 0123}`` keeps ``0123``). They are then
checked by the same code as the file, and an error names both: ``MODELWAY_SERVER__PORT (server.port): must be a
positive integer``. A name under ``MODELWAY_`` that looks like a setting but is none (``MODELWAY_SERVER__PROT``,
``MODELWAY_SERVER_PORT``) is an error, so a typo is never ignored; the project's other ``MODELWAY_*`` variables
(:data:`OTHER_USES`) and the names the config file refers to as ``${NAME}`` are left alone.

This module knows no section itself: :mod:`modelway.config` passes them (:data:`Sections`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterator, Mapping
from typing import Any, Literal

import yaml

from .envfile import FILE_SUFFIX, EnvReader
from .errors import ConfigError

__all__ = ["OTHER_USES", "PREFIX", "EnvOverrides", "Kind", "Override", "Sections", "kinds_of", "read_overrides"]

PREFIX = "MODELWAY_"
SEPARATOR = "__"
#: MODELWAY_* variables the project reads for other things than settings: never taken for settings, nor refused
OTHER_USES = frozenset(
    {
        "MODELWAY_CONFIG",  # the config file (modelway serve, check, worker, keys, usage, deployments)
        "MODELWAY_DEMO",  # set by modelway serve for its workers (--demo)
        "MODELWAY_METRICS_DIR",  # the multiprocess metrics directory of --workers N
        "MODELWAY_HTTP",  # the server protocol, over server.http (benchmarks)
        "MODELWAY_TRANSPORT",  # the upstream HTTP client backend
        "MODELWAY_API_KEY",  # the library's and the CLI's key for a gateway
        "MODELWAY_BASE_URL",  # modelway chat/models --base-url
        "MODELWAY_MODEL",  # modelway chat -m
        "MODELWAY_WORKER_KEY",  # modelway worker --key
        # named as ${...} by the configs of deploy/, modelway.example.yaml and the README (and compose's host port)
        *("MODELWAY_MASTER_KEY", "MODELWAY_DB", "MODELWAY_DB_URL", "MODELWAY_REDIS_URL", "MODELWAY_PG_PASSWORD"),
        *("MODELWAY_CLUSTER_SECRET", "MODELWAY_PORT"),
    }
)
# (the test suite's and the benchmarks' MODELWAY_TEST_*, MODELWAY_BENCH_*, MODELWAY_AGENTS, ... look like no setting)

#: how a setting's text is read: as written (``str``), a list (``list``), a YAML or JSON mapping whose values are
#: text as written (``texts``: headers, not YAML's octal 0123 or boolean on), or YAML (``yaml``: numbers, booleans)
Kind = Literal["str", "list", "texts", "yaml"]
#: section name → its fields and their kinds; ``None``: a section given only whole (``models``, ``providers``, ...)
Sections = Mapping[str, Mapping[str, Kind] | None]


def kinds_of(cls: type[Any]) -> dict[str, Kind]:
    """The fields of a settings dataclass and how each is read from a variable (from their annotations)."""
    kinds: dict[str, Kind] = {}
    for f in dataclasses.fields(cls):
        annotation = str(f.type).replace(" ", "")
        if annotation in ("str", "str|None", "None|str"):
            kinds[f.name] = "str"
        elif annotation.startswith("list["):
            kinds[f.name] = "list"
        elif annotation == "dict[str,str]":
            kinds[f.name] = "texts"
        else:
            kinds[f.name] = "yaml"
    return kinds


@dataclasses.dataclass(slots=True, frozen=True)
class Override:
    """One setting a variable gives: ``path`` is ``("server", "port")``, or ``("models",)`` for a whole section."""

    var: str
    path: tuple[str, ...]
    value: Any
    #: the value may be a secret (text taken as written, a whole section, a file): errors never show it
    secret: bool = True

    @property
    def where(self) -> str:
        return ".".join(self.path)

    def covers(self, field: str) -> bool:
        """Whether ``field`` (``models[1].name``) is this setting or inside it."""
        return field == self.where or field.startswith((f"{self.where}.", f"{self.where}["))


class EnvOverrides:
    """The settings the environment gives, laid over a config document (:meth:`apply`)."""

    def __init__(self, items: list[Override]) -> None:
        # whole sections first, so that a field's variable wins over its section's
        self.items = sorted(items, key=lambda o: (len(o.path), o.path))

    @property
    def sources(self) -> dict[str, str]:
        """Each setting the environment gave → the variable it came from."""
        return {o.where: o.var for o in self.items}

    def without(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``doc`` without what the variables replace (so its ``${VAR}`` references there need not be set)."""
        out = dict(doc)
        for o in self.items:
            section = out.get(o.path[0])
            if len(o.path) == 1:
                out.pop(o.path[0], None)
            elif isinstance(section, dict) and o.path[1] in section:
                out[o.path[0]] = {k: v for k, v in section.items() if k != o.path[1]}
        return out

    def apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``doc`` with the variables' settings written over it."""
        out = dict(doc)
        for o in self.items:
            if len(o.path) == 1:
                out[o.path[0]] = o.value
                continue
            section = out.get(o.path[0])
            if section is None:
                section = {}
            if isinstance(section, dict):  # else the file's own error (not a mapping) is reported
                out[o.path[0]] = {**section, o.path[1]: o.value}
        return out

    def explain(self, exc: ConfigError, reader: EnvReader) -> ConfigError:
        """``exc`` naming the variable that gave the setting it is about (``MODELWAY_SERVER__PORT (server.port):
        ...``), and cleared of the values of variables and files."""
        message = exc.message
        head, sep, rest = message.partition(": ")
        field = head.removeprefix("config.")
        about = [o for o in self.items if sep and o.covers(field)]
        best = max(about, key=lambda o: len(o.where), default=None)
        if best is not None:
            message = f"{best.var} ({field}): {rest}"
        return ConfigError(reader.redact(message, frozenset(self._texts())))

    def _texts(self) -> Iterator[str]:
        """Every text of the variables that may hold secrets."""
        stack = [o.value for o in self.items if o.secret]
        while stack:
            v = stack.pop()
            if isinstance(v, str) and v:
                yield v
            elif isinstance(v, dict):
                stack.extend(v.values())
            elif isinstance(v, list):
                stack.extend(v)


def read_overrides(reader: EnvReader, sections: Sections, *, referenced: Collection[str] = ()) -> EnvOverrides:
    """The settings of the ``MODELWAY_*`` variables of ``reader``'s environment. A :class:`ConfigError` for a name
    that looks like a setting but is none, a value that is not YAML, a variable set together with its ``_FILE``
    twin, or a file that cannot be read. ``referenced``: the names the config file uses as ``${NAME}``."""
    targets: dict[tuple[str, ...], str] = {}  # path → the variable (without _FILE)
    for name in sorted(reader.env):
        if not name.startswith(PREFIX) or name in OTHER_USES:
            continue
        if name in referenced or name.removesuffix(FILE_SUFFIX) in referenced:
            continue
        base, path = name, _target(name, sections)
        if path is None and name.endswith(FILE_SUFFIX):
            base = name.removesuffix(FILE_SUFFIX)
            path = _target(base, sections)
        if path is None:
            _refuse(name, sections)
            continue
        if targets.get(path, base) != base:
            raise ConfigError(f"{targets[path]} and {base} both set {'.'.join(path)}: set one of them")
        targets[path] = base
    items = []
    for path, var in targets.items():
        text = reader.get(var)  # VAR, or the file VAR_FILE names (both: an error)
        if text is None:
            continue
        source = var + FILE_SUFFIX if reader.env.get(var + FILE_SUFFIX) else var
        section = sections[path[0]]
        kind: Kind = "yaml" if len(path) == 1 or section is None else section[path[1]]
        secret = kind in ("str", "texts") or source.endswith(FILE_SUFFIX) or len(path) == 1
        items.append(Override(source, path, _value(text, kind, source, ".".join(path)), secret))
    return EnvOverrides(items)


def _target(name: str, sections: Sections) -> tuple[str, ...] | None:
    """The setting ``name`` gives (``MODELWAY_SERVER__PORT`` → ``("server", "port")``), else ``None``."""
    parts = name.removeprefix(PREFIX).lower().split(SEPARATOR)
    if parts[0] not in sections:
        return None
    if len(parts) == 1:
        return (parts[0],)
    fields = sections[parts[0]]
    if len(parts) == 2 and fields is not None and parts[1] in fields:
        return (parts[0], parts[1])
    return None


def _refuse(name: str, sections: Sections) -> None:
    """Raise when ``name`` looks like a setting (a known section's name begins it, or it has ``__``)."""
    rest = name.removeprefix(PREFIX).removesuffix(FILE_SUFFIX).lower()
    known = ", ".join(sorted(sections))
    if SEPARATOR in rest:
        section, _, field = rest.partition(SEPARATOR)
        fields = sections.get(section, ...)
        if fields is ...:
            raise ConfigError(f"{name}: no settings section {section!r} (sections: {known})")
        if fields is None:
            raise ConfigError(
                f"{name}: {section} is given whole, as a YAML or JSON document: {PREFIX}{section.upper()} "
                f"(or {PREFIX}{section.upper()}{FILE_SUFFIX} naming a file)"
            )
        raise ConfigError(f"{name}: {section} has no setting {field!r} (its settings: {', '.join(sorted(fields))})")
    for section in sorted(sections, key=len, reverse=True):
        if rest.startswith(section + "_"):
            field = rest[len(section) + 1 :]
            hint = f"{PREFIX}{section.upper()}{SEPARATOR}{field.upper()}"
            fields = sections[section]
            if fields is not None and field in fields:
                raise ConfigError(f"{name}: not a setting; {hint} is (two underscores between section and field)")
            raise ConfigError(
                f"{name}: looks like a setting of {section} but is none (settings are {PREFIX}<SECTION>__<FIELD>; "
                f"a variable of your own under {PREFIX} must not begin with a section's name unless the config file "
                "uses it as ${...})"
            )


def _value(text: str, kind: Kind, var: str, where: str) -> Any:
    if kind == "str":
        return text
    if kind == "list" and not text.lstrip().startswith("["):
        return [item.strip() for item in text.split(",") if item.strip()]
    try:
        return yaml.load(text, Loader=yaml.BaseLoader) if kind == "texts" else yaml.safe_load(text)
    except yaml.YAMLError as exc:  # its message quotes the text: only the position and the problem are said
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ConfigError(f"{var} ({where}): not valid YAML{at}: {problem}") from None
