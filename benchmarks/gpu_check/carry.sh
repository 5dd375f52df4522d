#!/usr/bin/env bash
# Packs, as wheels in .gpu-wheels/ (git-ignored), what make gpu-check needs beyond a GPU host's
# own torch, for a host with no package index (the device machines lent here: Python 3.12, a
# CUDA 13 build of torch, and numpy, pandas, scipy, scikit-learn, matplotlib, tqdm, tokenizers,
# safetensors, huggingface-hub, pyarrow, pytest and nvidia-ml-py already there). bitsandbytes'
# wheel is rebuilt without its CUDA 11/12 and ROCm kernels: whole, it is 43 of the 64 MiB that
# may travel. On the host:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu-wheels/*.whl
#   PYTHONPATH=/tmp/site python3 -m benchmarks.gpu_check
set -euo pipefail
cd "$(dirname "$0")/../.."
wheels=.gpu-wheels
rm -rf "$wheels"
needed=$(grep -E '^(transformers|peft|bitsandbytes|galore-torch|apollo-torch|adam-mini|fira|torchao|lomo-optim|badam|datasets|submitit|tabulate)==' requirements.txt)
platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
# fira ships only a source archive: build its wheel here (pure Python).
python3 -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$wheels" $(echo "$needed" | grep '^fira==')
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp $platforms -d "$wheels" $(echo "$needed" | grep -v '^fira==') \
    tensorly==0.10.0 dill==0.4.1 multiprocess==0.70.19 xxhash==3.6.0
python3 - "$wheels" <<'PY'
import pathlib, sys, zipfile
(wheel,) = pathlib.Path(sys.argv[1]).glob("bitsandbytes-*.whl")
dropped = lambda name: name.startswith(("bitsandbytes/libbitsandbytes_cuda11", "bitsandbytes/libbitsandbytes_cuda12",
                                        "bitsandbytes/libbitsandbytes_rocm"))
slim = wheel.with_suffix(".slim")
with zipfile.ZipFile(wheel) as whole, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as out:
    for item in whole.infolist():
        if dropped(item.filename):
            continue
        data = whole.read(item)
        if item.filename.endswith(".dist-info/RECORD"):
            data = b"".join(line for line in data.splitlines(keepends=True) if not dropped(line.decode()))
        out.writestr(item, data)
slim.replace(wheel)
PY
du -sh "$wheels"
