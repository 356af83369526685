#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` from the source node-llama-cpp ships
# (node_modules/node-llama-cpp/llama/gitRelease.bundle), offline, into a cache
# outside the repo, and prints the binary's path. A second run reuses the build.
# Used by bench/llama-server-vs-inprocess.ts and the pass-through test.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bundle="$root/node_modules/node-llama-cpp/llama/gitRelease.bundle"
cache="${MESH_LLM_LLAMA_CPP_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mesh-llm/llama.cpp}"
jobs="${JOBS:-2}"
binary="$cache/build/bin/llama-server"

if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi
[[ -f "$bundle" ]] || { echo "missing $bundle (npm install first)" >&2; exit 1; }
tools=()
command -v cmake >/dev/null || tools+=(cmake)
command -v make >/dev/null || tools+=(make)
command -v g++ >/dev/null || tools+=(g++)
command -v git >/dev/null || tools+=(git)
if [[ ${#tools[@]} -gt 0 ]]; then
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "building llama-server needs: ${tools[*]} (Debian/Ubuntu: sudo apt-get install -y ${tools[*]})" >&2
    exit 1
  fi
  echo "installing build tools: ${tools[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${tools[@]}" >&2
fi

if [[ ! -d "$cache/.git" ]]; then
  mkdir -p "$(dirname "$cache")"
  git clone --quiet "$bundle" "$cache" >&2
fi
cd "$cache"
nice -n 15 cmake -B build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
nice -n 15 cmake --build build --target llama-server -j"$jobs" >&2
[[ -x "$binary" ]] || { echo "build finished without $binary" >&2; exit 1; }
echo "$binary"
