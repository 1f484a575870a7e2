#!/usr/bin/env bash
# Run fastsoft's CUDA kernels on the CPU: build the emulation of the .cu sources
# (libemu.so) and run tests/test_cuda.py (or, with --sweep, check.py) behind a stand-in
# 'cupy' module.  A check of kernel logic for machines without a GPU; it is not a
# substitute for a real device (no NVRTC, no real warp scheduling or memory model).
# It starts one OS thread per emulated CUDA thread: slow, and it loads the machine.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
g++ -std=c++20 -O1 -shared -fPIC -pthread -I "$here" -I "$repo/src/fastsoft/_cuda" \
    "$here/harness.cpp" -o "$here/libemu.so"
cd "$repo"
if [ "${1:-}" = "--sweep" ]; then
    python "$here/check.py"
else
    PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" python -m pytest -p fakecupy_plugin \
        tests/test_cuda.py -k "not compile" -q "$@"
fi
