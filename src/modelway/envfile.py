"""An environment variable, or the file its ``VAR_FILE`` twin names: secrets mounted as files (Docker and Kubernetes
secrets), the convention of the official Docker images (``POSTGRES_PASSWORD_FILE``).

``ZHIPUAI_API_KEY_FILE=/run/secrets/zhipu`` gives ``ZHIPUAI_API_KEY`` the file's text, its trailing line break
removed. Setting both is an error; an empty variable counts as unset (compose's ``${VAR:-}`` makes empty ones). What
a file holds never appears in an error: the errors name the variable and the path.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import ConfigError

__all__ = ["FILE_SUFFIX", "MAX_FILE_BYTES", "EnvReader", "env_source", "env_value", "read_env_file"]

FILE_SUFFIX = "_FILE"
#: the largest file a variable may name (a secret, or a YAML document of models): a mistaken /dev/zero must not hang
MAX_FILE_BYTES = 1024 * 1024


def read_env_file(var: str, path: str) -> str:
    """The text of the file ``var`` names, without its trailing line breaks; a :class:`ConfigError` naming both when
    it cannot be read."""
    if not path:
        raise ConfigError(f"{var}: names no file (it is empty)")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{var}: cannot read {path!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{var}: {path!r} is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{var}: {path!r} is not UTF-8 text") from None
    return text.rstrip("\r\n")


def env_value(env: Mapping[str, str], name: str) -> str | None:
    """``name``'s value, else the text of the file ``name_FILE`` names, else ``None``."""
    value, path = env.get(name), env.get(name + FILE_SUFFIX)
    if not path:
        return value
    if value:
        raise ConfigError(f"{name} and {name}{FILE_SUFFIX} are both set: set one of them")
    return read_env_file(name + FILE_SUFFIX, path)


def env_source(env: Mapping[str, str], name: str) -> str | None:
    """The variable that gives ``name`` a value (``name``, or ``name_FILE``), without reading the file."""
    if env.get(name + FILE_SUFFIX):
        return name + FILE_SUFFIX
    return name if env.get(name) else None


class EnvReader:
    """The variables of one environment, read with :func:`env_value`, remembering what came from files (secrets), so
    that an error can be cleared of them (:meth:`redact`)."""

    __slots__ = ("env", "secrets")

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.secrets: set[str] = set()

    def get(self, name: str) -> str | None:
        value = env_value(self.env, name)
        if value and self.env.get(name + FILE_SUFFIX):
            self.secrets.add(value)
        return value

    def read_file(self, var: str, path: str) -> str:
        """The file ``var`` names (:func:`read_env_file`), remembered as a secret."""
        value = read_env_file(var, path)
        if value:
            self.secrets.add(value)
        return value

    def redact(self, message: str, also: set[str] | frozenset[str] = frozenset()) -> str:
        """``message`` without any secret read through this reader, nor any of ``also``: a quoted one anywhere, an
        unquoted one of 6 characters or more (shorter ones would take words of the message with them)."""
        for secret in sorted(self.secrets | also, key=len, reverse=True):
            message = message.replace(repr(secret), "'<hidden>'")
            if len(secret) >= 6:
                message = message.replace(secret, "<hidden>")
        return message
