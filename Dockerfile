# GoogLeNet inference service image: no torch in what serves (docs/deployment.md).
# No `# syntax=` line: the engine's built-in BuildKit frontend has every feature used here, and
# naming a frontend image would make the build pull it from a registry.
#
#   docker build -t googlenet-serving:gpu .                                    # serve; mount /models
#   docker build --build-arg VARIANT=cpu -t googlenet-serving:cpu .            # CPU-only variant
#   mkdir -p model_repository   # first: a folder the build makes itself is private to root (0700)
#   docker build --target repository --output type=local,dest=model_repository .   # write a model repository
#   docker build --target serve-with-models -t googlenet-serving:gpu-with-models .  # repository baked in
#
# Stages: wheel (the project's wheel) -> models (torch; runs model_export, build-only) ->
# repository (just the files, for --output) -> runtime (venv + wheel, non-root) ->
# serve-with-models (runtime + /models) and serve (runtime; the default target, /models mounted).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY model_export ./model_export
COPY loadtest ./loadtest
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# The model repository, made where torch is allowed. With no options model_export writes the 7
# seeded random-init members flagged untrained; pass EXPORT_ARGS (e.g. "--members 3 --precision fp32") to change that.
FROM ${PYTHON_IMAGE} AS models
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir "$(ls /wheels/googlenet_serving-*.whl)[export]"
# Declared after the torch install: other EXPORT_ARGS reuse that layer (an ARG is part of later RUNs' cache key).
ARG EXPORT_ARGS=""
# EXPORT_ARGS is a list of options: word splitting is wanted here.
# hadolint ignore=SC2086
RUN python -m model_export build-repository --output /models ${EXPORT_ARGS}

FROM scratch AS repository
COPY --from=models /models /

FROM ${PYTHON_IMAGE} AS runtime
# gpu: onnxruntime-gpu + CUDA/cuDNN wheels (the driver comes from the host); cpu: CPU provider only.
ARG VARIANT=gpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY deploy/docker/install-service.sh deploy/docker/healthcheck.py /opt/googlenet/
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    /opt/googlenet/install-service.sh "${VARIANT}" /wheels /opt/venv \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin googlenet
# ONNX Runtime finds the pip-installed CUDA 13 / cuDNN 9 libraries here (absent dirs are harmless on cpu).
ENV PATH=/opt/venv/bin:$PATH \
    LD_LIBRARY_PATH=/opt/venv/lib/python3.11/site-packages/nvidia/cu13/lib:/opt/venv/lib/python3.11/site-packages/nvidia/cudnn/lib \
    GOOGLENET_HOST=0.0.0.0 \
    GOOGLENET_PORT=8000 \
    GOOGLENET_GRPC_PORT=8001 \
    GOOGLENET_MODEL_REPOSITORY=/models \
    GOOGLENET_SHUTDOWN_DELAY_S=0 \
    GOOGLENET_SHUTDOWN_GRACE_S=30
USER 10001
EXPOSE 8000 8001
# Loading and warming 7 models takes a while on CPU: readiness, not liveness, gates traffic.
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "/opt/googlenet/healthcheck.py"]
# SIGTERM: /readyz fails, accepted requests drain, exit 0 (service/lifecycle.py).
STOPSIGNAL SIGTERM
CMD ["python", "-m", "service"]

FROM runtime AS serve-with-models
COPY --from=models --chown=10001:10001 /models /models

FROM runtime AS serve
