"""The ``routing:`` config: parsed into each model's RoutingPolicy (top-level defaults, overridden per model), the
deployments' tier, quota and disabled; mistakes name the field."""

from __future__ import annotations

from typing import Any

import pytest

from modelway.config import parse_config
from modelway.errors import ConfigError
from modelway.router.policy import CircuitSettings, HedgeSettings, Quota, RoutingPolicy


def cfg(models: list[dict[str, Any]], **top: Any) -> Any:
    return parse_config({"models": models, **top}, env={})


def test_defaults_then_a_models_own_keys() -> None:
    c = cfg(
        [
            {"name": "a", "deployments": ["openai/x"], "routing": {"fallbacks": ["b"], "circuit": None}},
            {"name": "b", "deployments": ["openai/y"]},
        ],
        routing={"strategy": "least_busy", "circuit": True, "max_attempts": 3, "timeout": 30},
    )
    a, b = c.models[0].routing, c.models[1].routing
    assert a == RoutingPolicy(strategy="least_busy", max_attempts=3, timeout=30.0, fallbacks=("b",))
    assert b == RoutingPolicy(strategy="least_busy", max_attempts=3, timeout=30.0, circuit=CircuitSettings())


def test_no_routing_is_the_policy_defaults() -> None:
    assert cfg([{"name": "a", "deployments": ["openai/x"]}]).models[0].routing is None


def test_circuit_and_hedge_settings() -> None:
    r = (
        cfg(
            [
                {
                    "name": "a",
                    "deployments": ["openai/x"],
                    "routing": {"circuit": {"failures": 2, "cooldown": 5}, "hedge": 1.5},
                }
            ]
        )
        .models[0]
        .routing
    )
    assert r is not None and r.circuit == CircuitSettings(failures=2, cooldown=5) and r.hedge == HedgeSettings(1.5)


def test_deployment_tier_quota_disabled() -> None:
    dep = (
        cfg(
            [
                {
                    "name": "a",
                    "deployments": [
                        {"model": "openai/x", "tier": 1, "quota": {"max_concurrent": 4, "rpm": 60}, "disabled": True}
                    ],
                }
            ]
        )
        .models[0]
        .deployments[0]
    )
    assert (dep.tier, dep.quota, dep.disabled) == (1, Quota(max_concurrent=4, rpm=60), True)


@pytest.mark.parametrize(
    ("routing", "where"),
    [
        ({"strategy": "fastest"}, "models[0].routing.strategy"),
        ({"max_attempts": 0}, "models[0].routing.max_attempts"),
        ({"timeout": -1}, "models[0].routing.timeout"),
        ({"fallbacks": ["nope"]}, "models[0].routing.fallbacks"),
        ({"fallbacks": ["a"]}, "models[0].routing.fallbacks"),
        ({"circuit": {"failures": 0}}, "models[0].routing.circuit"),
        ({"circuit": {"speed": 1}}, "models[0].routing.circuit.speed"),
        ({"hedge": "p99"}, "models[0].routing.hedge"),
        ({"retries": 3}, "models[0].routing.retries"),
    ],
)
def test_mistakes_name_the_field(routing: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg([{"name": "a", "deployments": ["openai/x"], "routing": routing}])
    assert str(info.value).startswith(where), str(info.value)


@pytest.mark.parametrize(
    ("dep", "where"),
    [
        ({"model": "openai/x", "tier": -1}, "models[0].deployments[0].tier"),
        ({"model": "openai/x", "quota": {"rpm": 0}}, "models[0].deployments[0].quota.rpm"),
        ({"model": "openai/x", "quota": {"qps": 3}}, "models[0].deployments[0].quota.qps"),
        ({"model": "openai/x", "disabled": "yes"}, "models[0].deployments[0].disabled"),
    ],
)
def test_deployment_mistakes_name_the_field(dep: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg([{"name": "a", "deployments": [dep]}])
    assert str(info.value).startswith(where), str(info.value)


@pytest.mark.parametrize(
    ("routing", "where", "field"),
    [
        ({"timeout": float("inf")}, "models[0].routing.timeout", "timeout"),
        ({"timeout": float("nan")}, "models[0].routing.timeout", "timeout"),
        ({"queue_wait": float("inf")}, "models[0].routing.queue_wait", "queue_wait"),
        ({"queue_wait": float("nan")}, "models[0].routing.queue_wait", "queue_wait"),
        ({"circuit": {"cooldown": 60, "max_cooldown": 30}}, "models[0].routing.circuit", "max_cooldown"),
        ({"circuit": {"window": float("nan")}}, "models[0].routing.circuit", "window"),
        ({"hedge": {"after": float("inf")}}, "models[0].routing.hedge", "after"),
    ],
)
def test_non_finite_durations_and_a_max_cooldown_below_the_cooldown_are_refused(
    routing: dict[str, Any], where: str, field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        cfg([{"name": "a", "deployments": ["openai/x"], "routing": routing}])
    message = str(info.value)
    assert message.startswith(where) and field in message, message


@pytest.mark.parametrize(
    "make",
    [
        lambda: RoutingPolicy(timeout=float("inf")),
        lambda: RoutingPolicy(timeout=float("nan")),
        lambda: RoutingPolicy(queue_wait=float("inf")),
        lambda: RoutingPolicy(queue_wait=float("nan")),
        lambda: CircuitSettings(cooldown=60, max_cooldown=30),
        lambda: CircuitSettings(account_cooldown=float("inf")),
        lambda: HedgeSettings(after="p95", default=float("nan")),
    ],
)
def test_the_policy_refuses_what_the_config_would(make: Any) -> None:
    with pytest.raises(ValueError):
        make()
