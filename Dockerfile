# syntax=docker/dockerfile:1
# Ponder's image: one virtualenv holding the operator (ponder-operator), the router
# (ponder-router) and the offline CLI (ponder), on a slim Python base, run as UID 65532.
# Every `ponder` subcommand runs here; the `tools` extra (matplotlib) is left out to keep the
# pods' image small, so `ponder simulate` and `ponder evaluate` write their JSON without the
# PNG plot (install `ponder[tools]` elsewhere for plots).
#
#   docker build -t ghcr.io/ponder-dev/ponder:0.1.0 .                   # the chart's image
#   docker build --target operator -t ghcr.io/ponder-dev/ponder-operator:0.1.0 .
#   docker build --target router -t ghcr.io/ponder-dev/ponder-router:0.1.0 .
#
# The chart runs the default image with an explicit command (ponder-operator for the
# operator, ponder-router for the routers the operator creates); the operator and router
# targets carry the matching ENTRYPOINT for use without Kubernetes.
#
# The base is python:3.11-slim pinned by the digest of its multi-platform index as recorded
# by docker-library/repo-info (repos/python/remote/3.11-slim.md: Python 3.11.15 on Debian
# trixie). No container engine runs where this file was written, so the digest has not been
# pulled here; refresh it with `docker buildx imagetools inspect python:3.11-slim`.

FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/ponder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY router/ router/
COPY tools/ tools/
# Every dependency comes as a wheel: no compiler in the image.
RUN /opt/ponder/bin/pip install --no-cache-dir --only-binary=:all: --no-binary=ponder . \
    && /opt/ponder/bin/python -c "import ponder_operator.main, ponder_router.main, ponder_tools.cli" \
    && /opt/ponder/bin/ponder --help >/dev/null

FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff AS runtime
LABEL org.opencontainers.image.title="ponder" \
      org.opencontainers.image.description="Reasoning LLM serving on Kubernetes: operator, router and CLI" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/ponder/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=builder /opt/ponder /opt/ponder
# Non-root, matching the chart's runAsUser; the root filesystem is mounted read-only.
USER 65532:65532
WORKDIR /tmp

FROM runtime AS operator
ENTRYPOINT ["ponder-operator"]

FROM runtime AS router
EXPOSE 8080
ENTRYPOINT ["ponder-router"]

# The default target: both entry points, chosen by the pod's command.
FROM runtime AS ponder
CMD ["ponder", "--help"]
