"""The inputs of ``corevital calibrate``, checked before anything is loaded: the model folder, the
prompts file, the output path, and the runs an interrupted calibration saved.

Every problem is a :class:`BadInput` whose message names it in one line; the command prints that
line and exits with status 2 (argparse's convention for bad input), never a traceback.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from .signals.risk import RISK_FEATURES


class BadInput(Exception):
    """Input the command cannot work with; the message names it (printed as one line, exit 2)."""


def read_prompts(path: str | Path, option: str = "--prompts") -> list[dict[str, Any]]:
    """Prompts from a JSON-lines file (``prompt`` and optional ``chat``) or one per text line."""
    return parse_prompts(path, read_prompts_file(path, option), option)


def read_prompts_file(path: str | Path, option: str) -> bytes:
    """The bytes of the prompts file, or :class:`BadInput` naming what is wrong with it."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise BadInput(f"{option} {path}: no such file") from None
    except OSError as exc:
        raise BadInput(f"{option} {path}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise BadInput(f"{option} {path} is a folder, not a prompts file")
    if not stat.S_ISREG(info.st_mode):
        raise BadInput(f"{option} {path} is not a regular file")
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise BadInput(f"{option} {path}: cannot be read ({exc.strerror or exc})") from None


def parse_prompts(path: str | Path, data: bytes, option: str) -> list[dict[str, Any]]:
    if b"\x00" in data:
        raise BadInput(f"{option} {path} is a binary file, not text (it holds NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"{option} {path} is not UTF-8 text (byte {exc.start}); is it a binary file?"
        ) from None
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        if text.startswith("{"):
            try:
                row = json.loads(text)
            except (ValueError, RecursionError) as exc:
                reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
                raise BadInput(f"{path}:{number}: not valid JSON ({reason})") from None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                raise BadInput(f"{path}:{number}: a JSON line needs a string 'prompt'")
            prompts.append(
                {"prompt": row["prompt"], "chat": bool(row.get("chat", False)), "label": row.get("label")}
            )
        else:
            prompts.append({"prompt": text, "chat": False})
    if not prompts:
        raise BadInput(f"{option} {path}: no prompts")
    return prompts


def resume_key(prompts: bytes, model: str, gguf_file: str | None, max_new_tokens: int) -> str:
    """What a saved run was made from: the prompts file's content, the model, the token limit.
    A run saved with another key is generated again."""
    digest = hashlib.sha256(prompts)
    digest.update(json.dumps([model, gguf_file, max_new_tokens]).encode())
    return digest.hexdigest()[:32]


def done_runs(partial: Path, key: str, prompts: int) -> dict[int, dict[str, Any]]:
    """The runs an interrupted calibration already saved, by prompt index: those made from the same
    prompts file, model and token limit (``key``) by a version with the same risk features. The
    file is rewritten without the others, which are generated again."""
    done: dict[int, dict[str, Any]] = {}
    dropped = 0
    if partial.exists():
        for line in partial.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
                index = int(row["index"])
            except (ValueError, KeyError, TypeError, RecursionError):
                continue  # a line cut by an interruption
            if (
                row.get("key") != key
                or not 0 <= index < prompts
                or ("features" in row and len(row["features"]) != len(RISK_FEATURES))
            ):
                dropped += 1
                continue
            done[index] = row
        if dropped:
            print(
                f"corevital calibrate: {dropped} saved run(s) in {partial} came from other prompts, another "
                "model or another --max-new-tokens (or an older version): generating them again",
                file=sys.stderr,
            )
            partial.write_text("".join(json.dumps(row) + "\n" for row in done.values()), encoding="utf-8")
    return done


def _looks_like_a_path(model: str) -> bool:
    """A ``--model`` that names a folder rather than a hub id (``name`` or ``org/name``)."""
    return (
        model.startswith(("/", "./", "../", "~", ".\\"))
        or model.endswith(("/", os.sep))
        or model.count("/") > 1
        or (os.sep != "/" and os.sep in model)
    )


def check_arguments(args: argparse.Namespace) -> None:
    """Every file and folder the command needs, checked before the model is loaded
    (:class:`BadInput` names the first problem)."""
    if args.state_features and not args.labels:
        raise BadInput("--state-features refits the risk score: it needs --labels")
    model = Path(args.model).expanduser()
    if model.exists():
        if not model.is_dir():
            hint = f" (for a GGUF file: --model {model.parent} --gguf-file {model.name})"
            raise BadInput(
                f"--model {args.model} is a file, not a model folder"
                + (hint if model.suffix == ".gguf" else "")
            )
        if args.gguf_file and not (model / args.gguf_file).is_file():
            raise BadInput(f"--gguf-file {args.gguf_file}: no such file in {args.model}")
        if not args.gguf_file and not (model / "config.json").is_file():
            raise BadInput(
                f"--model {args.model}: no config.json in this folder (a GGUF model needs --gguf-file)"
            )
    elif _looks_like_a_path(args.model):
        raise BadInput(f"--model {args.model}: no such folder")
    out = Path(args.out).expanduser()
    if out.is_dir():
        raise BadInput(f"--out {args.out} is a folder; give the path of the file to write")
    folder = out.parent
    if not folder.is_dir():
        raise BadInput(f"--out {args.out}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise BadInput(f"--out {args.out}: cannot write in {folder}")
