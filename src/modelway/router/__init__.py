"""Routing: model groups over deployments, selection strategies, one failover loop with retries that understand
errors, fallbacks, circuit breakers, per-deployment quotas and hedged requests."""

from __future__ import annotations

from .circuit import CircuitBreaker, CircuitState
from .deployments import Deployment, ModelGroup
from .messages import merge_system_messages, prepare_messages
from .policy import CircuitSettings, HedgeSettings, Quota, RoutingPolicy
from .quotas import DeploymentsBusyError
from .router import Router, Trace
from .strategies import STRATEGIES, Outcome, Strategy, register_strategy

__all__ = [
    "STRATEGIES",
    "CircuitBreaker",
    "CircuitSettings",
    "CircuitState",
    "Deployment",
    "DeploymentsBusyError",
    "HedgeSettings",
    "ModelGroup",
    "Outcome",
    "Quota",
    "Router",
    "RoutingPolicy",
    "Strategy",
    "Trace",
    "merge_system_messages",
    "prepare_messages",
    "register_strategy",
]
