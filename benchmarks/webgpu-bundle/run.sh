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
  # The bundled Vulkan loader and GL dispatch libraries (libvulkan1, libglvnd0, libegl1, libglx0, libgl1, libopengl0,
  # libgles2: NVIDIA's Vulkan driver lives in libGLX_nvidia.so.0, which needs them), used where the system lacks the
  # loader: on the library path first, and installed into / (dpkg -x, ldconfig) if Dawn still finds no adapter.
  mkdir -p "$W/vk"
  for d in "$B"/debs/*.deb; do
    if command -v dpkg >/dev/null; then dpkg -x "$d" "$W/vk"; else (cd "$W/vk" && ar x "$d" data.tar.xz && tar -xf data.tar.xz); fi
  done
  bundled=0
  if ldconfig -p 2>/dev/null | grep libvulkan.so.1 >/dev/null; then
    echo "system libvulkan.so.1"
  else
    bundled=1
    export LD_LIBRARY_PATH="$W/vk/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "bundled loader and GL dispatch libraries: $(ls "$B"/debs | tr '\n' ' ')"
  fi
  echo "== Vulkan ICDs"
  icds=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json /usr/local/nvidia/share/vulkan/icd.d/*.json 2>/dev/null || true)
  echo "${icds:-none installed}"
  nv=$(echo "$icds" | grep -i nvidia | head -1)
  if [ -n "$nv" ]; then
    # The driver's own JSON, wherever it is (a container may mount the driver under /usr/local/nvidia, where the
    # loader does not look).
    export VK_DRIVER_FILES="$nv" VK_ICD_FILENAMES="$nv"
    echo "using $nv"
  else
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
  egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  [ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"
  probe() { (cd "$W" && "$W/node" --input-type=module -e 'import("webgpu").then(async (w) => { const a = await w.create([]).requestAdapter(); console.log(a ? `adapter: ${a.info?.vendor} ${a.info?.architecture} ${a.info?.description}` : "no adapter"); process.exit(a ? 0 : 1); })' 2>&1 | grep -v '^Warning'); }
  if ! probe && [ "$bundled" = 1 ] && [ "$(id -u)" = 0 ] && command -v dpkg >/dev/null; then
    echo "no adapter with the bundled libraries on the library path: installing them into / (dpkg -x, ldconfig)"
    for d in "$B"/debs/*.deb; do dpkg -x "$d" /; done
    ldconfig
    probe
  fi
  if [ "${TORCH_PEER:-1}" = 1 ] && command -v python3 >/dev/null && python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "== PyTorch on CUDA (torch_cuda.py)"
    OUT="$OUT" PYTHONUNBUFFERED=1 timeout "${TORCH_TIMEOUT:-150}" python3 "$B/torch_cuda.py"
    echo "torch_cuda.py exit status $?"
  else
    echo "== PyTorch on CUDA: not run (no python3 with torch and a CUDA device here, or TORCH_PEER=0)"
  fi
  echo "== check"
  cd "$W" && OUT="$OUT" timeout "${CHECK_TIMEOUT:-420}" "$W/node" check.mjs "$@"
  echo "check exit status $?"
} 2>&1 | tee "$OUT/webgpu-check.log"
