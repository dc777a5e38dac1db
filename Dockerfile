# syntax=docker/dockerfile:1
# One image for every keventing service; the command picks the service:
#   docker run keventing receiver | dispatcher | controller | sources | event-display
# The image holds the `kev` CLI too (`docker run --rm keventing get brokers`).
#
# BASE_IMAGE is any Debian-like image with Python 3.11 as `python3` and its venv module: the public
# python:3.11-slim by default; `make e2e` passes a Debian bookworm it builds itself (no registry there).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Every dependency ships manylinux wheels for CPython 3.11, so the slim image needs no compiler.
RUN python3 -m venv /opt/keventing
COPY pyproject.toml ./
# The dependencies in a layer of their own: a change to the sources reinstalls only the project.
RUN /opt/keventing/bin/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" >/tmp/requirements.txt \
    && /opt/keventing/bin/pip install -r /tmp/requirements.txt
COPY README.md ./
COPY kev ./kev
COPY keventing ./keventing
COPY receiver ./receiver
COPY dispatcher ./dispatcher
COPY controller ./controller
COPY sources ./sources
RUN /opt/keventing/bin/pip install . --no-deps \
    && /opt/keventing/bin/pip uninstall --yes pip

# The final stage has no compiler, no pip and no sources: the venv and the examples only.
FROM ${BASE_IMAGE}
ENV PATH=/opt/keventing/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KEVENTING_HTTP_HOST=0.0.0.0
RUN groupadd --system --gid 10001 keventing \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home keventing
COPY --from=build /opt/keventing /opt/keventing
WORKDIR /app
# The quickstart resources, so that `kev apply -f examples/...` works inside the container.
COPY examples ./examples
USER 10001:10001
# receiver, dispatcher, controller, sources, event-display (only the one the command starts listens).
EXPOSE 8080 8090 8091 8092 8081
# Probes /healthz on the port of whichever service PID 1 runs (its settings, or event-display's --port);
# other commands (`kev get ...`) count as healthy. docker-compose.yml probes /readyz, the chart both.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["python", "-m", "kev.healthcheck"]
# kev is PID 1 (exec form) and stops on SIGTERM: the services handle it (keventing.ops.run_forever).
ENTRYPOINT ["kev"]
CMD ["receiver"]
