# syntax=docker/dockerfile:1
# Kiln: one image for every process (gateway, scheduler, run worker, develop
# server). Build: docker build -t ghcr.io/kiln-platform/kiln:0.1.0 .

# -- build: a wheel of this repository, installed with its dependencies in a venv
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m pip install --upgrade pip build
COPY pyproject.toml README.md ./
COPY server ./server
COPY graph ./graph
COPY ide_broker ./ide_broker
RUN python -m build --wheel --outdir /dist .
RUN python -m venv /opt/kiln \
 && /opt/kiln/bin/pip install /dist/*.whl

# -- runtime: slim Python, git (projects are git checkouts), a non-root user
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates openssh-client \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 kiln \
 && useradd --uid 10001 --gid 10001 --home-dir /home/kiln --create-home --shell /usr/sbin/nologin kiln \
 && mkdir -p /var/lib/kiln \
 && chown 10001:10001 /var/lib/kiln
COPY --from=build /opt/kiln /opt/kiln
# the bundled demo project (kiln up --demo)
COPY examples /opt/kiln/examples
ENV PATH=/opt/kiln/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false \
    KILN_EXAMPLES_DIR=/opt/kiln/examples \
    KILN_DATA_DIR=/var/lib/kiln
USER 10001
WORKDIR /home/kiln
EXPOSE 8580 8581 8765
ENTRYPOINT ["kiln"]
CMD ["gateway"]
