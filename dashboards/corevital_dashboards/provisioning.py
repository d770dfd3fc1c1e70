"""Grafana datasource provisioning for the CoreVital dashboards (written by ``dashboards/build.py``).

Prometheus links exemplars to Tempo traces, Tempo and Jaeger link spans back to the model's metrics.
The uids here are only for these links: the dashboards pick datasources through variables.
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


def datasources() -> dict[str, Any]:
    """The ``datasources.yaml`` document Grafana reads at start-up."""
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
                    "exemplarTraceIdDestinations": [
                        {"name": EXEMPLAR_TRACE_ID_LABEL, "datasourceUid": TEMPO_UID},
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
