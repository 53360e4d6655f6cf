#!/usr/bin/env bash
# llama.cpp as the GPU peer, with its server: llama-bench, llama-lookup and llama-server built with
# CUDA for Hopper from the llama.cpp that llama-cpp-python vendors (the same source as the CPU peer,
# so CPU and GPU figures compare the same llama.cpp), into /tmp/lcpp-build/bin.
#
# Here (needs PyPI):      bash tools/peer_llama_cpp.sh stage
#   downloads the llama-cpp-python sdist (pip download --no-binary), keeps vendor/llama.cpp minus
#   its docs, models, tests and the backends other than CPU/CUDA, and writes
#   .peer/llama.cpp-peer.tar.xz (~7 MB, ignored by git).
# On the GPU machine:     bash tools/peer_llama_cpp.sh build      (tools/gpu_bench.sh bgstart runs it)
#   the web UI's assets are left out (LLAMA_BUILD_UI=OFF): the HTTP API is what is timed.
set -euo pipefail
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
root=$(cd "$(dirname "$0")/.." && pwd)
tarball="$root/.peer/llama.cpp-peer.tar.xz"
case "${1:-}" in
  stage)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$tmp"
    tar xzf "$tmp"/llama_cpp_python-"$VERSION".tar.gz -C "$tmp" "llama_cpp_python-$VERSION/vendor/llama.cpp"
    src="$tmp/llama_cpp_python-$VERSION/vendor"
    drop=(docs models tests benches media gguf-py conversion)
    for b in webgpu et metal hexagon sycl vulkan opencl cann hip musa openvino virtgpu zdnn zendnn rpc; do
        drop+=("ggml/src/ggml-$b")
    done
    excludes=()
    for d in "${drop[@]}"; do excludes+=("--exclude=llama.cpp/$d"); done
    mkdir -p "$tmp/out" "$root/.peer"
    tar cf - "${excludes[@]}" -C "$src" llama.cpp | tar xf - -C "$tmp/out"
    mv "$tmp/out/llama.cpp" "$tmp/out/llama.cpp-peer"
    tar cJf "$tarball" -C "$tmp/out" llama.cpp-peer
    grep -qx '/.peer/' "$root/.git/info/exclude" 2>/dev/null || echo '/.peer/' >> "$root/.git/info/exclude"
    ls -l "$tarball" ;;
  build)
    [ -x /tmp/lcpp-build/bin/llama-server ] && { echo "already built: /tmp/lcpp-build/bin"; exit 0; }
    rm -rf /tmp/llama.cpp-peer && tar xJf "$tarball" -C /tmp
    cmake -S /tmp/llama.cpp-peer -B /tmp/lcpp-build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON \
      -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
      -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF > /tmp/lcpp-configure.log
    cmake --build /tmp/lcpp-build --target llama-bench llama-lookup llama-server -j "$(nproc)" \
      > /tmp/lcpp-build.log 2>&1 || { tail -30 /tmp/lcpp-build.log; exit 1; }
    ls /tmp/lcpp-build/bin ;;
  *) echo "usage: $0 stage|build" >&2; exit 2 ;;
esac
