r"""TraceQL's rules for string literals, from Tempo's lexer (``pkg/traceql/lexer.go``): Go's
``text/scanner`` reads a ``"…"`` string or a backtick raw string and ``strconv.Unquote`` decodes it.
Tempo's documentation promises only ``\"`` and ``\\`` as escapes in a double-quoted string, so that
is what these checks allow there (a subset of what ``strconv.Unquote`` accepts; Grafana's regex
escapes ``\.`` and ``\/`` fail both); a raw string takes every character but a backtick and a
newline, and has no escapes.

>>> problems('"Qwen2\\.5"')
['"Qwen2\\.5": \\. is not an escape TraceQL accepts in a double-quoted string (only \\" and \\\\)']
>>> problems('`Qwen2\\.5`'), value('`Qwen2\\.5`'), value('"say \\"hi\\""')
([], 'Qwen2\\.5', 'say "hi"')
"""

from __future__ import annotations

DOUBLE_QUOTED_ESCAPES = {'"', "\\"}


def problems(literal: str) -> list[str]:
    """What is wrong with one string literal as TraceQL's lexer reads it (empty when it is fine)."""
    if len(literal) < 2 or literal[0] != literal[-1] or literal[0] not in '"`':
        return [f"{literal}: not a TraceQL string literal"]
    body = literal[1:-1]
    if "\n" in body:
        return [f"{literal}: a newline inside a string"]
    if literal[0] == "`":
        return [f"{literal}: a backtick inside a raw string"] if "`" in body else []
    found, index = [], 0
    while index < len(body):
        char = body[index]
        if char == '"':
            found.append(f"{literal}: an unescaped double quote inside the string")
        elif char == "\\":
            following = body[index + 1 : index + 2]
            if following not in DOUBLE_QUOTED_ESCAPES:
                found.append(
                    f"{literal}: \\{following} is not an escape TraceQL accepts in a double-quoted string "
                    '(only \\" and \\\\)'
                )
            index += 1
        index += 1
    return found


def value(literal: str) -> str:
    """The string a valid literal stands for."""
    body = literal[1:-1]
    if literal[0] == "`":
        return body
    out, index = [], 0
    while index < len(body):
        if body[index] == "\\":
            index += 1
        out.append(body[index])
        index += 1
    return "".join(out)
