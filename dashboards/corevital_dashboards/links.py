"""Data links between the dashboards: a click on a generation opens its trace, a click on a model
filters the dashboard to it.

Grafana interpolates a data link's URL with its ``percentencode`` format by default (so a model name
with ``/`` or ``:`` arrives intact), ``${var:queryparam}`` carries a variable over as
``var-name=value`` (every value of a multi-value variable, or ``$__all``), and
``${__url_time_range}`` keeps the time range.
"""

from __future__ import annotations

from typing import Any

# The dashboard variables a link carries over (``trace_id`` and ``model`` are set by the link itself).
CARRIED = ("prometheus", "tempo", "job", "model", "threshold")
# The hidden trace-id column of Grafana's Tempo "spans" table.
TEMPO_TRACE_ID_FIELD = "traceIdHidden"


def dashboard_url(uid: str, variables: tuple[str, ...], **set_to: str) -> str:
    """``/d/<uid>?<time range>&<carried variables>&var-<name>=<value>…``."""
    params = ["${__url_time_range}", *(f"${{{name}:queryparam}}" for name in variables if name not in set_to)]
    params += [f"var-{name}={value}" for name, value in set_to.items()]
    return f"/d/{uid}?" + "&".join(params)


def link(title: str, url: str) -> dict[str, Any]:
    """One data link as Grafana's JSON writes it."""
    return {"title": title, "url": url, "targetBlank": False}


def open_trace(traces_uid: str, variables: tuple[str, ...]) -> dict[str, Any]:
    """Open the clicked row's trace in the traces dashboard's trace panel (``var-trace_id``)."""
    return link(
        "Show this trace in the trace view",
        dashboard_url(traces_uid, variables, trace_id=f"${{__data.fields.{TEMPO_TRACE_ID_FIELD}}}"),
    )


def filter_model(uid: str, variables: tuple[str, ...]) -> dict[str, Any]:
    """Reload the dashboard with the clicked model as the only selected model."""
    return link("Show only ${__value.raw}", dashboard_url(uid, variables, model="${__value.raw}"))
