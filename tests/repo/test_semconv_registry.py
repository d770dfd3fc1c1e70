"""The semantic-convention registry in ``semconv/`` and the files rendered from it.

The registry is the one source of every telemetry name; ``semconv/generate.py`` renders the
package's ``semconv.py`` and ``docs/semconv.md`` from it. These tests keep the three in step, keep the
GenAI names equal to the OpenTelemetry package's, and keep every name the code has ever imported.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from opentelemetry.instrumentation.corevital import semconv as sc

pytest.importorskip("jinja2")

ROOT = Path(__file__).resolve().parents[2]
SEMCONV = ROOT / "semconv"

# Every constant of the hand-written semconv.py the registry replaced, with its value: the code and
# users import these, so the generated module must keep them all, unchanged.
HAND_WRITTEN_CONSTANTS: dict[str, Any] = {
    "GEN_AI_OPERATION_NAME": "gen_ai.operation.name",
    "GEN_AI_PROVIDER_NAME": "gen_ai.provider.name",
    "GEN_AI_REQUEST_MODEL": "gen_ai.request.model",
    "GEN_AI_REQUEST_MAX_TOKENS": "gen_ai.request.max_tokens",
    "GEN_AI_REQUEST_TEMPERATURE": "gen_ai.request.temperature",
    "GEN_AI_REQUEST_TOP_P": "gen_ai.request.top_p",
    "GEN_AI_REQUEST_TOP_K": "gen_ai.request.top_k",
    "GEN_AI_REQUEST_SEED": "gen_ai.request.seed",
    "GEN_AI_REQUEST_CHOICE_COUNT": "gen_ai.request.choice.count",
    "GEN_AI_RESPONSE_FINISH_REASONS": "gen_ai.response.finish_reasons",
    "GEN_AI_USAGE_INPUT_TOKENS": "gen_ai.usage.input_tokens",
    "GEN_AI_USAGE_OUTPUT_TOKENS": "gen_ai.usage.output_tokens",
    "GEN_AI_INPUT_MESSAGES": "gen_ai.input.messages",
    "GEN_AI_OUTPUT_MESSAGES": "gen_ai.output.messages",
    "ERROR_TYPE": "error.type",
    "GEN_AI_TOKEN_TYPE": "gen_ai.token.type",
    "GEN_AI_OPERATION_TEXT_COMPLETION": "text_completion",
    "GEN_AI_PROVIDER_HUGGINGFACE": "huggingface",
    "GEN_AI_TOKEN_TYPE_INPUT": "input",
    "GEN_AI_TOKEN_TYPE_OUTPUT": "output",
    "COREVITAL_CAPTURE_LEVEL": "corevital.capture.level",
    "COREVITAL_ERROR_TYPE": "corevital.error.type",
    "COREVITAL_STEPS": "corevital.steps",
    "CAPTURE_LEVEL_LOGITS": "logits",
    "CAPTURE_LEVEL_HIDDEN": "hidden",
    "CAPTURE_LEVEL_ATTENTION": "attention",
    "COREVITAL_SERIES_SEQUENCE_INDEX": "corevital.series.sequence_index",
    "COREVITAL_SERIES_STEP_STRIDE": "corevital.series.step_stride",
    "COREVITAL_ENTROPY_MEAN": "corevital.entropy.mean",
    "COREVITAL_ENTROPY_MIN": "corevital.entropy.min",
    "COREVITAL_ENTROPY_MAX": "corevital.entropy.max",
    "COREVITAL_ENTROPY_SERIES": "corevital.entropy.series",
    "COREVITAL_MARGIN_MEAN": "corevital.margin.mean",
    "COREVITAL_MARGIN_MIN": "corevital.margin.min",
    "COREVITAL_MARGIN_MAX": "corevital.margin.max",
    "COREVITAL_MARGIN_SERIES": "corevital.margin.series",
    "COREVITAL_TOPK_MASS_MEAN": "corevital.topk_mass.mean",
    "COREVITAL_TOPK_MASS_MIN": "corevital.topk_mass.min",
    "COREVITAL_TOPK_MASS_MAX": "corevital.topk_mass.max",
    "COREVITAL_TOPK_MASS_SERIES": "corevital.topk_mass.series",
    "COREVITAL_TOP1_PROB_MEAN": "corevital.top1_prob.mean",
    "COREVITAL_TOP1_PROB_MIN": "corevital.top1_prob.min",
    "COREVITAL_TOP1_PROB_MAX": "corevital.top1_prob.max",
    "COREVITAL_TOP1_PROB_SERIES": "corevital.top1_prob.series",
    "COREVITAL_SURPRISAL_MEAN": "corevital.surprisal.mean",
    "COREVITAL_SURPRISAL_MIN": "corevital.surprisal.min",
    "COREVITAL_SURPRISAL_MAX": "corevital.surprisal.max",
    "COREVITAL_SURPRISAL_SERIES": "corevital.surprisal.series",
    "COREVITAL_HIDDEN_L2_NORM_MEAN": "corevital.hidden.l2_norm.mean",
    "COREVITAL_HIDDEN_L2_NORM_MIN": "corevital.hidden.l2_norm.min",
    "COREVITAL_HIDDEN_L2_NORM_MAX": "corevital.hidden.l2_norm.max",
    "COREVITAL_HIDDEN_L2_NORM_SERIES": "corevital.hidden.l2_norm.series",
    "COREVITAL_HIDDEN_COSINE_PREVIOUS_MEAN": "corevital.hidden.cosine_previous.mean",
    "COREVITAL_HIDDEN_COSINE_PREVIOUS_MIN": "corevital.hidden.cosine_previous.min",
    "COREVITAL_HIDDEN_COSINE_PREVIOUS_MAX": "corevital.hidden.cosine_previous.max",
    "COREVITAL_HIDDEN_COSINE_PREVIOUS_SERIES": "corevital.hidden.cosine_previous.series",
    "COREVITAL_HIDDEN_LAYER_L2_NORM_MEAN": "corevital.hidden.layer.l2_norm_mean",
    "COREVITAL_HIDDEN_LAYER_L2_NORM_MAX": "corevital.hidden.layer.l2_norm_max",
    "COREVITAL_HIDDEN_LAYER_STD_MEAN": "corevital.hidden.layer.std_mean",
    "COREVITAL_HIDDEN_LAYER_MEAN_MEAN": "corevital.hidden.layer.mean_mean",
    "COREVITAL_HIDDEN_LAYER_MAX_ABS": "corevital.hidden.layer.max_abs",
    "COREVITAL_HIDDEN_LAYER_NAN_COUNT": "corevital.hidden.layer.nan_count",
    "COREVITAL_HIDDEN_LAYER_INF_COUNT": "corevital.hidden.layer.inf_count",
    "COREVITAL_HIDDEN_NAN_COUNT": "corevital.hidden.nan_count",
    "COREVITAL_HIDDEN_INF_COUNT": "corevital.hidden.inf_count",
    "COREVITAL_HIDDEN_CLIP_FRACTION": "corevital.hidden.clip_fraction",
    "COREVITAL_ATTENTION_ENTROPY_NORMALIZED_MEAN": "corevital.attention.entropy_normalized.mean",
    "COREVITAL_ATTENTION_ENTROPY_NORMALIZED_MIN": "corevital.attention.entropy_normalized.min",
    "COREVITAL_ATTENTION_ENTROPY_NORMALIZED_MAX": "corevital.attention.entropy_normalized.max",
    "COREVITAL_ATTENTION_ENTROPY_NORMALIZED_SERIES": "corevital.attention.entropy_normalized.series",
    "COREVITAL_ATTENTION_COLLAPSED_HEADS_MEAN": "corevital.attention.collapsed_heads.mean",
    "COREVITAL_ATTENTION_COLLAPSED_HEADS_MIN": "corevital.attention.collapsed_heads.min",
    "COREVITAL_ATTENTION_COLLAPSED_HEADS_MAX": "corevital.attention.collapsed_heads.max",
    "COREVITAL_ATTENTION_COLLAPSED_HEADS_SERIES": "corevital.attention.collapsed_heads.series",
    "COREVITAL_ATTENTION_LAYER_ENTROPY_MEAN": "corevital.attention.layer.entropy_mean",
    "COREVITAL_ATTENTION_LAYER_ENTROPY_MIN": "corevital.attention.layer.entropy_min",
    "COREVITAL_ATTENTION_LAYER_ENTROPY_MAX": "corevital.attention.layer.entropy_max",
    "COREVITAL_ATTENTION_LAYER_ENTROPY_NORMALIZED_MEAN": "corevital.attention.layer.entropy_normalized_mean",
    "COREVITAL_ATTENTION_LAYER_CONCENTRATION_MEAN": "corevital.attention.layer.concentration_mean",
    "COREVITAL_ATTENTION_LAYER_COLLAPSED_HEADS_MEAN": "corevital.attention.layer.collapsed_heads_mean",
    "COREVITAL_ATTENTION_LAYER_FOCUSED_HEADS_MEAN": "corevital.attention.layer.focused_heads_mean",
    "COREVITAL_SEQUENCE_INDEX": "corevital.sequence.index",
    "COREVITAL_SEQUENCE_OUTPUT_TOKENS": "corevital.sequence.output_tokens",
    "COREVITAL_SEQUENCE_FINISH_REASON": "corevital.sequence.finish_reason",
    "FINISH_REASON_STOP": "stop",
    "FINISH_REASON_LENGTH": "length",
    "EVENT_COREVITAL_SEQUENCE": "corevital.sequence",
    "METRIC_GEN_AI_CLIENT_OPERATION_DURATION": "gen_ai.client.operation.duration",
    "BUCKETS_GEN_AI_CLIENT_OPERATION_DURATION": (
        0.01,
        0.02,
        0.04,
        0.08,
        0.16,
        0.32,
        0.64,
        1.28,
        2.56,
        5.12,
        10.24,
        20.48,
        40.96,
        81.92,
    ),
    "METRIC_GEN_AI_CLIENT_TOKEN_USAGE": "gen_ai.client.token.usage",
    "BUCKETS_GEN_AI_CLIENT_TOKEN_USAGE": (
        1,
        4,
        16,
        64,
        256,
        1024,
        4096,
        16384,
        65536,
        262144,
        1048576,
        4194304,
        16777216,
        67108864,
    ),
    "METRIC_GEN_AI_SERVER_TIME_TO_FIRST_TOKEN": "gen_ai.server.time_to_first_token",
    "BUCKETS_GEN_AI_SERVER_TIME_TO_FIRST_TOKEN": (
        0.001,
        0.005,
        0.01,
        0.02,
        0.04,
        0.06,
        0.08,
        0.1,
        0.25,
        0.5,
        0.75,
        1.0,
        2.5,
        5.0,
        7.5,
        10.0,
    ),
    "METRIC_GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN": "gen_ai.server.time_per_output_token",
    "BUCKETS_GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN": (
        0.01,
        0.025,
        0.05,
        0.075,
        0.1,
        0.15,
        0.2,
        0.3,
        0.4,
        0.5,
        0.75,
        1.0,
        2.5,
    ),
    "METRIC_COREVITAL_STEP_ENTROPY": "corevital.step.entropy",
    "BUCKETS_COREVITAL_STEP_ENTROPY": (
        0.1,
        0.25,
        0.5,
        1.0,
        1.5,
        2.0,
        3.0,
        4.0,
        5.0,
        6.0,
        8.0,
        10.0,
        12.0,
        16.0,
    ),
    "GEN_AI_EVALUATION_NAME": "gen_ai.evaluation.name",
    "GEN_AI_EVALUATION_SCORE_VALUE": "gen_ai.evaluation.score.value",
    "GEN_AI_EVALUATION_SCORE_LABEL": "gen_ai.evaluation.score.label",
    "GEN_AI_EVALUATION_EXPLANATION": "gen_ai.evaluation.explanation",
    "EVENT_GEN_AI_EVALUATION_RESULT": "gen_ai.evaluation.result",
    "COREVITAL_SEQUENCE_COUNT": "corevital.sequence.count",
    "COREVITAL_RISK_SCORE": "corevital.risk.score",
    "COREVITAL_RISK_BAND": "corevital.risk.band",
    "COREVITAL_RISK_FACTORS": "corevital.risk.factors",
    "COREVITAL_RISK_NAME": "corevital.risk",
    "RISK_BAND_LOW": "low",
    "RISK_BAND_MODERATE": "moderate",
    "RISK_BAND_HIGH": "high",
    "COREVITAL_FLAGS": "corevital.flags",
    "COREVITAL_FLAG_NAN_DETECTED": "corevital.flag.nan_detected",
    "COREVITAL_FLAG_INF_DETECTED": "corevital.flag.inf_detected",
    "COREVITAL_FLAG_ATTENTION_COLLAPSE": "corevital.flag.attention_collapse",
    "COREVITAL_FLAG_ATTENTION_COLLAPSE_SEVERITY": "corevital.flag.attention_collapse_severity",
    "COREVITAL_FLAG_HIGH_ENTROPY": "corevital.flag.high_entropy",
    "COREVITAL_HIGH_ENTROPY_STEPS": "corevital.high_entropy.steps",
    "COREVITAL_HIGH_ENTROPY_THRESHOLD": "corevital.high_entropy.threshold",
    "COREVITAL_BASELINE_SOURCE": "corevital.baseline.source",
    "COREVITAL_BASELINE_BUDGET": "corevital.baseline.budget",
    "BASELINE_SOURCE_PROFILE": "profile",
    "BASELINE_SOURCE_NONE": "none",
    "COREVITAL_FLAG_REPETITION_LOOP": "corevital.flag.repetition_loop",
    "COREVITAL_FLAG_MID_LAYER_ANOMALY": "corevital.flag.mid_layer_anomaly",
    "COREVITAL_FLAG_NAME": "corevital.flag.name",
    "FLAG_NAN_DETECTED": "nan_detected",
    "FLAG_INF_DETECTED": "inf_detected",
    "FLAG_ATTENTION_COLLAPSE": "attention_collapse",
    "FLAG_HIGH_ENTROPY": "high_entropy",
    "FLAG_REPETITION_LOOP": "repetition_loop",
    "FLAG_MID_LAYER_ANOMALY": "mid_layer_anomaly",
    "COREVITAL_COMPOUND_SIGNALS_NAMES": "corevital.compound_signals.names",
    "COREVITAL_COMPOUND_SIGNALS_SEVERITIES": "corevital.compound_signals.severities",
    "COREVITAL_COMPOUND_SIGNAL_NAME": "corevital.compound_signal.name",
    "COREVITAL_EARLY_WARNING_FAILURE_RISK": "corevital.early_warning.failure_risk",
    "COREVITAL_EARLY_WARNING_SIGNALS": "corevital.early_warning.signals",
    "COREVITAL_EARLY_WARNING_SIGNAL": "corevital.early_warning.signal",
    "COREVITAL_LAYER_BLAME_LAYERS": "corevital.layer_blame.layers",
    "COREVITAL_LAYER_BLAME_DETAILS": "corevital.layer_blame.details",
    "COREVITAL_FINGERPRINT_VECTOR": "corevital.fingerprint.vector",
    "COREVITAL_FINGERPRINT_VERSION": "corevital.fingerprint.version",
    "COREVITAL_PROMPT_HASH": "corevital.prompt.hash",
    "COREVITAL_NARRATIVE": "corevital.narrative",
    "COREVITAL_CALIBRATION_DIVERGENCE_SCORE": "corevital.calibration.divergence_score",
    "COREVITAL_CALIBRATION_ANOMALIES": "corevital.calibration.anomalies",
    "COREVITAL_INTERVENTION_SIGNAL": "corevital.intervention.signal",
    "COREVITAL_INTERVENTION_STEP": "corevital.intervention.step",
    "COREVITAL_SEQUENCE_RISK_SCORES": "corevital.sequence.risk_scores",
    "COREVITAL_SEQUENCE_FAILURE_RISKS": "corevital.sequence.failure_risks",
    "COREVITAL_STEP": "corevital.step",
    "COREVITAL_EVIDENCE": "corevital.evidence",
    "COREVITAL_ATTENTION_LAYER_BASIN_SCORE_MEAN": "corevital.attention.layer.basin_score_mean",
    "FINISH_REASON_COREVITAL_STOPPED": "corevital.stopped",
    "EVENT_COREVITAL_HEALTH_FLAG": "corevital.health_flag",
    "EVENT_COREVITAL_EARLY_WARNING": "corevital.early_warning",
    "EVENT_COREVITAL_INTERVENTION": "corevital.intervention",
    "METRIC_COREVITAL_RISK_SCORE": "corevital.risk.score",
    "BUCKETS_COREVITAL_RISK_SCORE": (
        0.05,
        0.1,
        0.15,
        0.2,
        0.25,
        0.3,
        0.35,
        0.4,
        0.45,
        0.5,
        0.55,
        0.6,
        0.65,
        0.7,
        0.75,
        0.8,
        0.85,
        0.9,
        0.95,
        1.0,
    ),
    "METRIC_COREVITAL_HEALTH_FLAGS": "corevital.health_flags",
    "METRIC_COREVITAL_COMPOUND_SIGNALS": "corevital.compound_signals",
    "METRIC_COREVITAL_EARLY_WARNINGS": "corevital.early_warnings",
    "METRIC_COREVITAL_INTERVENTIONS": "corevital.interventions",
}

# Values CoreVital emits that the OpenTelemetry enum does not list (custom values are allowed).
CUSTOM_UPSTREAM_VALUES = {"gen_ai.provider.name": {"huggingface"}}

SIMPLE_TYPES = {"string", "int", "double", "boolean", "string[]", "int[]", "double[]", "boolean[]"}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("semconv_generate", SEMCONV / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return _generator()


def _groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in sorted((SEMCONV / "registry").glob("*.yaml")):
        groups.extend(yaml.safe_load(path.read_text(encoding="utf-8"))["groups"])
    return groups


def _definitions() -> list[dict[str, Any]]:
    return [item for group in _groups() for item in group.get("attributes") or [] if "id" in item]


def test_committed_files_equal_a_fresh_render(
    generator: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    code = generator.main(["--check"])
    assert code == 0, "stale generated files, run `python semconv/generate.py`:\n" + capsys.readouterr().out


def test_check_reports_a_stale_file_with_a_diff(generator: ModuleType) -> None:
    rendered = generator.render_all()
    path = generator.MARKDOWN_OUT
    rendered[path] = rendered[path] + "one more line\n"
    diffs = list(generator.stale(rendered))
    assert len(diffs) == 1
    assert "+one more line" in diffs[0]
    assert "docs/semconv.md" in diffs[0]


def test_script_runs_as_a_command() -> None:
    result = subprocess.run(
        [sys.executable, str(SEMCONV / "generate.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_attribute_has_type_brief_stability_and_examples() -> None:
    definitions = _definitions()
    assert len(definitions) > 50
    for attribute in definitions:
        name = attribute["id"]
        assert name.startswith("corevital."), f"{name}: only corevital.* names are defined here"
        assert attribute.get("brief"), f"{name} has no brief"
        assert attribute.get("note"), f"{name} has no note (units and range)"
        assert attribute.get("stability") == "development", f"{name}: stability"
        assert attribute.get("examples") is not None, f"{name} has no examples"
        kind = attribute.get("type")
        if isinstance(kind, dict):
            members = kind["members"]
            assert members, f"{name}: enum without members"
            for member in members:
                assert {"id", "value", "brief", "stability"} <= member.keys(), f"{name}: member {member}"
        else:
            assert kind in SIMPLE_TYPES, f"{name}: type {kind!r}"


def test_refs_point_to_definitions_or_to_opentelemetry() -> None:
    defined = {attribute["id"] for attribute in _definitions()}
    for group in _groups():
        for item in group.get("attributes") or []:
            ref = item.get("ref")
            if ref is None:
                continue
            if ref.startswith("corevital."):
                assert ref in defined, f"{group['id']}: ref to undefined {ref}"
            else:
                assert ref.startswith("gen_ai.") or ref == "error.type", (
                    f"{group['id']}: unexpected ref {ref}"
                )


def test_opentelemetry_names_are_referenced_not_redefined() -> None:
    for attribute in _definitions():
        assert not attribute["id"].startswith(("gen_ai.", "error.")), attribute["id"]


def test_manifest_declares_the_opentelemetry_dependency() -> None:
    manifest = yaml.safe_load((SEMCONV / "manifest.yaml").read_text(encoding="utf-8"))
    assert manifest["name"] == "corevital"
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["semconv_version"])
    assert manifest["schema_url"].endswith("/" + manifest["semconv_version"])
    (dependency,) = manifest["dependencies"]
    assert dependency["name"] == "otel"
    assert dependency["registry_path"]
    assert re.search(r"/schemas/\d+\.\d+\.\d+$", dependency["schema_url"])


def test_metric_groups_carry_units_and_bucket_boundaries() -> None:
    metrics = [group for group in _groups() if group["type"] == "metric"]
    assert {group["metric_name"] for group in metrics} >= {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "gen_ai.server.time_to_first_token",
        "gen_ai.server.time_per_output_token",
        "corevital.step.entropy",
    }
    for group in metrics:
        assert group["unit"] and group["instrument"] in {"counter", "histogram", "gauge", "updowncounter"}
        if group["instrument"] == "histogram":
            buckets = group["annotations"]["code_generation"]["bucket_boundaries"]
            assert buckets == sorted(set(buckets)), group["id"]


def test_every_hand_written_constant_is_still_generated_with_its_value() -> None:
    for name, value in HAND_WRITTEN_CONSTANTS.items():
        assert hasattr(sc, name), f"semconv.{name} is gone"
        generated = getattr(sc, name)
        assert generated == value, f"semconv.{name}: {generated!r} != {value!r}"
        assert type(generated) is type(value), name
        if isinstance(value, tuple):
            assert [type(item) for item in generated] == [type(item) for item in value], name


def test_genai_constants_equal_the_opentelemetry_package(generator: ModuleType) -> None:
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes
    from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
    from opentelemetry.semconv.attributes import error_attributes

    registry = generator.load()
    assert registry.upstream, "the registry references no OpenTelemetry attribute"
    for entry in registry.upstream:
        source = error_attributes if entry.id.startswith("error.") else gen_ai_attributes
        assert getattr(sc, entry.constant) == getattr(source, entry.constant) == entry.id
        if not entry.values:
            continue
        enum_name = "".join(part.title() for part in re.split(r"[._]", entry.id)) + "Values"
        enum = getattr(source, enum_name, None)  # free-form attributes (gen_ai.evaluation.name) have none
        for value in entry.values:
            assert getattr(sc, value.constant) == value.value
            if enum is not None:
                known = {member.value for member in enum} | CUSTOM_UPSTREAM_VALUES.get(entry.id, set())
                assert value.value in known, (entry.id, value)
    upstream_metrics = [metric for metric in registry.metrics if metric.upstream]
    assert len(upstream_metrics) == 4
    for metric in upstream_metrics:
        assert getattr(sc, metric.constant) == getattr(
            gen_ai_metrics, metric.constant.removeprefix("METRIC_")
        )


def test_generated_module_says_so_and_imports_only_final() -> None:
    path = Path(sc.__file__)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# GENERATED by semconv/generate.py from semconv/registry — do not edit.\n")
    imports = [node for node in ast.parse(text).body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert [(node.module, [alias.name for alias in node.names]) for node in imports] == [
        ("__future__", ["annotations"]),
        ("typing", ["Final"]),
    ]
    docs = (ROOT / "docs" / "semconv.md").read_text(encoding="utf-8")
    assert docs.startswith("<!-- GENERATED by semconv/generate.py from semconv/registry — do not edit. -->\n")


def test_constant_names_follow_the_rules(generator: ModuleType) -> None:
    assert generator.constant_name("corevital.entropy.mean") == "COREVITAL_ENTROPY_MEAN"
    assert generator.constant_name("gen_ai.request.choice.count") == "GEN_AI_REQUEST_CHOICE_COUNT"
    registry = generator.load()
    names = dict(generator.constants(registry))
    assert names["METRIC_COREVITAL_STEP_ENTROPY"] == "corevital.step.entropy"
    assert names["EVENT_COREVITAL_SEQUENCE"] == "corevital.sequence"
    assert {name for name in vars(sc) if name.isupper()} - {"SCHEMA_URL"} == set(names)


def test_schema_url_is_the_registry_dependency_and_what_the_tracer_announces(generator: ModuleType) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import tiny_models
    from opentelemetry.instrumentation.corevital import CoreVitalInstrumentor

    registry = generator.load()
    assert registry.dependency["schema_url"] == sc.SCHEMA_URL
    assert sc.SCHEMA_URL.endswith("/" + registry.dependency["registry_path"].split("/v")[-1].split(".zip")[0])
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = CoreVitalInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        tiny_models.llama().generate(**tiny_models.prompt(), max_new_tokens=2, do_sample=False)
    finally:
        instrumentor.uninstrument()
    (span,) = exporter.get_finished_spans()
    assert span.instrumentation_scope.schema_url == sc.SCHEMA_URL


def _members(generator: ModuleType, attribute: str) -> list[Any]:
    registry = generator.load()
    for group in registry.attribute_groups:
        for candidate in group.attributes:
            if candidate.id == attribute:
                return [member.value for member in candidate.members]
    raise AssertionError(f"{attribute} is not in the registry")


def test_enums_list_exactly_the_values_the_code_emits(generator: ModuleType) -> None:
    from opentelemetry.instrumentation.corevital.config import CaptureLevel
    from opentelemetry.instrumentation.corevital.signals import baseline, compound, early_warning, risk
    from opentelemetry.instrumentation.corevital.signals import flags as fl

    assert _members(generator, "corevital.capture.level") == [level.value for level in CaptureLevel]
    assert _members(generator, "corevital.sequence.finish_reason") == [
        "stop",
        "length",
        sc.FINISH_REASON_COREVITAL_STOPPED,
    ]
    assert _members(generator, "corevital.risk.band") == [risk.LOW, risk.MODERATE, risk.HIGH]
    assert _members(generator, "corevital.flag.name") == list(fl.FLAG_NAMES)
    assert _members(generator, "corevital.compound_signal.name") == list(compound.SIGNAL_NAMES)
    assert _members(generator, "corevital.early_warning.signal") == list(early_warning.SIGNAL_NAMES)
    assert _members(generator, "corevital.baseline.source") == [baseline.SOURCE_PROFILE, baseline.SOURCE_NONE]


@pytest.mark.skipif(shutil.which("weaver") is None, reason="no weaver binary on PATH")
def test_weaver_registry_check() -> None:
    # The manifest sits at the registry root (semconv/), as weaver expects; its YAML is under registry/.
    result = subprocess.run(
        ["weaver", "registry", "check", "-r", str(SEMCONV)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=600,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0 and re.search(r"(?i)fetch|download|network|resolve host|connect", output):
        pytest.skip(f"weaver could not fetch the OpenTelemetry registry: {output[-500:]}")
    assert result.returncode == 0, output
