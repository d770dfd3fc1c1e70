"""CoreVital's Grafana dashboards as code (grafana-foundation-sdk), built by ``dashboards/build.py``.

A build-time tool: it needs Python >= 3.11 and ``grafana-foundation-sdk~=0.0.21`` (``tox -e
dashboards``) and is not a dependency of the instrumentation package.
"""

import warnings

# The SDK's classic (v1) dashboard module warns on import that a v2 schema exists; the v1 JSON is
# what file provisioning and dashboard import accept everywhere, so it is the one we build.
warnings.filterwarnings(
    "ignore", category=DeprecationWarning, module=r"grafana_foundation_sdk\.(builders|models)\.dashboard"
)
