# The predictor image: `f2llm serve` (KServe v1/v2 + OpenAI embeddings). CPU torch by default;
# --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 for a CUDA build.
# docker build -f docker/serve.Dockerfile -t ghcr.io/f2llm/f2llm-serve:0.1.0 .
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HOME=/tmp
WORKDIR /app
COPY pyproject.toml README.md ./
COPY platform platform
COPY kernels kernels
COPY components components
RUN pip install --index-url "$TORCH_INDEX" torch==2.13.0 && pip install . \
    && useradd --uid 1000 --no-create-home f2llm
USER 1000
EXPOSE 8080
ENTRYPOINT ["f2llm"]
CMD ["serve", "--model", "/mnt/models", "--port", "8080"]
