# syntax=docker/dockerfile:1
# One image for every keventing service; the command picks the service:
#   docker run keventing receiver | dispatcher | controller | sources | event-display
# The image holds the `kev` CLI too (`docker run --rm keventing get brokers`).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Every dependency ships manylinux wheels for CPython 3.11, so the slim image needs no compiler.
RUN python -m venv /opt/keventing
COPY pyproject.toml README.md ./
COPY kev ./kev
COPY keventing ./keventing
COPY receiver ./receiver
COPY dispatcher ./dispatcher
COPY controller ./controller
COPY sources ./sources
RUN /opt/keventing/bin/pip install .

FROM python:3.11-slim
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
# No HEALTHCHECK: the services listen on different ports. docker-compose.yml and the Helm chart
# probe each one's /readyz (ready) and /healthz (alive).
ENTRYPOINT ["kev"]
CMD ["receiver"]
