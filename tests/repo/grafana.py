"""What Grafana does to our dashboards' text before a query leaves it, re-implemented in Python from
Grafana's documentation and source (read, not copied), so that the tests send exactly what Grafana
would send:

- dashboard variables: the ``$var`` / ``${var}`` / ``${var:format}`` / ``[[var]]`` syntax, the
  value of a multi-value or "All" variable (a custom all value is inserted unformatted), and the
  formats ``regex``, ``pipe``, ``csv``, ``glob`` (the default), ``raw``, ``text``, ``queryparam``,
  ``percentencode``, ``doublequote``, ``singlequote``, ``json``, ``distributed``
  (grafana/scenes ``formatRegistry``, ``sceneInterpolator``, ``MultiValueVariable``);
- the Prometheus data source's own escaping of bare ``$var`` (``interpolateQueryExpr``: a
  multi-value or "All"-able variable is regex-escaped for a double-quoted PromQL string, backslash
  doubled; any other is only string-escaped), with and without the
  ``prometheusSpecialCharsInLabelValues`` feature toggle;
- the Tempo data source (``pipe`` is its default format) and data links (``percentencode``);
- provisioning files: ``$$`` is a literal ``$``, then ``${VAR}`` / ``$__env{VAR}`` / ``$__file{…}``
  expanders, then Go's ``os.ExpandEnv`` (``$VAR``, ``${VAR}``, unset = empty);
- the ``$__tags`` macro of trace-to-metrics links (``label="value"`` joined by ``, ``).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ALL_VALUE = "$__all"
ALL_TEXT = "All"
# $var | [[var]] / [[var:fmt]] | ${var} / ${var.fieldPath} / ${var:fmt}  (Grafana's VARIABLE_REGEX)
VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")

Value = str | list[str]


@dataclass(frozen=True)
class CustomAll:
    """A custom all value (``allValue``): inserted as is, whatever the format (but ``text``)."""

    value: str


@dataclass
class Variable:
    """A dashboard variable as Grafana holds it: its current value(s) and its options."""

    name: str
    current: Value  # ALL_VALUE (or [ALL_VALUE]) when "All" is selected
    options: Sequence[str] = ()
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None
    texts: Mapping[str, str] = field(default_factory=dict)
    skip_formatting: bool = False  # a macro that formats itself (``$__url_time_range``)

    def selects_all(self) -> bool:
        return self.current == ALL_VALUE or (
            isinstance(self.current, list) and self.current[:1] == [ALL_VALUE]
        )

    def value(self) -> Value | CustomAll:
        """``getValue()``: the custom all value, every option for "All", else the selection."""
        if self.selects_all():
            return CustomAll(self.all_value) if self.all_value else list(self.options)
        return self.current

    def text(self) -> str:
        if self.selects_all():
            return ALL_TEXT
        values = self.current if isinstance(self.current, list) else [self.current]
        return " + ".join(self.texts.get(v, v) for v in values)

    def url_values(self) -> list[str]:
        """What the variable puts into the URL (its state, ``$__all`` for All)."""
        return list(self.current) if isinstance(self.current, list) else [self.current]


def scoped(name: str, value: str) -> Variable:
    """A scoped variable (``$__rate_interval``, ``$__range``, a data link's ``__value``): one value."""
    return Variable(name, value)


def macro(name: str, value: str) -> Variable:
    """A macro whose value skips formatting (``$__url_time_range`` is ``from=…&to=…`` as is)."""
    return Variable(name, value, skip_formatting=True)


# --- formats -------------------------------------------------------------------------------------

_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")  # @grafana/data escapeRegex


def escape_regex(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def encode_uri_component_strict(value: str) -> str:
    """JavaScript's encodeURIComponent, with ``!'()*`` encoded too (RFC 3986)."""
    return urllib.parse.quote(value, safe="-_.~")


def _angular_encode(value: str) -> str:
    """Grafana's ``toUrlParams`` encoding: encodeURIComponent, then ``@ : $ , ;`` kept, ``!'()*`` encoded."""
    encoded = urllib.parse.quote(value, safe="-_.!~*'()")
    for code, char in (("%40", "@"), ("%3A", ":"), ("%24", "$"), ("%2C", ","), ("%3B", ";")):
        encoded = re.sub(code, char, encoded, flags=re.IGNORECASE)
    return re.sub(r"[!'()*]", lambda m: f"%{ord(m.group(0)):X}", encoded)


def _listed(value: Value) -> list[str]:
    return value if isinstance(value, list) else [value]


def _regex(value: Value, variable: Variable) -> str:
    escaped = [escape_regex(v) for v in _listed(value)]
    return escaped[0] if isinstance(value, str) or len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def _quoted(quote: str) -> Callable[[Value, Variable], str]:
    def format_value(value: Value, variable: Variable) -> str:
        return ",".join(quote + v.replace(quote, "\\" + quote) + quote for v in _listed(value))

    return format_value


def _queryparam(value: Value, variable: Variable) -> str:
    # scene variables format from their URL state (``var-<name>=<value>`` per value)
    return "&".join(
        f"{_angular_encode('var-' + variable.name)}={_angular_encode(v)}" for v in variable.url_values()
    )


FORMATS: dict[str, Callable[[Value, Variable], str]] = {
    "raw": lambda value, variable: ",".join(_listed(value)),
    "regex": _regex,
    "pipe": lambda value, variable: "|".join(_listed(value)),
    "csv": lambda value, variable: ",".join(_listed(value)),
    "glob": lambda value, variable: (
        "{" + ",".join(value) + "}"
        if isinstance(value, list) and len(value) > 1
        else ",".join(_listed(value))
    ),
    "text": lambda value, variable: variable.text(),
    "queryparam": _queryparam,
    "percentencode": lambda value, variable: encode_uri_component_strict(
        "{" + ",".join(value) + "}" if isinstance(value, list) else value
    ),
    "doublequote": _quoted('"'),
    "singlequote": _quoted("'"),
    "json": lambda value, variable: (
        value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    ),
    "distributed": lambda value, variable: ",".join(
        v if i == 0 else f"{variable.name}={v}" for i, v in enumerate(_listed(value))
    ),
}

FormatFunction = Callable[[Value, Variable], str]
Format = str | FormatFunction | None


def format_value(variable: Variable, format_id: Format) -> str:
    value = variable.value()
    if variable.skip_formatting:
        return ",".join(_listed(variable.current))
    if isinstance(value, CustomAll):
        # CustomAllValue.formatter: the text for `text`, the URL state for `queryparam`, else as is
        if format_id == "text":
            return ALL_TEXT
        if format_id == "queryparam":
            return _queryparam(value.value, variable)
        if format_id == "percentencode":
            return encode_uri_component_strict(value.value)
        return value.value
    if callable(format_id):
        return format_id(value, variable)
    name = (format_id or "glob").split(":")[0]
    if name not in FORMATS:
        raise KeyError(f"format {name!r} is not one Grafana knows (it would fall back to glob)")
    return FORMATS[name](value, variable)


def used_variables(text: str) -> set[str]:
    """The names of the variables ``text`` refers to."""
    return {m.group(1) or m.group(2) or m.group(4) for m in VARIABLE.finditer(text)}


def interpolate(text: str, variables: Mapping[str, Variable], format_id: Format = None) -> str:
    """``templateSrv.replace(text, scopedVars, format)``; an unknown variable is an error here
    (Grafana would leave it in the query)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        explicit = match.group(3) or match.group(6)
        field_path = match.group(5)
        key = f"{name}.{field_path}" if field_path else name
        if key not in variables:
            raise KeyError(f"no value for {match.group(0)} in {text!r}")
        return format_value(variables[key], explicit or format_id)

    return VARIABLE.sub(replace, text)


# --- data sources ----------------------------------------------------------------------------------


def prometheus_regular_escape(value: str, special_chars: bool = False) -> str:
    if special_chars:
        if re.match(r'^\w+(=|!=|=~|!~)".*"$', value):
            return value
        return value.replace("\\", "\\\\").replace('"', '\\"')
    return value.replace("\\", "\\\\").replace("'", "\\\\'")


def prometheus_special_regex_escape(value: str, special_chars: bool = False) -> str:
    value = value.replace("\\", "\\\\\\\\")
    if special_chars:
        value = value.replace('"', '\\\\\\"')
        return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value)
    return re.sub(r"[$^*{}\[\]+?.()|]", lambda m: "\\\\" + m.group(0), value)


def prometheus_format(special_chars: bool = False) -> FormatFunction:
    """The Prometheus data source's ``interpolateQueryExpr`` (its default format)."""

    def interpolate_query_expr(value: Value, variable: Variable) -> str:
        if not variable.multi and not variable.include_all:
            return ",".join(prometheus_regular_escape(v, special_chars) for v in _listed(value))
        escaped = [prometheus_special_regex_escape(v, special_chars) for v in _listed(value)]
        return escaped[0] if isinstance(value, str) or len(escaped) == 1 else "(" + "|".join(escaped) + ")"

    return interpolate_query_expr


def prometheus(text: str, variables: Mapping[str, Variable], special_chars: bool = False) -> str:
    """A PromQL expression (panel, variable query, annotation) as the Prometheus data source sends it."""
    return interpolate(text, variables, prometheus_format(special_chars))


def tempo(text: str, variables: Mapping[str, Variable]) -> str:
    """A TraceQL query as the Tempo data source sends it (``pipe`` by default)."""
    return interpolate(text, variables, "pipe")


def data_link(url: str, variables: Mapping[str, Variable]) -> str:
    """A data link's URL as Grafana opens it (``percentencode`` by default)."""
    return interpolate(url, variables, "percentencode")


def tags_macro(query: str, tags: Sequence[Mapping[str, str]], span_attributes: Mapping[str, Any]) -> str:
    """A trace-to-metrics query with ``$__tags`` replaced by the span's mapped tags."""
    labels = [
        f'{tag.get("value") or tag["key"]}="{span_attributes[tag["key"]]}"'
        for tag in tags
        if span_attributes.get(tag["key"])
    ]
    return query.replace("$__tags", ", ".join(labels)) if tags and "$__tags" in query else query


# --- provisioning files ---------------------------------------------------------------------------

_EXPANDER = re.compile(r"\$(|__\w+)\{([^}]+)\}")
_SHELL_SPECIAL = set("*#$@!?-0123456789")


def _shell_name(s: str) -> tuple[str, int]:
    """Go's ``os.getShellName``: the name after a ``$`` and how many bytes it takes."""
    if s[0] == "{":
        if len(s) > 2 and s[1] in _SHELL_SPECIAL and s[2] == "}":
            return s[1], 3
        for i in range(1, len(s)):
            if s[i] == "}":
                return ("", 2) if i == 1 else (s[1:i], i + 1)
        return "", 1
    if s[0] in _SHELL_SPECIAL:
        return s[0], 1
    i = 0
    while i < len(s) and (s[i] == "_" or (s[i].isascii() and s[i].isalnum())):
        i += 1
    return s[:i], i


def go_expand_env(s: str, env: Mapping[str, str]) -> str:
    """Go's ``os.ExpandEnv`` with ``env`` as the environment."""
    out, i, j = [], 0, 0
    while j < len(s):
        if s[j] == "$" and j + 1 < len(s):
            out.append(s[i:j])
            name, width = _shell_name(s[j + 1 :])
            if name == "" and width > 0:
                pass  # bad syntax: eaten
            elif name == "":
                out.append("$")
            else:
                out.append(env.get(name, ""))
            j += width
            i = j + 1
        j += 1
    return "".join(out) + s[i:]


def provisioning_value(value: str, env: Mapping[str, str], files: Mapping[str, str] | None = None) -> str:
    """One string of a provisioning file as Grafana reads it (``interpolateValue``)."""
    files = files or {}

    def expander(match: re.Match[str]) -> str:
        kind, argument = match.group(1), match.group(2)
        if kind in ("", "__env"):
            return env.get(argument, "")
        if kind == "__file":
            return files[argument].strip()
        return match.group(0)  # an expander Grafana does not have here (e.g. $__vault)

    parts = [go_expand_env(_EXPANDER.sub(expander, part), env) for part in value.split("$$")]
    return "$".join(parts)


def provisioning_document(node: Any, env: Mapping[str, str]) -> Any:
    """Every string value of a provisioning document, expanded (keys are not)."""
    if isinstance(node, str):
        return provisioning_value(node, env)
    if isinstance(node, dict):
        return {key: provisioning_document(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [provisioning_document(value, env) for value in node]
    return node
