"""How the store failed: it refused the data, or it could not be reached. SQLAlchemy is imported on first use (a
store needs it; importing :mod:`modelway.usage` must not)."""

from __future__ import annotations

__all__ = ["refused", "unreachable"]


def refused(exc: BaseException) -> bool:
    """The database refused the data (an invalid value, a constraint), as opposed to being unreachable or down."""
    from sqlalchemy import exc as sa

    return isinstance(exc, sa.DataError | sa.IntegrityError)


def unreachable(exc: BaseException) -> bool:
    """The database could not be reached or failed to answer: a lost or refused connection, a timeout, a locked
    database (not a refusal of the data, and not a bug of ours such as a query it does not understand)."""
    from sqlalchemy import exc as sa

    return isinstance(exc, sa.OperationalError | sa.InterfaceError | sa.TimeoutError | sa.DisconnectionError | OSError)
