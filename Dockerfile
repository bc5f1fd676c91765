# Lifeguard as a container: the agent is PID 1 (it handles SIGTERM and SIGINT itself), runs as the
# non-root user `lifeguard`, reads /etc/lifeguard/config.yaml and keeps its state in the volume at
# /var/lib/lifeguard.
#
#   docker build -t lifeguard .
#
# BASE is any image with Python >= 3.11 and its venv module (Debian's python3 + python3-venv works).
# For a build without the package index, put wheels of every dependency (and setuptools) in ./wheels
# (`pip download --only-binary=:all: -d wheels ...` on a machine that has the index): the first stage
# then builds from them with --no-index.
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
COPY . /src
RUN set -eu; \
    python3 -m venv /build; \
    if ls /src/wheels/*.whl >/dev/null 2>&1; then set -- --no-index --find-links /src/wheels; else set --; fi; \
    /build/bin/python -m pip wheel -q --disable-pip-version-check --wheel-dir /wheels "$@" /src; \
    mkdir -p /etc/lifeguard; \
    sed -E 's#^([[:space:]]*state_dir:)[[:space:]]*\./state([[:space:]].*)?$#\1 /var/lib/lifeguard#' \
      /src/config.yaml >/etc/lifeguard/config.yaml; \
    grep -q 'state_dir: /var/lib/lifeguard$' /etc/lifeguard/config.yaml

FROM ${BASE}
COPY --from=build /wheels /tmp/wheels
RUN set -eu; \
    python3 -m venv /opt/lifeguard; \
    /opt/lifeguard/bin/python -m pip install -q --disable-pip-version-check --no-index --find-links /tmp/wheels lifeguard; \
    rm -rf /tmp/wheels /root/.cache; \
    ln -s /opt/lifeguard/bin/lifeguard /usr/local/bin/lifeguard; \
    groupadd --system lifeguard; \
    useradd --system --gid lifeguard --home-dir /var/lib/lifeguard --no-create-home --shell /usr/sbin/nologin lifeguard; \
    install -d -m 0700 -o lifeguard -g lifeguard /var/lib/lifeguard
COPY --from=build /etc/lifeguard/config.yaml /etc/lifeguard/config.yaml
VOLUME /var/lib/lifeguard
USER lifeguard
WORKDIR /var/lib/lifeguard
ENV PYTHONUNBUFFERED=1
# `lifeguard status` asks the agent's /health (its address and token from the config): 0 while it serves.
HEALTHCHECK --interval=30s --timeout=10s --start-period=15s --retries=3 \
    CMD ["lifeguard", "status", "-c", "/etc/lifeguard/config.yaml"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["lifeguard"]
CMD ["run", "-c", "/etc/lifeguard/config.yaml"]
