# The image schedulers run: the tflm-pipelines CLI, its pinned dependencies and the
# patch-stage kernels' host build, as a non-root user.
#
#   docker build -t tflm-pipelines .
#   docker run -v "$PWD/runs:/app/runs" tflm-pipelines                  # the default KWS job
#   docker run tflm-pipelines run configs/kws.yaml --tracking-uri http://mlflow:5000
#
# With no image registry (a plain Debian base made by debootstrap) and a proxy's CA, as on
# the project's build machines: deploy/build_image.sh does every step, then runs the image.
ARG BASE=python:3.11-slim-bookworm

# ---- build: a venv with the pinned dependencies, the project, the compiled kernels ----
FROM ${BASE} AS build
# A python:* base brings its own Python; a plain Debian base gets bookworm's 3.11.
RUN set -eux; \
    packages="g++"; \
    command -v python3 >/dev/null || packages="$packages python3 python3-venv"; \
    apt-get update; \
    apt-get install -y --no-install-recommends $packages; \
    rm -rf /var/lib/apt/lists/*

ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY deploy/constraints.txt /tmp/build/constraints.txt
COPY deploy/ca/ /tmp/build/ca/
# Dependencies first, in their own layer, so a source change does not reinstall them. A CA
# bundle in deploy/ca/ (a proxy's) is trusted by pip here and goes no further.
RUN set -eux; \
    if [ -s /tmp/build/ca/ca-certificates.crt ]; then export PIP_CERT=/tmp/build/ca/ca-certificates.crt; fi; \
    python3 -m venv /opt/venv; \
    pip install -c /tmp/build/constraints.txt pip setuptools wheel; \
    pip install -c /tmp/build/constraints.txt -r /tmp/build/constraints.txt

COPY setup.cfg pyproject.toml README.md /tmp/build/src/
COPY pipelines /tmp/build/src/pipelines
COPY components /tmp/build/src/components
COPY tflm_ext /tmp/build/src/tflm_ext
# The project itself (not editable: the kernels' sources are installed package data), then
# the host library compiled from those installed sources into the cache the image keeps,
# readable by the image's user (host_build writes it 0644; the chmod covers the folders).
RUN set -eux; \
    pip install --no-build-isolation -c /tmp/build/constraints.txt "/tmp/build/src[synth]"; \
    pip check; \
    TFLM_EXT_CACHE_DIR=/opt/tflm_ext python -m tflm_ext.host_build; \
    chmod -R a+rX /opt/tflm_ext

# ---- runtime: no compiler; the venv and the prebuilt kernels from the build stage ----
# Debian's flite gives the default KWS job its four recorded speakers (configs/kws.yaml).
FROM ${BASE}
RUN set -eux; \
    packages="flite"; \
    command -v python3 >/dev/null || packages="$packages python3"; \
    apt-get update; \
    apt-get install -y --no-install-recommends $packages; \
    rm -rf /var/lib/apt/lists/*; \
    useradd --uid 10001 --user-group --create-home --home-dir /home/tflm tflm

COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/tflm_ext /opt/tflm_ext
WORKDIR /app
COPY configs configs
RUN install -d -o 10001 -g 10001 runs
# The host build's file name hashes its sources, flags and the tflite-micro wheel, so this
# cache is found as built; without g++ here a mismatch fails loudly instead of rebuilding.
ENV PATH=/opt/venv/bin:$PATH \
    TFLM_EXT_CACHE_DIR=/opt/tflm_ext \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib

USER 10001:10001
# Work dirs (data, examples, models) and the default SQLite tracking store.
VOLUME /app/runs
ENTRYPOINT ["tflm-pipelines"]
CMD ["run", "configs/kws.yaml", "--no-progress"]
