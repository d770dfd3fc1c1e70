"""Telemetry names for the dashboards, from the semantic-convention registry and nowhere else.

Two sources, both inside this repository:

- the instrumentation's generated constants module (``semconv.py``): every attribute, enum value and
  metric name, so a query says ``sc.METRIC_COREVITAL_RISK_SCORE``, never a typed string;
- the registry itself (``semconv/registry``, read through ``semconv/generate.py``): each metric's
  instrument, unit and attributes, which decide the Prometheus series name and which labels a query
  may group by.

:func:`prometheus_name` applies the OpenTelemetry → Prometheus naming rules (the ones the Python
``opentelemetry-exporter-prometheus`` and Prometheus's own OTLP receiver implement; a test runs the
real exporter against every registry metric). A metric renamed or removed in the registry makes
:func:`metric` raise, so the dashboard build fails instead of the user's dashboard going blank.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SEMCONV_MODULE = (
    ROOT / "opentelemetry-instrumentation-corevital/src/opentelemetry/instrumentation/corevital/semconv.py"
)
GENERATOR = ROOT / "semconv" / "generate.py"

# Labels Prometheus adds itself: `job` (scrape job, or service.name on the OTLP path) and `le`.
PROMETHEUS_LABELS = frozenset({"job", "instance", "le"})

# OpenTelemetry → Prometheus unit words (the specification's table, as the exporters implement it).
_UNIT_WORDS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
    "us": "microseconds", "ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes",
    "GiBy": "gibibytes", "TiBy": "tibibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes",
    "TBy": "terabytes", "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts",
    "g": "grams", "Cel": "celsius", "Hz": "hertz", "1": "", "%": "percent",
}  # fmt: skip
_PER_UNIT_WORDS = {
    "s": "second",
    "m": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "mo": "month",
    "y": "year",
}
_INVALID_NAME_CHARACTERS = re.compile(r"[^a-zA-Z0-9:]+")
_INVALID_LABEL_CHARACTERS = re.compile(r"[^a-zA-Z0-9]+")
_ANNOTATION = re.compile(r"\{[^}]*\}")


class RegistryMismatch(LookupError):
    """A dashboard asks for a metric or label the registry does not define."""


def _load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses in the generator look their module up here
    spec.loader.exec_module(module)
    return module


# The generated constants: a plain module of strings and tuples (no import of the package, which
# needs torch; the dashboards build needs only this file).
sc: Any = _load_module(SEMCONV_MODULE, "_corevital_semconv")


@cache
def _registry() -> Any:
    generator = _load_module(GENERATOR, "_corevital_semconv_generate")
    return generator.load()


def _clean(name: str) -> str:
    return _INVALID_NAME_CHARACTERS.sub("_", name).strip("_")


def unit_suffix(unit: str) -> str:
    """The Prometheus unit word of an OpenTelemetry (UCUM) unit.

    ``{annotation}`` parts are dropped, known units become words (``s`` -> ``seconds``), ``a/b``
    becomes ``a_per_b`` and anything else is kept, sanitised (``bit`` -> ``bit``).

    >>> unit_suffix("s"), unit_suffix("{token}"), unit_suffix("1"), unit_suffix("bit"), unit_suffix("By/s")
    ('seconds', '', '', 'bit', 'bytes_per_second')
    """
    unit = _ANNOTATION.sub("", unit).strip()
    if unit in _UNIT_WORDS:
        return _UNIT_WORDS[unit]
    main, _, per = unit.partition("/")
    if per:
        main_word = _clean(_UNIT_WORDS.get(main, main))
        per_word = _clean(_PER_UNIT_WORDS.get(per, per))
        if per_word:
            return f"{main_word}_per_{per_word}" if main_word else f"per_{per_word}"
    return _clean(unit)


def prometheus_name(name: str, unit: str, instrument: str) -> str:
    """The metric family name a Prometheus server stores for an OpenTelemetry metric.

    Dots and other invalid characters become ``_``; the unit word is appended unless the name already
    ends with it; counters get ``_total``; a gauge with unit ``1`` gets ``_ratio``. (Histogram series
    add ``_bucket``, ``_sum`` and ``_count`` to this name.)

    >>> prometheus_name("http.server.request.duration", "s", "histogram")
    'http_server_request_duration_seconds'
    >>> prometheus_name("queue.jobs", "{job}", "counter")
    'queue_jobs_total'
    """
    base = _INVALID_NAME_CHARACTERS.sub("_", name)
    if base[:1].isdigit():
        base = "_" + base
    suffix = unit_suffix(unit)
    if suffix and not base.endswith(suffix):
        base = f"{base}_{suffix}"
    if instrument == "counter":
        base = base.removesuffix("_total") + "_total"
    if instrument == "gauge" and unit == "1":
        base = base.removesuffix("_ratio") + "_ratio"
    return base


def label(attribute: str) -> str:
    """The Prometheus label of a metric attribute: ``gen_ai.request.model`` -> ``gen_ai_request_model``."""
    cleaned = _INVALID_LABEL_CHARACTERS.sub("_", attribute)
    return "_" + cleaned[1:] if cleaned[:1].isdigit() else cleaned


@dataclass(frozen=True)
class Metric:
    """One registry metric as Prometheus stores it."""

    name: str  # the OpenTelemetry name
    instrument: str
    unit: str
    attributes: frozenset[str]
    buckets: tuple[float, ...] | None

    @property
    def family(self) -> str:
        return prometheus_name(self.name, self.unit, self.instrument)

    def series(self, part: str = "") -> str:
        """The series name: ``bucket``, ``sum`` or ``count`` of a histogram, the family otherwise."""
        if self.instrument == "histogram":
            if part not in ("bucket", "sum", "count"):
                raise RegistryMismatch(f"{self.name} is a histogram: ask for its bucket, sum or count")
            return f"{self.family}_{part}"
        if part:
            raise RegistryMismatch(f"{self.name} is a {self.instrument}: it has no _{part} series")
        return self.family

    def label(self, attribute: str) -> str:
        """The label of one of this metric's attributes; any other attribute is an error."""
        if attribute not in self.attributes:
            raise RegistryMismatch(f"{self.name} has no attribute {attribute} in the registry")
        return label(attribute)

    def bucket_bound(self, value: float) -> str:
        """The ``le`` label value of one of this histogram's bucket boundaries, as exporters write it.

        Only a fractional bound has one spelling: a whole-number bound is ``1.0`` from the Python
        Prometheus exporter (and Prometheus 3 scrapes) but ``1`` from Prometheus's OTLP receiver, so an
        exact ``le`` matcher on it would match on one path only; it is refused.

        >>> metric(sc.METRIC_COREVITAL_RISK_SCORE).bucket_bound(0.5)
        '0.5'
        """
        if not self.buckets or value not in self.buckets:
            raise RegistryMismatch(f"{value} is not a bucket boundary of {self.name}: {self.buckets}")
        if float(value).is_integer():
            raise RegistryMismatch(
                f"{value} is a whole-number bound of {self.name}: exporters write it as 1 or 1.0; "
                "match a fractional bound"
            )
        return repr(float(value))


