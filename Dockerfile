# ancre on NVIDIA GPUs: PyTorch 2.7.1, CUDA 12.6 (the devel image: nvcc and headers, so
# DeepSpeed's ops and flash-attn compile), DeepSpeed with its ops prebuilt, ancre[gpu].
#
#   docker build -t ancre .                                        # with flash-attn (long)
#   docker build --build-arg INSTALL_FLASH_ATTN=0 -t ancre .       # without it
#   docker run --gpus all --ipc=host -v "$PWD/runs:/workspace/ancre/runs" ancre \
#       train configs/quickstart.yaml
#
# docs/launch.md shows multi-node runs (torchrun or DeepSpeed's launcher in containers).
FROM pytorch/pytorch:2.7.1-cuda12.6-cudnn9-devel

# 1: build flash-attn from source (about an hour on 8 cores); 0: skip it (attention
# then runs through PyTorch's scaled_dot_product_attention)
ARG INSTALL_FLASH_ATTN=1
# parallel compile jobs for flash-attn and DeepSpeed's ops (each can take several GB)
ARG MAX_JOBS=8
# GPU architectures to compile for: A100, A10/RTX 30, H100/H200
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;9.0"

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    MAX_JOBS=${MAX_JOBS} \
    TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST}

# ninja for the compiles; ssh client and pdsh for DeepSpeed's multi-node launcher;
# libaio for DeepSpeed's async I/O op
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ninja-build openssh-client pdsh libaio-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /workspace/ancre

# Keep the image's torch: every later install is constrained to it, so pip never swaps
# in another build.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN python -c 'import torch; print(f"torch=={torch.__version__}")' > /etc/pip-constraints.txt

# DeepSpeed built from source with the ops ancre's runs use compiled ahead of time:
# fused Adam, CPU Adam (ZeRO offload) and the flatten/unflatten utils of ZeRO 1-3.
RUN DS_BUILD_FUSED_ADAM=1 DS_BUILD_CPU_ADAM=1 DS_BUILD_UTILS=1 \
    pip install -c /etc/pip-constraints.txt --no-build-isolation "deepspeed==0.19.8" \
    && ds_report

COPY pyproject.toml README.md ./
COPY ancre ./ancre
# ancre with its gpu extra (triton, flash-attn); FLASH_ATTENTION_FORCE_BUILD compiles
# flash-attn here instead of downloading a prebuilt wheel.
RUN if [ "$INSTALL_FLASH_ATTN" = 1 ]; then \
        FLASH_ATTENTION_FORCE_BUILD=TRUE \
        pip install -c /etc/pip-constraints.txt --no-build-isolation ".[gpu]"; \
    else \
        pip install -c /etc/pip-constraints.txt . "triton>=3.0"; \
    fi \
    && python -c "import ancre, deepspeed; print('ancre ok, deepspeed', deepspeed.__version__)"

COPY configs ./configs
COPY launch ./launch
COPY tools ./tools
COPY docs ./docs
COPY data/sample ./data/sample

ENTRYPOINT ["ancre"]
CMD ["--help"]
