"""Reading the files a user points CoreVital at (model profiles, calibration profiles): safely, and
once per version of each file.

- Only a regular file is opened (a FIFO, a device or a directory named ``*.yaml`` is refused before
  it is opened, and the file is opened non-blocking), and only up to a size bound.
- Its nesting is bounded before it becomes Python objects: JSON by a linear scan of its brackets,
  YAML by a composer that counts its depth as it builds it and refuses aliases (a 364-byte
  "billion laughs" would otherwise expand to millions of nodes).
- What a file holds is built once per version of the file (:mod:`.file_cache`).
- Values shown in a warning are cut to a bounded length (:func:`short`), and repeated problems are
  counted (:func:`listed`), so no file can make a long warning.

Nothing here raises: a file that cannot be used gives an :class:`Unusable` reason, which the caller
turns into one warning naming the file.
"""

from __future__ import annotations

import json
import math
import os
import re
import reprlib
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.resolver import Resolver

#: Deepest nesting a profile file may have (the shipped ones need 4, calibration profiles 4).
MAX_DEPTH = 32
#: Largest model profile read (the shipped ones are under 3 KB).
MAX_PROFILE_BYTES = 256 * 1024
#: Largest calibration profile read (one of an 80-layer model is under 100 KB).
MAX_CALIBRATION_BYTES = 1024 * 1024
#: Most ``*.yaml`` files read from one profiles directory (the first by name).
MAX_PROFILE_FILES = 256
#: Longest value shown in a warning, in characters.
SHOWN_CHARS = 80

#: A file's version: size, modification time (ns), inode, device.
Version = tuple[int, int, int, int]


class Unusable(Exception):
    """Why a file cannot be used, worded to follow "ignoring <file>: " in a warning."""


