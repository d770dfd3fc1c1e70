"""Write the JSON Schemas of the profile files from the pydantic models that validate them.

    python configs/generate_schemas.py            # (re)write configs/schema/*.schema.json
    python configs/generate_schemas.py --check    # exit 1 when a committed schema is stale

Editors that understand ``# yaml-language-server: $schema=...`` (the shipped model profiles carry
it) validate a profile while it is written; CoreVital validates it again when it loads it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from opentelemetry.instrumentation.corevital.profiles import json_schemas

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"


def render() -> dict[Path, str]:
    return {
        SCHEMA_DIR / name: json.dumps(schema, indent=2, sort_keys=True) + "\n"
        for name, schema in json_schemas().items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a committed schema is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render().items():
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(SCHEMA_DIR.parent.parent)}")
    extra = sorted(set(SCHEMA_DIR.glob("*.json")) - set(render()))
    if args.check and (stale or extra):
        for path in stale:
            print(f"stale: {path} (run python configs/generate_schemas.py)", file=sys.stderr)
        for path in extra:
            print(f"not produced by the generator: {path}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
