"""The SQL store's key, usage and usage-body tables as SQLAlchemy Core sees them: the types values are bound and
read as (the DDL is in :mod:`.migrations`; the usage aggregates are in :mod:`.rollups`)."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Double, Integer, MetaData, String, Table

__all__ = ["keys", "usage", "usage_bodies"]

_meta = MetaData()
keys = Table(
    "mw_keys",
    _meta,
    Column("id", String, primary_key=True),
    Column("name", String),
    Column("key_hash", String),
    Column("prefix", String),
    Column("models", String),
    Column("rpm", Integer),
    Column("tpm", Integer),
    Column("max_parallel", Integer),
    Column("budget", Double),
    Column("budget_period", String),
    Column("created_at", Double),
    Column("expires_at", Double),
    Column("revoked_at", Double),
    Column("metadata", String),
)
usage = Table(
    "mw_usage",
    _meta,
    Column("id", Integer, primary_key=True),
    Column("ts", Double),
    Column("request_id", String),
    Column("key_id", String),
    Column("model", String),
    Column("deployment", String),
    Column("endpoint", String),
    Column("stream", Boolean),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("total_tokens", Integer),
    Column("cost", Double),
    Column("status", Integer),
    Column("error", String),
    Column("latency_ms", Double),
    Column("ttft_ms", Double),
    Column("estimated", Boolean),
    Column("record_id", String),
    Column("attempts", Integer),
    Column("fallback", String),
)
#: the bodies of the records that have them (``request_log.bodies``), one row per record, deleted with it
usage_bodies = Table(
    "mw_usage_bodies",
    _meta,
    Column("record_id", String, primary_key=True),
    Column("ts", Double),
    Column("request_body", String),
    Column("response_body", String),
)
