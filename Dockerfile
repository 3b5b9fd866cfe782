# Image for scheduled pipeline runs: `docker run IMAGE run configs/kws.yaml --tracking-uri ...`
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY pipelines pipelines
COPY components components
COPY tflm_ext tflm_ext
COPY configs configs
# Install, then bake the host build of the patch-stage kernel into the image.
RUN pip install --no-cache-dir ".[synth]" \
    && TFLM_EXT_CACHE_DIR=/opt/tflm_ext python -m tflm_ext.host_build
ENV TFLM_EXT_CACHE_DIR=/opt/tflm_ext

# Runs, data and the default SQLite tracking store live in a volume.
VOLUME /app/runs
ENTRYPOINT ["tflm-pipelines"]
CMD ["run", "configs/kws.yaml"]
