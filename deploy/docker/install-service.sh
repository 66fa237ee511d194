#!/bin/sh
# The serving image's install step (Dockerfile), also run verbatim by tests/deploy/test_wheel_smoke.py.
# usage: install-service.sh VARIANT WHEEL_DIR VENV      VARIANT: gpu | cpu
#   gpu: the wheel with NVML bindings, plus ONNX Runtime's CUDA 13 and cuDNN 9 libraries from pip
#        (the NVIDIA driver comes from the host through the container toolkit)
#   cpu: the wheel alone; its ONNX Runtime runs the CPU execution provider
set -eu
variant=$1
wheels=$2
venv=$3
"${PYTHON:-python3}" -m venv "$venv"
wheel=$(ls "$wheels"/googlenet_serving-*.whl)
case "$variant" in
  gpu) "$venv/bin/pip" install "$wheel[gpu]" "onnxruntime-gpu[cuda,cudnn]" "nvidia-cublas~=13.0" ;;
  cpu) "$venv/bin/pip" install "$wheel" ;;
  *) echo "VARIANT must be gpu or cpu, got '$variant'" >&2; exit 2 ;;
esac
"$venv/bin/pip" check
