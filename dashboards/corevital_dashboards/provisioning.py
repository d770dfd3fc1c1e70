"""Grafana datasource provisioning for the CoreVital dashboards (written by ``dashboards/build.py``).

Prometheus links exemplars to Tempo traces, Tempo and Jaeger link spans back to the model's metrics.
The uids here are only for these links: the dashboards pick datasources through variables.

Grafana expands environment variables in every string of a provisioning file (``$VAR``, ``${VAR}``)
and keeps only ``$$`` as a literal ``$``: :func:`for_provisioning` writes every ``$`` the document
means (``$__tags``) as ``$$``, or Grafana would replace ``$__tags`` with an (empty) environment
variable and the span-to-metrics queries would lose their filter.
"""

from __future__ import annotations

from typing import Any

from .registry import label, metric, sc

PROMETHEUS_UID = "prometheus"
TEMPO_UID = "tempo"
JAEGER_UID = "jaeger"
# The URLs of the services in examples/stack/docker-compose.yaml.
PROMETHEUS_URL = "http://prometheus:9090"
TEMPO_URL = "http://tempo:3200"
JAEGER_URL = "http://jaeger:16686"
# OTLP exemplars carry the trace id in this label (Prometheus's OTLP receiver).
EXEMPLAR_TRACE_ID_LABEL = "trace_id"
# Window of the span-to-metrics queries; Grafana replaces $__tags with the span's mapped tags,
# e.g. gen_ai_request_model="…".
TRACE_WINDOW = "5m"
# The Prometheus data source's "scrape interval": the OpenTelemetry SDK exports metrics every 60 s
# by default (OTEL_METRIC_EXPORT_INTERVAL), so $__rate_interval must hold several exports (Grafana
# makes it at least 4 x this); with the default 15 s a 60 s window holds one sample and rate() has
# nothing to work with. Set it to your export or scrape interval.
SCRAPE_INTERVAL = "60s"
EXEMPLAR_LINK_LABEL = "View trace in Tempo"


def _trace_to_metrics() -> dict[str, Any]:
    """Metrics of the span's model, opened from a span in the trace view."""
    risk = metric(sc.METRIC_COREVITAL_RISK_SCORE)
    duration = metric(sc.METRIC_GEN_AI_CLIENT_OPERATION_DURATION)
    flags = metric(sc.METRIC_COREVITAL_HEALTH_FLAGS)

    def rate(series: str) -> str:
        return f"rate({series}{{$__tags}}[{TRACE_WINDOW}])"

    return {
        "datasourceUid": PROMETHEUS_UID,
        "spanStartTimeShift": "-30m",
        "spanEndTimeShift": "30m",
        "tags": [{"key": sc.GEN_AI_REQUEST_MODEL, "value": label(sc.GEN_AI_REQUEST_MODEL)}],
        "queries": [
            {
                "name": "Risk score p90 of this model",
                "query": f"histogram_quantile(0.9, sum by (le) ({rate(risk.series('bucket'))}))",
            },
            {
                "name": "Health flags per second of this model",
                "query": f"sum by ({flags.label(sc.COREVITAL_FLAG_NAME)}) ({rate(flags.series())})",
            },
            {
                "name": "Operation duration p95 of this model",
                "query": f"histogram_quantile(0.95, sum by (le) ({rate(duration.series('bucket'))}))",
            },
        ],
    }


def for_provisioning(node: Any) -> Any:
    """``node`` with every ``$`` of every string written ``$$`` (Grafana's escape in provisioning files)."""
    if isinstance(node, str):
        return node.replace("$", "$$")
    if isinstance(node, dict):
        return {key: for_provisioning(value) for key, value in node.items()}
    if isinstance(node, list):
        return [for_provisioning(value) for value in node]
    return node


def datasources() -> dict[str, Any]:
    """The data sources as Grafana should end up with them (``$__tags`` meant literally); the file
    holds ``for_provisioning(datasources())``."""
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "type": "prometheus",
                "uid": PROMETHEUS_UID,
                "access": "proxy",
                "url": PROMETHEUS_URL,
                "isDefault": True,
                "editable": False,
                "jsonData": {
                    "httpMethod": "POST",
                    "prometheusType": "Prometheus",
                    "timeInterval": SCRAPE_INTERVAL,
                    "exemplarTraceIdDestinations": [
                        {
                            "name": EXEMPLAR_TRACE_ID_LABEL,
                            "datasourceUid": TEMPO_UID,
                            "urlDisplayLabel": EXEMPLAR_LINK_LABEL,
                        },
                    ],
                },
            },
            {
                "name": "Tempo",
                "type": "tempo",
                "uid": TEMPO_UID,
                "access": "proxy",
                "url": TEMPO_URL,
                "editable": False,
                "jsonData": {
                    "tracesToMetrics": _trace_to_metrics(),
                    "serviceMap": {"datasourceUid": PROMETHEUS_UID},
                    "nodeGraph": {"enabled": True},
                    "search": {"hide": False},
                    "traceQuery": {
                        "timeShiftEnabled": True,
                        "spanStartTimeShift": "-1h",
                        "spanEndTimeShift": "1h",
                    },
                    "streamingEnabled": {"search": True, "metrics": True},
                },
            },
            {
                "name": "Jaeger",
                "type": "jaeger",
                "uid": JAEGER_UID,
                "access": "proxy",
                "url": JAEGER_URL,
                "editable": False,
                "jsonData": {"tracesToMetrics": _trace_to_metrics()},
            },
        ],
    }