class ProfileModel(BaseModel):
    """Base of every section of a profile file: unknown keys are refused, values are frozen and
    every number must be finite (NaN and infinities are refused). A new section derives from it
    and is validated, field by field, through the same path as the others."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# -- reading -------------------------------------------------------------------------------------
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _regular(path: str | Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "a special file")
        raise Unusable(f"it is {kind}, not a regular file")


def version_of(path: str | Path) -> Version:
    """The version of the regular file at ``path`` (:class:`Unusable` for anything else)."""
    try:
        info = os.stat(path)
    except (OSError, ValueError) as exc:
        raise Unusable(f"it cannot be read ({clip(_first_line(exc))})") from None
    _regular(path, info.st_mode)
    return (info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev)


def read_text(path: str | Path, max_bytes: int) -> str:
    """The UTF-8 text of the regular file at ``path``, at most ``max_bytes`` long.

    The file is checked before it is opened, opened non-blocking (a FIFO swapped in after the check
    cannot block) and checked again once open.
    """
    version_of(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        raise Unusable(f"it cannot be read ({clip(_first_line(exc))})") from None
    try:
        info = os.fstat(descriptor)
        _regular(path, info.st_mode)
        if info.st_size > max_bytes:
            raise Unusable(f"it is {info.st_size:,} bytes, more than the {max_bytes:,} allowed")
        with os.fdopen(descriptor, "rb", closefd=False) as stream:
            data = stream.read(max_bytes + 1)
    except OSError as exc:
        raise Unusable(f"it cannot be read ({clip(_first_line(exc))})") from None
    finally:
        os.close(descriptor)
    if len(data) > max_bytes:
        raise Unusable(f"it is more than the {max_bytes:,} bytes allowed")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Unusable("it cannot be read as UTF-8 text") from None


# -- parsing -------------------------------------------------------------------------------------
class _BoundedComposer(Composer):
    """PyYAML's composer, refusing aliases and counting its depth as it builds the document."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        parser: Any = self  # the parser's methods come from the class this is mixed into
        if parser.check_event(AliasEvent):
            event = parser.peek_event()
            name = getattr(event, "anchor", None) or "?"
            raise Unusable(f"it uses the YAML alias *{clip(str(name), 20)}; aliases are not allowed")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise Unusable(f"it nests deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _loader_class() -> type:
    """libyaml's parser when installed (several times faster), else PyYAML's own; the composer and
    the safe constructor are always PyYAML's, so the depth bound holds."""
    try:
        from yaml.cyaml import CParser  # type: ignore[attr-defined]

        class CLoader(_BoundedComposer, CParser, SafeConstructor, Resolver):
            def __init__(self, stream: str) -> None:
                CParser.__init__(self, stream)
                _BoundedComposer.__init__(self)
                SafeConstructor.__init__(self)
                Resolver.__init__(self)

        return CLoader
    except ImportError:  # pragma: no cover - PyYAML built without libyaml
        from yaml.parser import Parser
        from yaml.reader import Reader
        from yaml.scanner import Scanner

        class PyLoader(Reader, Scanner, Parser, _BoundedComposer, SafeConstructor, Resolver):
            def __init__(self, stream: str) -> None:
                Reader.__init__(self, stream)
                Scanner.__init__(self)
                Parser.__init__(self)
                _BoundedComposer.__init__(self)
                SafeConstructor.__init__(self)
                Resolver.__init__(self)

        return PyLoader


_LOADER = _loader_class()


def parse_yaml(text: str) -> Any:
    """The one YAML document in ``text`` (``None`` when empty), built with the safe constructor."""
    loader = _LOADER(text)
    try:
        return loader.get_single_data()
    except Unusable:
        raise
    except yaml.YAMLError as exc:
        raise Unusable(f"it cannot be read as YAML ({_yaml_problem(exc)})") from None
    except (ValueError, TypeError, RecursionError) as exc:  # e.g. an integer of 5,000 digits
        raise Unusable(f"it cannot be read as YAML ({clip(_first_line(exc))})") from None
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What PyYAML found wrong, and where: ``did not find expected ',' or ']' (line 2)``."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or _first_line(exc)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" (line {mark.line + 1})" if mark is not None else ""
    return clip(str(problem)) + where


# A JSON string (to the closing quote, or to the end of an unterminated one) or a bracket. The two
# branches of the loop never match the same text and whatever ends it is accepted, so nothing is
# ever tried twice: the scan is linear whatever the text.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)|[\[\]{}]', re.S)


def json_too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON ``text`` nests deeper than ``limit`` (brackets inside strings don't count).

    >>> json_too_deep('{"a": [[1]], "b": "[[[["}', limit=3)
    False
    >>> json_too_deep("[" * 40 + "]" * 40, limit=32)
    True
    """
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        first = text[token.start()]
        if first in "[{":
            depth += 1
            if depth > limit:
                return True
        elif first in "]}":
            depth -= 1
    return False


def parse_json(text: str) -> Any:
    """The JSON value in ``text``, its depth checked before it is parsed."""
    if json_too_deep(text):
        raise Unusable(f"it nests deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, or an integer of 5,000 digits
        raise Unusable(f"it is not valid JSON ({clip(_first_line(exc))})") from None


def first_non_finite(value: Any, where: str = "") -> str | None:
    """The location (``a.b.0``) of the first NaN or infinite number in ``value``, else ``None``."""
    stack: list[tuple[str, Any]] = [(where, value)]
    while stack:
        location, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return location or "(value)"
        if isinstance(item, dict):
            children: Iterable[tuple[Any, Any]] = item.items()
        elif isinstance(item, list | tuple):
            children = enumerate(item)
        else:
            continue
        stack.extend(reversed([(f"{location}.{key}" if location else str(key), c) for key, c in children]))
    return None


# -- short text ----------------------------------------------------------------------------------
_REPR = reprlib.Repr()
_REPR.maxstring = SHOWN_CHARS
_REPR.maxother = SHOWN_CHARS
_REPR.maxlong = 40
_REPR.maxlevel = 2
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = 4


def short(value: Any) -> str:
    """``repr(value)``, cut to about :data:`SHOWN_CHARS` characters without building the whole repr.

    >>> short("x" * 1000)[:12], len(short("x" * 1000)) <= SHOWN_CHARS
    ("'xxxxxxxxxxx", True)
    >>> short(list(range(100)))
    '[0, 1, 2, 3, ...]'
    """
    try:
        return clip(_REPR.repr(value))
    except Exception:  # a hostile __repr__ cannot reach a profile (safe constructor), but be sure
        return f"<{type(value).__name__}>"


def clip(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters (with "…"), its control characters escaped."""
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text[: limit * 4])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def listed(items: Sequence[Any], shown: int = 3) -> str:
    """The first ``shown`` items (:func:`short`) and how many more: ``'a', 'b', 'c' and 7 more``.

    >>> listed(["a"]), listed(["a", "b", "c", "d", "e"])
    ("'a'", "'a', 'b', 'c' and 2 more")
    """
    text = ", ".join(short(item) for item in items[:shown])
    rest = len(items) - shown
    return f"{text} and {rest:,} more" if rest > 0 else text


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def validation_problem(exc: ValidationError) -> str:
    """The first problem pydantic found (location and message), and how many more there are."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    error = errors[0]
    where = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    text = clip(f"{where}: {message}" if where else message, 200)
    return text + (f" (and {len(errors) - 1:,} more problems)" if len(errors) > 1 else "")
