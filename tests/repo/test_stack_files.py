"""The Docker Compose stack in ``examples/stack/``, validated as files (no Docker engine in CI).

The stack itself is not run here. What is checked: every file parses, every file a service mounts or
builds from exists, every endpoint names a service of the compose file on the port that service
listens on, the Collector's pipelines use only components it defines, Grafana gets the dashboards'
provisioning, and the tail-sampling policy reads the registry's attribute names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from opentelemetry.instrumentation.corevital import semconv as sc

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "examples" / "stack"
COMPOSE = STACK / "docker-compose.yaml"
PROVISIONING = ROOT / "dashboards" / "provisioning"
# Ports the images listen on by default (no config file of ours sets them).
PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3000
JAEGER_OTLP_GRPC_PORT = 4317
JAEGER_UI_PORT = 16686


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"])


@pytest.fixture(scope="module")
def collector(services: dict[str, Any]) -> dict[str, Any]:
    return load(mounted_file(services["otel-collector"], "/etc/otelcol-contrib/config.yaml"))


@pytest.fixture(scope="module")
def tempo(services: dict[str, Any]) -> dict[str, Any]:
    return load(mounted_file(services["tempo"], "/etc/tempo.yaml"))


def volumes(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (relative to the compose file)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        mounts[target] = (STACK / source).resolve()
    return mounts


def mounted_file(service: dict[str, Any], container_path: str) -> Path:
    return volumes(service)[container_path]


def flag_value(command: list[str], flag: str) -> str:
    for argument in command:
        if argument.startswith(flag + "="):
            return argument.split("=", 1)[1]
    raise AssertionError(f"{flag} not in {command}")


def container_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(port).split("#")[0].split(":")[-1]) for port in service.get("ports", [])}


def endpoint(text: str) -> tuple[str, int]:
    parts = urlsplit(text if "://" in text else f"//{text}")
    assert parts.hostname and parts.port, text
    return parts.hostname, parts.port


def test_every_file_parses() -> None:
    files = [*STACK.glob("*.yaml"), *PROVISIONING.rglob("*.yaml")]
    assert len(files) >= 6
    for path in files:
        assert isinstance(load(path), dict), path


def test_images_are_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if "image" in service:
            image, _, tag = service["image"].rpartition(":")
            assert image and tag and tag != "latest", (name, service["image"])
            assert re.match(r"v?\d+\.\d+\.\d+", tag), (name, service["image"])  # a release, not a series


def test_the_app_image_pins_python_and_every_package() -> None:
    dockerfile = (STACK / "app.Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.M)
    assert base and re.match(r"python:\d+\.\d+\.\d+-", base.group(1)), base
    lines = dockerfile.replace("\\\n", " ")  # join continued lines
    installs = " ".join(re.findall(r"pip install ([^\n]*)", lines))
    requirements = re.findall(r'"([A-Za-z0-9_.-]+[^"]*)"', installs)
    assert len(requirements) >= 7 and all("==" in r for r in requirements), requirements


def test_jaeger_listens_beyond_localhost(services: dict[str, Any]) -> None:
    """Jaeger >= 2.8 binds its OTLP receivers to localhost unless JAEGER_LISTEN_HOST says otherwise;
    the Collector reaches it over the compose network."""
    assert services["jaeger"]["environment"]["JAEGER_LISTEN_HOST"] == "0.0.0.0"


def test_prometheus_loads_the_alerting_rules(services: dict[str, Any]) -> None:
    mounts = volumes(services["prometheus"])
    config = load(mounts["/etc/prometheus/prometheus.yaml"])
    (pattern,) = config["rule_files"]
    directory, _, glob = pattern.rpartition("/")
    assert mounts[directory] == ROOT / "dashboards" / "rules"
    assert sorted(p.name for p in (ROOT / "dashboards" / "rules").glob(glob)) == ["corevital-alerts.yaml"]


def test_every_mounted_and_built_file_exists(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for target, source in volumes(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
        for dependency in service.get("depends_on", []):
            assert dependency in services, (name, dependency)
    build = services["app"]["build"]
    context = (STACK / build["context"]).resolve()
    dockerfile = context / build["dockerfile"]
    assert context == ROOT and dockerfile.exists()
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (context / source).exists(), line
    app_command = " ".join(services["app"]["command"])
    script = re.search(r"python (\S+\.py)", app_command)
    assert script and (ROOT / script.group(1)).exists()


def test_the_app_sends_otlp_to_the_collector(services: dict[str, Any], collector: dict[str, Any]) -> None:
    environment = services["app"]["environment"]
    assert "opentelemetry-instrument" in " ".join(services["app"]["command"])
    host, port = endpoint(environment["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert host == "otel-collector"
    assert environment["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    http_receiver = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert endpoint(http_receiver)[1] == port
    assert port in container_ports(services["otel-collector"])
    for signal in ("TRACES", "METRICS"):
        assert environment[f"OTEL_{signal}_EXPORTER"] == "otlp"


def test_collector_exporters_reach_services_on_their_ports(
    services: dict[str, Any], collector: dict[str, Any], tempo: dict[str, Any]
) -> None:
    exporters = collector["exporters"]
    host, port = endpoint(exporters["otlp/tempo"]["endpoint"])
    tempo_grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert (host, port) == ("tempo", endpoint(tempo_grpc)[1])
    assert endpoint(exporters["otlp/jaeger"]["endpoint"]) == ("jaeger", JAEGER_OTLP_GRPC_PORT)
    prometheus_url = exporters["otlphttp/prometheus"]["endpoint"]
    assert endpoint(prometheus_url) == ("prometheus", PROMETHEUS_PORT)
    assert urlsplit(prometheus_url).path == "/api/v1/otlp"
    command = services["prometheus"]["command"]
    assert "--web.enable-otlp-receiver" in command
    assert "--enable-feature=exemplar-storage" in command
    for exporter in exporters.values():
        if "endpoint" in exporter:
            assert endpoint(exporter["endpoint"])[0] in services


def test_collector_pipelines_use_only_defined_components(collector: dict[str, Any]) -> None:
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in collector["service"]["pipelines"].items():
        for kind in used:
            for component in pipeline.get(kind, []):
                assert component in collector[kind], (
                    f"pipeline {name}: {kind[:-1]} {component} is not defined"
                )
                used[kind].add(component)
    for kind, names in used.items():
        assert set(collector[kind]) == names, f"defined but unused {kind}: {set(collector[kind]) - names}"
    assert {"traces", "metrics"} <= set(collector["service"]["pipelines"])


def test_tail_sampling_keeps_risky_and_failed_generations(collector: dict[str, Any]) -> None:
    policies = {p["name"]: p for p in collector["processors"]["tail_sampling"]["policies"]}
    conditions = [
        c for p in policies.values() if p["type"] == "ottl_condition" for c in p["ottl_condition"]["span"]
    ]
    risky = [c for c in conditions if f'attributes["{sc.COREVITAL_RISK_SCORE}"]' in c]
    assert len(risky) == 1 and re.search(r">= ?0\.5$", risky[0]), conditions
    assert any(f'attributes["{sc.COREVITAL_ERROR_TYPE}"] != nil' in c for c in conditions)
    assert any(
        p["type"] == "status_code" and p["status_code"]["status_codes"] == ["ERROR"]
        for p in policies.values()
    )
    baseline = [p for p in policies.values() if p["type"] == "probabilistic"]
    assert len(baseline) == 1 and 0 < baseline[0]["probabilistic"]["sampling_percentage"] < 100
    # numeric_attribute reads integer attributes only; the risk score is a double.
    assert all(p["type"] != "numeric_attribute" for p in policies.values())
    traces = collector["service"]["pipelines"]["traces"]
    assert "tail_sampling" in traces["processors"]
    assert "tail_sampling" not in collector["service"]["pipelines"]["metrics"].get("processors", [])


def test_the_risky_threshold_is_the_dashboards_default(collector: dict[str, Any]) -> None:
    traces_dashboard = json.loads((ROOT / "dashboards" / "json" / "corevital-traces.json").read_text())
    threshold = next(v for v in traces_dashboard["templating"]["list"] if v["name"] == "threshold")
    policy = next(
        p for p in collector["processors"]["tail_sampling"]["policies"] if p["name"] == "risky-generations"
    )
    assert policy["ottl_condition"]["span"][0].endswith(threshold["current"]["value"])


def test_tempo_is_ready_for_the_traces_dashboard(services: dict[str, Any], tempo: dict[str, Any]) -> None:
    assert tempo["server"]["http_listen_port"] in container_ports(services["tempo"])
    # TraceQL metrics need the local-blocks processor, keeping INTERNAL (non-server) spans.
    assert "local-blocks" in tempo["overrides"]["defaults"]["metrics_generator"]["processors"]
    assert tempo["metrics_generator"]["processor"]["local_blocks"]["filter_server_spans"] is False
    assert tempo["distributor"]["max_attribute_bytes"] > 2048
    for target in tempo["metrics_generator"]["storage"]["remote_write"]:
        assert endpoint(target["url"]) == ("prometheus", PROMETHEUS_PORT)
        assert "--web.enable-remote-write-receiver" in services["prometheus"]["command"]


def test_grafana_is_provisioned_with_the_dashboards(services: dict[str, Any], tempo: dict[str, Any]) -> None:
    grafana = services["grafana"]
    mounts = volumes(grafana)
    assert mounts["/etc/grafana/provisioning/datasources"] == PROVISIONING / "datasources"
    assert mounts["/etc/grafana/provisioning/dashboards"] == PROVISIONING / "dashboards"
    provider = load(PROVISIONING / "dashboards" / "dashboards.yaml")["providers"][0]
    dashboards = mounts[provider["options"]["path"]]
    assert dashboards == ROOT / "dashboards" / "json" and len(list(dashboards.glob("*.json"))) == 3
    assert GRAFANA_PORT in container_ports(grafana)

    listening = {
        "prometheus": PROMETHEUS_PORT,
        "tempo": tempo["server"]["http_listen_port"],
        "jaeger": JAEGER_UI_PORT,
    }
    datasources = load(PROVISIONING / "datasources" / "datasources.yaml")["datasources"]
    uids = {d["uid"] for d in datasources}
    assert {d["type"] for d in datasources} == {"prometheus", "tempo", "jaeger"}
    for datasource in datasources:
        host, port = endpoint(datasource["url"])
        assert host in services and listening[host] == port, datasource["url"]
        assert port in container_ports(services[host])
        links = datasource["jsonData"]
        for destination in links.get("exemplarTraceIdDestinations", []):
            assert destination["datasourceUid"] in uids
        if "tracesToMetrics" in links:
            assert links["tracesToMetrics"]["datasourceUid"] in uids
