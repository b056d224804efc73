# Pipeline steps of the `gpu` kind (mining, base model, training, evaluation): CUDA torch, with
# Triton compiling the kernels for the GPU it finds. torchrun is in the image for multi-GPU pods.
# docker build -f docker/train.Dockerfile -t ghcr.io/f2llm/f2llm-train:0.1.0 .
# `IMAGES="data serve train" make images` builds it with podman (docker/build_images.sh).
# Open: torch 2.13.0's CUDA wheels (PyPI's, checked; very likely cu128's too) pin triton==3.7.1
# on Linux while pyproject.toml asks triton>=3.9,<4, so `pip install .` below stops with
# ResolutionImpossible until the two are reconciled (the CPU wheel pins no triton).
ARG BASE=docker.io/nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${BASE}
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 HOME=/tmp \
    DEBIAN_FRONTEND=noninteractive
# gcc and Python.h stay: Triton compiles its launcher stubs at run time.
# Ubuntu 24.04 images have the user `ubuntu` at uid 1000: it makes way for f2llm.
RUN apt-get update && apt-get install -y --no-install-recommends python3.12 python3.12-venv python3.12-dev gcc \
    && rm -rf /var/lib/apt/lists/* && python3.12 -m venv /opt/f2llm \
    && if getent passwd 1000 >/dev/null; then userdel --remove "$(getent passwd 1000 | cut -d: -f1)"; fi \
    && useradd --uid 1000 --no-create-home --home-dir /tmp f2llm
ENV PATH=/opt/f2llm/bin:$PATH
RUN pip install --index-url "$TORCH_INDEX" torch==2.13.0
WORKDIR /app
COPY pyproject.toml README.md ./
COPY platform platform
COPY kernels kernels
COPY components components
RUN pip install . && rm -rf build *.egg-info
USER 1000
ENTRYPOINT ["f2llm"]
