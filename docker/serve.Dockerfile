# The predictor image: `f2llm serve` (KServe v1/v2 + OpenAI embeddings). CPU torch by default;
# --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 for a CUDA build.
# docker build -f docker/serve.Dockerfile -t ghcr.io/f2llm/f2llm-serve:0.1.0 .
# `make images` builds it with podman (docker/build_images.sh): BASE may be a local Debian
# bookworm image with python3 + python3-venv, TORCH_INDEX/TORCH_FIND_LINKS wherever the CPU
# torch wheel lies. Keep the lines up to the f2llm install identical to data.Dockerfile's:
# the two images then share those layers.
ARG BASE=docker.io/library/python:3.11-slim
FROM ${BASE}
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_FIND_LINKS=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 HOME=/tmp \
    PATH=/opt/f2llm/bin:$PATH
RUN python3 -m venv /opt/f2llm \
    && pip install --index-url "$TORCH_INDEX" ${TORCH_FIND_LINKS:+--find-links "$TORCH_FIND_LINKS"} torch==2.13.0
WORKDIR /app
COPY pyproject.toml README.md ./
COPY platform platform
COPY kernels kernels
COPY components components
RUN pip install . && rm -rf build *.egg-info \
    && useradd --uid 1000 --no-create-home --home-dir /tmp f2llm
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
USER 1000
EXPOSE 8080
ENTRYPOINT ["f2llm"]
CMD ["serve", "--model", "/mnt/models", "--host", "0.0.0.0", "--port", "8080"]
