# syntax=docker/dockerfile:1
# keda-llm-scaler: build a wheel, then install it into a slim runtime that has no build tools.
#
#   docker build -t keda-llm-scaler:0.1.0 .
#
# The image runs as a non-root numeric user and writes nothing at run time, so it works with a
# read-only root filesystem. Settings come from SCALER_* environment variables (README).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scaler ./scaler
# Our wheel and one for every runtime dependency, so the runtime stage installs with --no-index.
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# pip compiles the bytecode at install time, so nothing is written at run time. Then pip, setuptools
# and wheel go: the final image cannot install or build anything.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/keda_llm_scaler-*.whl \
    && pip uninstall --yes pip setuptools wheel
USER 65532:65532
WORKDIR /
# OTLP/gRPC, OTLP/HTTP, KEDA ExternalScaler (gRPC, with gRPC health), ops HTTP.
EXPOSE 4317 4318 6000 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SCALER_HTTP_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["keda-llm-scaler", "serve"]
