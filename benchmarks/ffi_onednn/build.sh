#!/usr/bin/env bash
# Build libonednn_conv.so from fnn/_onednn/onednn_conv.cc by hand (prototype, issue 18; fnn itself
# builds it at first use, fnn/onednn.py).
#
# Needs g++ (C++17), jaxlib (its FFI headers: jax.ffi.include_dir()) and oneDNN from PyPI in the
# same Python environment:   pip install onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0
# (the plain `onednn`/`onednn-devel` 2026.1 wheels are built for the SYCL CPU runtime and pull in
# Intel's SYCL/OpenCL/TBB runtimes; the gomp build needs only the system libgomp).
# Not run by CI; nothing in fnn needs it.   Usage: PYTHON=/work/venv/bin/python ./build.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-python}"
prefix="$("$py" -c 'import sys; print(sys.prefix)')"
ffi_inc="$("$py" -c 'import jax; print(jax.ffi.include_dir())')"
if [[ ! -f "$prefix/include/oneapi/dnnl/dnnl.hpp" || ! -e "$prefix/lib/libdnnl.so" ]]; then
  echo "oneDNN headers/library not found under $prefix (pip install onednn-cpu-gomp onednn-devel-cpu-gomp)" >&2
  exit 1
fi
mkdir -p "$here/build"
"${CXX:-g++}" -std=c++17 -O2 -fPIC -shared \
  -I"$ffi_inc" -I"$prefix/include" \
  "$here/../../fnn/_onednn/onednn_conv.cc" -o "$here/build/libonednn_conv.so" \
  -L"$prefix/lib" -ldnnl -Wl,-rpath,"$prefix/lib"
echo "$here/build/libonednn_conv.so"
