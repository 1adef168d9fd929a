#!/usr/bin/env bash
# Run a command with image-build settings for registry-less machines: when a Docker daemon
# answers and VADBLOCKS_BUILD_ARGS_FILE is not set, build (or reuse) the local base image,
# serve the host's local wheels over the Docker bridge, and export the build-args file.
# Elsewhere it just runs the command.   Usage: scripts/with_build_env.sh CMD [ARGS...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${VADBLOCKS_BUILD_ARGS_FILE:-}" ] || ! docker info >/dev/null 2>&1 || ! command -v debootstrap >/dev/null; then
  exec "$@"
fi
BASE_IMAGE=${VADBLOCKS_BASE_IMAGE:-vadblocks-base:bookworm-py311}
bash "$here/build_base_image.sh" "$BASE_IMAGE"
ARGS_FILE=$(mktemp /tmp/vadblocks-build-args.XXXXXX)
python3 "$here/pip_mirror.py" --port "${VADBLOCKS_MIRROR_PORT:-8765}" --env-file "$ARGS_FILE.mirror" &
MIRROR_PID=$!
trap 'kill $MIRROR_PID 2>/dev/null || true; rm -f "$ARGS_FILE" "$ARGS_FILE.mirror"' EXIT
for _ in $(seq 40); do [ -s "$ARGS_FILE.mirror" ] && break; sleep 0.5; done
{ echo "BASE_IMAGE=$BASE_IMAGE"; cat "$ARGS_FILE.mirror"; } > "$ARGS_FILE"
export VADBLOCKS_BUILD_ARGS_FILE="$ARGS_FILE"
"$@"
