"""Demo models in the gateway: ``serve --demo`` (an alias per model of the catalog) and configs whose deployments
are demo models (``model: demo/glm-4-flash``, with fault options to watch failover). Every demo model is named
``demo/...`` and answers from a local simulator of :mod:`modelway.testing`, never from the real provider; the
simulators start in the gateway's own event loop, before its deployments are built (see
:mod:`modelway.testing.demo`).
"""

from __future__ import annotations

from typing import Any

from ..config import Config, DeploymentConfig, ModelConfig, Price
from ..testing.demo import DEMO_MODELS, DEMO_PROVIDER, DemoFleet
from .app import GatewayApp

__all__ = ["DEMO_MODELS", "add_demo", "uses_demo"]


def _demo_deployments(config: Config) -> list[tuple[str, dict[str, Any]]]:
    prefix = DEMO_PROVIDER + "/"
    return [(d.model, d.options) for m in config.models for d in m.deployments if d.model.startswith(prefix)]


def uses_demo(config: Config) -> bool:
    """Whether a deployment of ``config`` is a demo model."""
    return bool(_demo_deployments(config))


def add_demo(config: Config, *, env: dict[str, str] | None = None, catalog: bool = True) -> GatewayApp:
    """A gateway app whose start-up also starts the simulators its demo deployments need (in the server's own event
    loop); ``catalog`` adds an alias per demo model (``serve --demo``)."""
    fleet = DemoFleet()

    async def start(app: GatewayApp) -> None:
        if catalog:
            for name, model in DEMO_MODELS.items():
                if any(m.name == name for m in app.config.models):
                    continue
                app.config.models.append(
                    ModelConfig(
                        name=name,
                        deployments=[DeploymentConfig(model=name)],
                        description=f"simulated {model.provider} (modelway.testing.{model.simulator}), not the real "
                        "service",
                        # a simulator costs nothing: priced at zero, so keys with a budget may call it too
                        price=Price(0.0, 0.0),
                    )
                )
        await fleet.astart(_demo_deployments(app.config))
        app.demo = fleet

    async def stop(app: GatewayApp) -> None:
        await fleet.astop()

    return GatewayApp(config, env=env, on_startup=[start], on_shutdown=[stop])
