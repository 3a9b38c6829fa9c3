#!/usr/bin/env bash
# On the machine with a GPU, from the bundle prepare.sh built: unpacks Node and dawn.node into a scratch folder, finds
# the Vulkan loader (the system's, else the bundled libvulkan1) and the NVIDIA driver's Vulkan ICD (its JSON, else a
# JSON written for libGLX_nvidia.so.0 when the driver's library is there), then runs check.mjs under a time limit.
# Results: $OUT/webgpu-check.json and webgpu-check.log. Arguments go to check.mjs (--steps N, --quick).
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
W="${TMPDIR:-/tmp}/loom-webgpu"
OUT="${OUT:-$W/out}"
mkdir -p "$W" "$OUT"
cp -r "$B/node_modules" "$B/check.mjs" "$W/"
gzip -dc "$B/dawn.node.gz" > "$W/node_modules/webgpu/dist/linux-x64/dawn.node"
gzip -dc "$B/node.gz" > "$W/node" && chmod +x "$W/node"
{
  echo "== machine"; uname -a; nvidia-smi -L 2>&1 || true
  echo "== Vulkan loader"
  if ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'; then
    echo "system libvulkan.so.1"
  else
    mkdir -p "$W/vk"
    for d in "$B"/debs/*.deb; do
      if command -v dpkg >/dev/null; then dpkg -x "$d" "$W/vk"; else (cd "$W/vk" && ar x "$d" data.tar.xz && tar -xf data.tar.xz); fi
    done
    export LD_LIBRARY_PATH="$W/vk/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "bundled libvulkan1 ($(ls "$B"/debs))"
  fi
  echo "== Vulkan ICDs"
  icds=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null || true)
  echo "${icds:-none installed}"
  if ! echo "$icds" | grep -qi nvidia; then
    glx=$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia.so.0/ {print $NF; exit}')
    [ -n "$glx" ] || glx=$(find / -xdev -name 'libGLX_nvidia.so.0' 2>/dev/null | head -1)
    if [ -n "$glx" ]; then
      printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3"}}\n' "$glx" > "$W/nvidia_icd.json"
      export VK_ICD_FILENAMES="$W/nvidia_icd.json"
      echo "wrote $W/nvidia_icd.json for $glx"
    else
      echo "no NVIDIA Vulkan library (libGLX_nvidia.so.0): the container may expose only the compute driver (NVIDIA_DRIVER_CAPABILITIES needs graphics)"
    fi
  fi
  echo "== check"
  cd "$W" && OUT="$OUT" timeout "${CHECK_TIMEOUT:-480}" "$W/node" check.mjs "$@"
  echo "check exit status $?"
} 2>&1 | tee "$OUT/webgpu-check.log"
