"""Rule 6: telemetry names come from the registry. No quoted string starting with ``corevital.`` or
``gen_ai.`` may appear in Python code outside the generated constants module and the registry."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = (
    ROOT / "opentelemetry-instrumentation-corevital/src/opentelemetry/instrumentation/corevital/semconv.py"
)
# The registry, and the test that pins the registry's values for users who import them.
ALLOWED = {GENERATED, ROOT / "tests" / "repo" / "test_semconv_registry.py"}
HAND_WRITTEN_NAME = re.compile(r"""["'](?:corevital|gen_ai)\.""")
SKIPPED_DIRS = {".venv", ".tox", "semconv", "build", "dist", "node_modules", ".git"}


def python_files() -> list[Path]:
    files = []
    for path in ROOT.rglob("*.py"):
        if SKIPPED_DIRS & set(path.relative_to(ROOT).parts[:-1]):
            continue
        files.append(path)
    return files


def test_no_quoted_telemetry_names_outside_the_registry() -> None:
    offenders = []
    for path in python_files():
        if path in ALLOWED:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if HAND_WRITTEN_NAME.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == [], "use the generated constants (semconv.py) instead:\n" + "\n".join(offenders)


def test_the_check_sees_the_package_the_dashboards_and_the_examples() -> None:
    files = python_files()
    assert GENERATED in files and len(files) > 20
    scanned = {path.relative_to(ROOT).parts[0] for path in files}
    assert {"dashboards", "examples", "tests"} <= scanned
