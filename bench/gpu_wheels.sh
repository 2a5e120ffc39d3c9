#!/usr/bin/env bash
# The wheels bench/gpu.py needs on a bare CUDA machine (one with only a preinstalled PyTorch stack: torch with CUDA,
# torchvision, onnxruntime, opencv-python-headless, aiohttp, safetensors, transformers, huggingface_hub) that are
# missing there: PyAV (video), soundfile and soxr (audio), and cffi (with pycparser), which soundfile loads with. Run it where pip reaches PyPI; it downloads the
# CPython 3.12 manylinux x86-64 builds, without their dependencies (numpy is already there), into DIR:
#
#     bench/gpu_wheels.sh .whl          # about 37 MB
#
# then on the GPU machine (README, "Checking a GPU"):
#
#     python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
#     python3 bench/gpu.py --out gpu-report
set -euo pipefail
dir="${1:?usage: bench/gpu_wheels.sh DIR}"
mkdir -p "$dir"
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$dir" "av==18.1.0" "soundfile==0.14.0" "soxr==1.1.0" "cffi==2.0.0" \
    "pycparser==2.23"
du -sh "$dir"
