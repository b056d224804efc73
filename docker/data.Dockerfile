# Pipeline steps of the `data` kind (ingest, validation, prepare, export) and the chart's
# registration Job: the f2llm package on CPU torch.
# docker build -f docker/data.Dockerfile -t ghcr.io/f2llm/f2llm-data:0.1.0 .
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HOME=/tmp
WORKDIR /app
COPY pyproject.toml README.md ./
COPY platform platform
COPY kernels kernels
COPY components components
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 && pip install . \
    && useradd --uid 1000 --no-create-home f2llm
USER 1000
ENTRYPOINT ["f2llm"]
