#!/usr/bin/env bash
# Install Edge Impulse's Linux SDKs for the tests that drive vadblocks models through them:
#   DIR/python  a virtual environment with the Python SDK (edge_impulse_linux) and the model runtimes
#               (numpy, ai-edge-litert, onnxruntime), WITHOUT vadblocks or torch: the .eim runs there
#   DIR/node    the Node SDK (edge-impulse-linux); --ignore-scripts because its old `sharp` dependency
#               downloads libvips at install time; the runner class loads from its build folder.
# The Python SDK imports pyaudio, which compiles against PortAudio (Debian: portaudio19-dev).
#   scripts/install_sdks.sh [DIR]      (default .sdk)
set -euo pipefail
DIR=${1:-.sdk}
PY_SDK="edge_impulse_linux==1.2.2"
NODE_SDK="edge-impulse-linux@1.25.2"
if [ ! -f /usr/include/portaudio.h ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq portaudio19-dev python3-dev >/dev/null
  else
    echo "PortAudio headers are missing: apt-get install portaudio19-dev (pyaudio, needed by $PY_SDK)" >&2
    exit 1
  fi
fi
mkdir -p "$DIR"
if [ ! -x "$DIR/python/bin/python" ]; then
  python3 -m venv "$DIR/python"
fi
"$DIR/python/bin/pip" install -q "$PY_SDK" opencv-python-headless six pyaudio numpy ai-edge-litert onnxruntime
npm install --prefix "$DIR/node" --ignore-scripts --no-audit --no-fund --loglevel=error "$NODE_SDK" >/dev/null
echo "Edge Impulse Linux SDKs: $DIR/python (Python SDK, no vadblocks), $DIR/node (Node SDK)"
