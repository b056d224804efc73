# Pipeline steps of the `gpu` kind (mining, base model, training, evaluation): CUDA torch, with
# Triton compiling the kernels for the GPU it finds. torchrun is in the image for multi-GPU pods.
# docker build -f docker/train.Dockerfile -t ghcr.io/f2llm/f2llm-train:0.1.0 .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HOME=/tmp DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends python3.12 python3.12-venv python3.12-dev gcc \
    && rm -rf /var/lib/apt/lists/* && python3.12 -m venv /opt/f2llm
ENV PATH=/opt/f2llm/bin:$PATH
WORKDIR /app
COPY pyproject.toml README.md ./
COPY platform platform
COPY kernels kernels
COPY components components
RUN pip install --index-url https://download.pytorch.org/whl/cu128 torch==2.13.0 && pip install . \
    && useradd --uid 1000 --no-create-home f2llm
USER 1000
ENTRYPOINT ["f2llm"]
