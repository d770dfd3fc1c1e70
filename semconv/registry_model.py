"""The registry in ``semconv/`` as Python objects, its rules checked while it is read."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SEMCONV = Path(__file__).resolve().parent
MANIFEST = SEMCONV / "manifest.yaml"
REGISTRY = SEMCONV / "registry"

GROUP_TYPES = ("attribute_group", "span", "event", "metric")
GROUP_ORDER = ("span", "event", "metric", "attribute_group")
SIMPLE_TYPES = ("string", "int", "double", "boolean", "string[]", "int[]", "double[]", "boolean[]")
INSTRUMENTS = ("counter", "histogram", "gauge", "updowncounter")
STABILITIES = ("stable", "development", "alpha", "beta", "release_candidate")
REQUIREMENT_LEVELS = ("required", "recommended", "opt_in", "conditionally_required")


class RegistryError(Exception):
    """The registry breaks a rule this generator relies on."""


@dataclass
class Member:
    id: str
    value: str
    brief: str
    stability: str
    constant: str


@dataclass
class Attribute:
    """An attribute defined in this registry."""

    id: str
    type: str  # simple type, or "enum" with members
    brief: str
    note: str
    stability: str
    examples: list[Any]
    group: str
    constant: str
    members: list[Member] = field(default_factory=list)
    enum_type: str = ""  # the value type of an enum's members
    deprecated: str = ""  # why, when the attribute is deprecated


@dataclass
class Upstream:
    """An attribute of another registry (OpenTelemetry) that a group references."""

    id: str
    constant: str
    values: list[Member] = field(default_factory=list)


@dataclass
class Use:
    """An attribute as one span, event or metric uses it."""

    id: str
    requirement_level: str
    condition: str
    brief: str
    note: str
    examples: list[Any]
    local: Attribute | None


@dataclass
class Signal:
    """A span, event or metric group, its attributes resolved (``extends`` included)."""

    id: str
    type: str
    brief: str
    note: str
    stability: str
    name: str  # metric_name / event name / span id
    constant: str
    attributes: list[Use]
    span_kind: str = ""
    instrument: str = ""
    unit: str = ""
    value_type: str = ""
    buckets: tuple[float, ...] | None = None
    buckets_constant: str = ""
    upstream: bool = False


@dataclass
class AttributeGroup:
    id: str
    display_name: str
    brief: str
    note: str
    attributes: list[Attribute]


@dataclass
class Registry:
    manifest: dict[str, Any]
    attribute_groups: list[AttributeGroup]
    upstream: list[Upstream]
    spans: list[Signal]
    events: list[Signal]
    metrics: list[Signal]

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def dependency(self) -> dict[str, Any]:
        return dict(self.manifest["dependencies"][0])


def constant_name(name: str) -> str:
    """``corevital.top_tokens.ids`` -> ``COREVITAL_TOP_TOKENS_IDS``."""
    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_").upper()


def _codegen(node: dict[str, Any]) -> dict[str, Any]:
    return dict((node.get("annotations") or {}).get("code_generation") or {})


def _text(node: dict[str, Any], key: str) -> str:
    """A ``brief`` on one line; a ``note`` as written (its paragraphs matter)."""
    text = str(node.get(key) or "")
    return " ".join(text.split()) if key == "brief" else text.strip()


def _examples(node: dict[str, Any]) -> list[Any]:
    examples = node.get("examples")
    if examples is None:
        return []
    return list(examples) if isinstance(examples, list) else [examples]


def require(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise RegistryError(f"{where}: {message}")


def load_groups(registry: Path = REGISTRY) -> list[tuple[str, dict[str, Any]]]:
    """Every group of every registry file, as ``(file name, group)``, files in name order."""
    groups: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(registry.glob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        require(isinstance(document.get("groups"), list), path.name, "needs a `groups:` list")
        groups.extend((path.name, group) for group in document["groups"])
    return groups


def _attribute(raw: dict[str, Any], group: str, where: str) -> Attribute:
    name = raw["id"]
    for key in ("type", "brief", "stability"):
        require(bool(raw.get(key)), where, f"attribute {name} has no `{key}`")
    require(raw["stability"] in STABILITIES, where, f"attribute {name}: unknown stability")
    constant = _codegen(raw).get("constant_name") or constant_name(name)
    attribute = Attribute(
        id=name,
        type="enum" if isinstance(raw["type"], dict) else str(raw["type"]),
        brief=_text(raw, "brief"),
        note=_text(raw, "note"),
        stability=raw["stability"],
        examples=_examples(raw),
        group=group,
        constant=constant,
    )
    deprecated = raw.get("deprecated")
    if deprecated:
        require(isinstance(deprecated, dict) and "reason" in deprecated, where, f"{name}: deprecated why?")
        renamed_to = deprecated.get("renamed_to")
        reason = deprecated.get("note") or f"Deprecated ({deprecated['reason']})."
        attribute.deprecated = f"Replaced by `{renamed_to}`." if renamed_to else str(reason)
    if attribute.type == "enum":
        prefix = _codegen(raw).get("enum_constant_prefix") or constant
        members = raw["type"].get("members") or []
        require(bool(members), where, f"enum attribute {name} has no members")
        for member in members:
            for key in ("id", "value", "stability"):
                require(key in member, where, f"a member of {name} has no `{key}`")
            attribute.members.append(
                Member(
                    id=str(member["id"]),
                    value=member["value"],
                    brief=_text(member, "brief"),
                    stability=member["stability"],
                    constant=_codegen(member).get("constant_name")
                    or f"{prefix}_{constant_name(str(member['id']))}",
                )
            )
        kinds = {type(member.value).__name__ for member in attribute.members}
        require(len(kinds) == 1, where, f"enum attribute {name} mixes member value types")
        attribute.enum_type = {"str": "string", "int": "int", "bool": "boolean"}[kinds.pop()]
    else:
        require(attribute.type in SIMPLE_TYPES, where, f"attribute {name}: unknown type {attribute.type}")
    if attribute.type in ("string", "string[]"):
        require(bool(attribute.examples), where, f"string attribute {name} needs `examples`")
    return attribute


def _requirement(raw: dict[str, Any]) -> tuple[str, str]:
    level = raw.get("requirement_level", "recommended")
    if isinstance(level, dict):
        ((key, condition),) = level.items()
        return str(key), " ".join(str(condition).split())
    return str(level), ""


def load(manifest_path: Path = MANIFEST, registry_path: Path = REGISTRY) -> Registry:
    """Read and check the registry; the generated files depend on nothing else."""
    manifest = yaml.safe_load(manifest_path.read_text(encoding="utf-8"))
    for key in ("name", "semconv_version", "schema_url", "dependencies"):
        require(bool(manifest.get(key)), manifest_path.name, f"needs `{key}`")
    require(
        str(manifest["schema_url"]).rstrip("/").endswith("/" + str(manifest["semconv_version"])),
        manifest_path.name,
        "`schema_url` must end with `semconv_version`",
    )
    namespace = f"{manifest['name']}."
    groups = load_groups(registry_path)

    by_id: dict[str, dict[str, Any]] = {}
    attributes: dict[str, Attribute] = {}
    attribute_groups: dict[str, AttributeGroup] = {}
    for file_name, raw in groups:
        where = f"{file_name}: {raw.get('id')}"
        for key in ("id", "type", "brief"):
            require(bool(raw.get(key)), where, f"group has no `{key}`")
        require(raw["type"] in GROUP_TYPES, where, f"unknown group type {raw['type']}")
        require(raw["id"] not in by_id, where, "duplicate group id")
        by_id[raw["id"]] = raw
        defined = []
        for item in raw.get("attributes") or []:
            if "ref" in item:
                continue
            require(raw["type"] == "attribute_group", where, "define attributes in attribute groups only")
            name = str(item.get("id", ""))
            require(name.startswith(namespace), where, f"attribute {name} is not in {namespace}*")
            require(item["id"] not in attributes, where, f"attribute {item['id']} defined twice")
            attribute = _attribute(item, raw["id"], where)
            attributes[attribute.id] = attribute
            defined.append(attribute)
        if defined:
            attribute_groups[raw["id"]] = AttributeGroup(
                id=raw["id"],
                display_name=str(raw.get("display_name") or raw["id"]),
                brief=_text(raw, "brief"),
                note=_text(raw, "note"),
                attributes=defined,
            )

    upstream: dict[str, Upstream] = {}

    def uses(raw: dict[str, Any], where: str, seen: frozenset[str] = frozenset()) -> list[Use]:
        require(raw["id"] not in seen, where, "`extends` cycle")
        out: list[Use] = []
        parent = raw.get("extends")
        if parent:
            require(parent in by_id, where, f"extends unknown group {parent}")
            out.extend(uses(by_id[parent], where, seen | {raw["id"]}))
        for item in raw.get("attributes") or []:
            name = item.get("ref") or item.get("id")
            require(bool(name), where, "an attribute needs `ref` or `id`")
            local = attributes.get(name)
            if local is None:
                require(not name.startswith(namespace), where, f"ref to undefined attribute {name}")
                entry = upstream.setdefault(name, Upstream(id=name, constant=constant_name(name)))
                codegen = _codegen(item)
                prefix = codegen.get("enum_constant_prefix") or entry.constant
                for used in codegen.get("used_values") or []:
                    # A value, or {value: ..., constant_name: ...} where the rule's name does not fit.
                    value = used["value"] if isinstance(used, dict) else used
                    rule = f"{prefix}_{constant_name(str(value))}"
                    name_of = used.get("constant_name", rule) if isinstance(used, dict) else rule
                    member = Member(str(value), value, "", "", name_of)
                    if all(existing.constant != member.constant for existing in entry.values):
                        entry.values.append(member)
            require(
                raw["type"] == "attribute_group" or local is None or not local.deprecated,
                where,
                f"uses deprecated attribute {name}",
            )
            level, condition = _requirement(item)
            require(level in REQUIREMENT_LEVELS, where, f"{name}: unknown requirement level {level}")
            use = Use(
                id=name,
                requirement_level=level,
                condition=condition,
                brief=_text(item, "brief") or (local.brief if local else ""),
                note=_text(item, "note") or (local.note if local else ""),
                examples=_examples(item) or (local.examples if local else []),
                local=local,
            )
            out = [existing for existing in out if existing.id != name] + [use]
        return out

    spans: list[Signal] = []
    events: list[Signal] = []
    metrics: list[Signal] = []
    referenced: list[Use] = []
    # Spans first, then events, metrics and attribute groups: the order names are first used in.
    for file_name, raw in sorted(groups, key=lambda item: GROUP_ORDER.index(item[1]["type"])):
        where = f"{file_name}: {raw['id']}"
        if raw["type"] == "attribute_group":
            uses(raw, where)
            continue
        require(raw.get("stability") in STABILITIES, where, "needs a known `stability`")
        signal = Signal(
            id=raw["id"],
            type=raw["type"],
            brief=_text(raw, "brief"),
            note=_text(raw, "note"),
            stability=raw["stability"],
            name=raw["id"],
            constant="",
            attributes=uses(raw, where),
        )
        referenced.extend(signal.attributes)
        if raw["type"] == "span":
            require(bool(raw.get("span_kind")), where, "span needs `span_kind`")
            signal.span_kind = raw["span_kind"]
            spans.append(signal)
        elif raw["type"] == "event":
            require(bool(raw.get("name")), where, "event needs `name`")
            signal.name = raw["name"]
            signal.constant = "EVENT_" + constant_name(signal.name)
            events.append(signal)
        else:
            for key in ("metric_name", "instrument", "unit"):
                require(bool(raw.get(key)), where, f"metric needs `{key}`")
            require(raw["instrument"] in INSTRUMENTS, where, f"unknown instrument {raw['instrument']}")
            codegen = _codegen(raw)
            signal.name = raw["metric_name"]
            signal.constant = "METRIC_" + constant_name(signal.name)
            signal.instrument = raw["instrument"]
            signal.unit = str(raw["unit"])
            signal.value_type = str(codegen.get("metric_value_type") or "")
            signal.upstream = not signal.name.startswith(namespace)
            buckets = codegen.get("bucket_boundaries")
            if buckets is not None:
                require(
                    list(buckets) == sorted(set(buckets)) and len(buckets) > 0,
                    where,
                    "`bucket_boundaries` must be strictly increasing",
                )
                signal.buckets = tuple(buckets)
                signal.buckets_constant = "BUCKETS_" + constant_name(signal.name)
            metrics.append(signal)

    # Attribute groups in the order the signals first use their attributes, the rest in file order.
    first_use: dict[str, int] = {}
    for position, use in enumerate(referenced):
        if use.local is not None:
            first_use.setdefault(use.local.group, position)
    order = sorted(attribute_groups, key=lambda gid: first_use.get(gid, len(referenced)))
    registry = Registry(
        manifest=manifest,
        attribute_groups=[attribute_groups[gid] for gid in order],
        upstream=list(upstream.values()),
        spans=spans,
        events=events,
        metrics=metrics,
    )
    _check_constants(registry)
    return registry


def constants(registry: Registry) -> list[tuple[str, Any]]:
    """Every constant of the generated module, as ``(name, value)``, in module order."""
    out: list[tuple[str, Any]] = [(entry.constant, entry.id) for entry in registry.upstream]
    out += [(value.constant, value.value) for entry in registry.upstream for value in entry.values]
    for group in registry.attribute_groups:
        out += [(attribute.constant, attribute.id) for attribute in group.attributes]
        out += [(m.constant, m.value) for attribute in group.attributes for m in attribute.members]
    out += [(event.constant, event.name) for event in registry.events]
    for metric in registry.metrics:
        out.append((metric.constant, metric.name))
        if metric.buckets is not None:
            out.append((metric.buckets_constant, metric.buckets))
    return out


def _check_constants(registry: Registry) -> None:
    seen: dict[str, Any] = {}
    for name, value in constants(registry):
        require(name.isidentifier(), "constants", f"{name!r} is not a Python identifier")
        require(name not in seen, "constants", f"{name} defined twice: {seen.get(name)!r}, {value!r}")
        seen[name] = value
