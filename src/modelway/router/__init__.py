"""Routing: model groups over deployments, weighted choice, retries, failover and cooldowns."""

from __future__ import annotations

from .deployments import Deployment, ModelGroup, merge_system_messages
from .router import Router, Trace

__all__ = ["Deployment", "ModelGroup", "Router", "Trace", "merge_system_messages"]