@cache
def metric(name: str) -> Metric:
    """The registry metric called ``name`` (pass a ``sc.METRIC_*`` constant)."""
    for signal in _registry().metrics:
        if signal.name == name:
            return Metric(
                name=signal.name,
                instrument=signal.instrument,
                unit=signal.unit,
                attributes=frozenset(use.id for use in signal.attributes),
                buckets=signal.buckets,
            )
    raise RegistryMismatch(f"metric {name} is not in the semantic-convention registry")


def metrics() -> list[Metric]:
    """Every metric of the registry."""
    return [metric(signal.name) for signal in _registry().metrics]


def attribute_type(name: str) -> str:
    """The registry type of a CoreVital attribute (``boolean``, ``int``, ``double[]``, ``enum`` …)."""
    for group in _registry().attribute_groups:
        for attribute in group.attributes:
            if attribute.id == name:
                return str(attribute.type)
    raise RegistryMismatch(f"attribute {name} is not in the semantic-convention registry")


def enum_values(name: str) -> list[str]:
    """The values of an enum attribute of the registry, in registry order."""
    for group in _registry().attribute_groups:
        for attribute in group.attributes:
            if attribute.id == name:
                if not attribute.members:
                    raise RegistryMismatch(f"attribute {name} is not an enum")
                return [member.value for member in attribute.members]
    raise RegistryMismatch(f"attribute {name} is not in the semantic-convention registry")


@dataclass(frozen=True)
class Flag:
    """A health flag and the span attribute that says whether (or how often) a sequence raised it."""

    name: str
    attribute: str
    type: str  # boolean, or int for a count of steps


def health_flags() -> list[Flag]:
    """Every health flag of the registry with its span attribute (``corevital.flag.<name>``)."""
    prefix = sc.COREVITAL_FLAG_NAME.removesuffix("name")
    return [
        Flag(name=value, attribute=prefix + value, type=attribute_type(prefix + value))
        for value in enum_values(sc.COREVITAL_FLAG_NAME)
    ]
