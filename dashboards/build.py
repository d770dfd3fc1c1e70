"""Build CoreVital's Grafana dashboards from code.

    python dashboards/build.py            # (re)write dashboards/json/*.json and the datasource provisioning
    python dashboards/build.py --check    # exit 1, with a diff, when a committed file is stale or extra

The dashboards are Python (``dashboards/corevital_dashboards/``, grafana-foundation-sdk); every metric
and attribute name comes from the semantic-convention registry, so a renamed metric breaks this build
rather than a user's dashboard. Needs Python >= 3.11 with ``grafana-foundation-sdk~=0.0.21``, PyYAML
and Jinja2 (``tox -e dashboards`` has them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corevital_dashboards.render import render_all, stale, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed files, write nothing"
    )
    args = parser.parse_args(argv)
    rendered = render_all()
    if args.check:
        problems = stale(rendered)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("dashboards are stale: run `python dashboards/build.py`", file=sys.stderr)
            return 1
        print(f"{len(rendered)} generated files are up to date")
        return 0
    write(rendered)
    for path in rendered:
        print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
