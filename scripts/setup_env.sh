#!/usr/bin/env bash
# scripts/setup_env.sh - create or update the project's virtual environment (`make setup` runs it).
#
# Two modes, chosen by ROS_DISTRO:
#   * ROS_DISTRO unset (no ROS 2 distro sourced): everything goes into $VENV - the pinned Python
#     packages of requirements.txt, ROS 2 Jazzy from the PyPI wheels (scripts/requirements-ros-jazzy.txt)
#     and tf2_msgs, which is not on PyPI and is generated here from scripts/ros_interfaces/tf2_msgs.
#   * ROS_DISTRO set (e.g. after `source /opt/ros/jazzy/setup.bash`): $VENV is created with
#     --system-site-packages on the distro's interpreter and uses the distro's rclpy and messages;
#     pip adds only what the distro does not provide (torch, warp-lang, trimesh, urchin, rosbags, ...).
#
# Every phase first checks whether its work is done already, so a second run takes seconds.
# Environment knobs: VENV (default .venv), PYTHON (interpreter that creates the venv), STAMP (file
# written on success, content = hash of the inputs), TORCH_INDEX_URL (extra index with CPU torch
# wheels, for machines without a local one), JOBS (parallel compile jobs for tf2_msgs),
# HANDYPRIORS_SHARED_DIR (sibling checkout with vendor/ros2-jazzy-launch; default ../shared),
# PACKAGE_SOURCE (checkout installed into the venv in editable mode; default this one).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${VENV:-.venv}
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
STAMP=${STAMP:-}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
VPY="$VENV/bin/python"
PACKAGE_SOURCE=$(cd "${PACKAGE_SOURCE:-$ROOT}" && pwd)
TOOL=("$ROOT/scripts/requirements_tool.py")
CONSTRAINTS="$ROOT/constraints.txt"
ROS_REQUIREMENTS="$ROOT/scripts/requirements-ros-jazzy.txt"
TF2_SRC="$ROOT/scripts/ros_interfaces/tf2_msgs"
CMAKE_FIX_SRC="$ROOT/scripts/cmake/ros_wheels_python_includes.cmake"
CMAKE_FIX="$VENV/share/handypriors_ros_env/ros_wheels_python_includes.cmake"
# upstream sources of ros2 launch / launch_testing / ros2cli for machines without a distro (sibling checkout)
SHARED_DIR=${HANDYPRIORS_SHARED_DIR:-$ROOT/../shared}
LAUNCH_SRC="$SHARED_DIR/vendor/ros2-jazzy-launch"
LAUNCH_REQUIREMENTS="$ROOT/scripts/requirements-ros-launch.txt"
# the vendored packages in installation order (each depends only on earlier ones and on the wheels)
LAUNCH_PACKAGES=(rosidl_runtime_py launch launch_xml launch_yaml launch_testing launch_ros ros2cli ros2pkg ros2run
                 ros2node ros2topic ros2param ros2launch launch_testing_ros)
LAUNCH_MODULES=(launch launch_xml launch_yaml launch_testing launch_ros launch_testing_ros ros2cli ros2launch
                ros2run ros2pkg ros2node ros2topic ros2param rosidl_runtime_py osrf_pycommon psutil)

if [ -n "${ROS_DISTRO:-}" ]; then
  MODE=system
  PYTHON=${PYTHON:-/usr/bin/python3}
else
  MODE=wheels
  PYTHON=${PYTHON:-python3}
fi

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
T0=$SECONDS
T_PHASE=$SECONDS
lap() { say "  $1 done in $((SECONDS - T_PHASE)) s"; T_PHASE=$SECONDS; }

# pip always runs with the venv's interpreter and a constraint file that pins torch.
# (A local pip configuration may list file:// indexes that lack most projects; its per-project
# "Location ... is ignored" warnings are dropped, everything else pip says is kept.)
INSTALLED=0  # set when a phase changed the environment: then the final check imports everything
pip_install() {
  INSTALLED=1
  "$VPY" -m pip install --disable-pip-version-check --progress-bar off -q "$@" \
    2> >(grep -v "^WARNING: Location 'file://.*' is ignored" >&2)
}

# ---------------------------------------------------------------------------------------------- inputs key
inputs_key() {
  {
    echo "mode=$MODE distro=${ROS_DISTRO:-} venv=$VENV"
    find requirements.txt constraints.txt setup.py setup.cfg scripts -type f ! -name '*.pyc' ! -path '*/__pycache__/*' \
      | LC_ALL=C sort | xargs sha256sum
  } | sha256sum | cut -d' ' -f1
}
KEY=$(inputs_key)
if [ -n "$STAMP" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ] && "$VPY" -c '' 2>/dev/null; then
  say "environment up to date ($VENV)"
  touch "$STAMP"
  exit 0
fi
say "mode: $MODE${ROS_DISTRO:+ ($ROS_DISTRO)}   venv: $VENV"

# ---------------------------------------------------------------------------------------------- helpers
have_apt_root() { command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; }
APT_UPDATED=0
apt_install() {
  have_apt_root || die "missing system packages: $* (install them with apt-get as root)"
  if [ "$APT_UPDATED" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

version_at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }

# Tools to compile interface packages: a C/C++ compiler, make, CMake >= 3.19, Python headers.
ensure_build_tools() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v c++ >/dev/null || missing+=(g++)
  command -v cc >/dev/null || missing+=(gcc)
  command -v make >/dev/null || missing+=(make)
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
  local cmake_version
  cmake_version=$(cmake --version | head -1 | awk '{print $3}')
  version_at_least "$cmake_version" 3.19 || die "CMake >= 3.19 needed, found $cmake_version"
  if ! "$VPY" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("include"), "Python.h")))'; then
    case "$("$VPY" -c 'import sys; print(sys.base_prefix)')" in
      /usr) apt_install python3-dev ;;
      *) die "Python headers (Python.h) missing for $("$VPY" -c 'import sys; print(sys.base_prefix)')" ;;
    esac
  fi
}

# Generate a ROS interface package (rosidl + CMake) from SRC and install it into the venv prefix, unless the
# mark says this content was built already and its Python modules import.
#   generate_interfaces STEP NAME SRC MODULE...
generate_interfaces() {
  local step=$1 name=$2 src=$3
  shift 3
  # content of the interface sources and of the CMake fix (not their location)
  local key mark build
  key=$( (cd "$src" && find . -type f | LC_ALL=C sort | xargs sha256sum; sha256sum < "$CMAKE_FIX_SRC") \
        | sha256sum | cut -d' ' -f1)
  mark="$VENV/share/handypriors_ros_env/$name.built"
  if [ -f "$mark" ] && [ "$(cat "$mark")" = "$key" ] && "$VPY" "${TOOL[@]}" import-check "$@" 2>/dev/null; then
    say "$step. $name already generated"
    return
  fi
  say "$step. generating $name into $VENV (rosidl + CMake, $JOBS jobs; about a minute)"
  INSTALLED=1
  ensure_build_tools
  build="$VENV/var/build/$name"
  rm -rf "$build"
  mkdir -p "$build"
  (
    export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
    unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
    cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
      -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$VPY" \
      -DCMAKE_PROJECT_INCLUDE="$CMAKE_FIX" > "$build/configure.log" 2>&1 \
      || { tail -n 40 "$build/configure.log" >&2; die "configuring $name failed (log: $build/configure.log)"; }
    grep -h 'ros_wheels_python_includes' "$build/configure.log" | sed 's/^/[setup]     /' || true
    cmake --build "$build" -j "$JOBS" > "$build/build.log" 2>&1 \
      || { tail -n 40 "$build/build.log" >&2; die "building $name failed (log: $build/build.log)"; }
    cmake --install "$build" > "$build/install.log" 2>&1 \
      || { tail -n 20 "$build/install.log" >&2; die "installing $name failed"; }
  )
  "$VPY" "${TOOL[@]}" import-check "$@" || die "$name was built but does not import"
  echo "$key" > "$mark"
}

# ---------------------------------------------------------------------------------------------- 0. interpreter
command -v "$PYTHON" >/dev/null || die "interpreter '$PYTHON' not found (set PYTHON=...)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 10))' \
  || die "Python >= 3.10 needed, $PYTHON is $("$PYTHON" -V 2>&1)"
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  case "$("$PYTHON" -c 'import sys; print(sys.base_prefix)')" in
    /usr) apt_install python3-venv ;;
    *) die "$PYTHON lacks the venv/ensurepip modules" ;;
  esac
fi

# ---------------------------------------------------------------------------------------------- 1. venv
if [ ! -x "$VPY" ]; then
  say "1. creating $VENV with $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
  if [ "$MODE" = system ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
else
  system_site=$(sed -n 's/^include-system-site-packages *= *//p' "$VENV/pyvenv.cfg")
  if [ "$MODE" = system ]; then
    [ "$system_site" = true ] || die "$VENV was made without --system-site-packages, so it cannot see the sourced
  ROS $ROS_DISTRO. Remove it (rm -rf $VENV) and run make setup again, or unset ROS_DISTRO."
    [ ! -e "$VENV/share/handypriors_ros_env/ros_wheels" ] || die "$VENV holds the ROS Jazzy wheels; mixing them
  with the sourced ROS $ROS_DISTRO breaks both. Use another VENV=..., or unset ROS_DISTRO."
  fi
fi
lap "1. venv"

# ---------------------------------------------------------------------------------------------- 2. torch
TORCH_PIN=$(grep -E '^torch==' requirements.txt)
TORCH_ARGS=()
[ -n "${TORCH_INDEX_URL:-}" ] && TORCH_ARGS+=(--extra-index-url "$TORCH_INDEX_URL")
if [ "$MODE" = system ]; then
  SYS_CONSTRAINTS="$VENV/share/handypriors_ros_env/constraints-system.txt"
  mkdir -p "$(dirname "$SYS_CONSTRAINTS")"
  { echo "$TORCH_PIN"; "$VPY" "${TOOL[@]}" distro-constraints; } > "$SYS_CONSTRAINTS"
  PIN_ARGS=(-c "$SYS_CONSTRAINTS")
else
  PIN_ARGS=(-c "$CONSTRAINTS")
fi
if "$VPY" "${TOOL[@]}" check requirements.txt --only torch >/dev/null; then
  say "2. $TORCH_PIN already installed"
else
  say "2. installing $TORCH_PIN (CPU build) first"
  pip_install "${TORCH_ARGS[@]}" "${PIN_ARGS[@]}" "$TORCH_PIN"
  "$VPY" -W ignore -c 'import torch, sys; sys.exit(torch.version.cuda is not None)' \
    || die "a CUDA build of torch was installed; set TORCH_INDEX_URL to a CPU wheel index"
fi
lap "2. torch"

# ---------------------------------------------------------------------------------------------- 3. python packages
if [ "$MODE" = system ]; then
  REQS="$VENV/share/handypriors_ros_env/requirements-system.txt"
  "$VPY" "${TOOL[@]}" without-distro requirements.txt > "$REQS"
else
  REQS="$ROOT/requirements.txt"
fi
if "$VPY" "${TOOL[@]}" check "$REQS" >/dev/null; then
  say "3. Python packages already installed"
else
  say "3. installing the Python packages of $(basename "$REQS")"
  pip_install "${TORCH_ARGS[@]}" "${PIN_ARGS[@]}" -r "$REQS"
fi
lap "3. python packages"

if [ "$MODE" = wheels ]; then
  # -------------------------------------------------------------------------------------------- 4. ROS wheels
  if "$VPY" "${TOOL[@]}" check "$ROS_REQUIREMENTS" >/dev/null; then
    say "4. ROS 2 Jazzy wheels already installed"
  else
    say "4. installing ROS 2 Jazzy from PyPI wheels"
    pip_install "${PIN_ARGS[@]}" -r "$ROS_REQUIREMENTS"
  fi
  mkdir -p "$(dirname "$CMAKE_FIX")"
  cp "$CMAKE_FIX_SRC" "$CMAKE_FIX"
  echo "jazzy" > "$VENV/share/handypriors_ros_env/ros_wheels"
  lap "4. ROS wheels"

  # -------------------------------------------------------------------------------------------- 5. tf2_msgs
  generate_interfaces 5 tf2_msgs "$TF2_SRC" tf2_msgs.msg tf2_msgs.srv tf2_msgs.action
  lap "5. tf2_msgs"

  # -------------------------------------------------------------------------------------------- 6. activate hook
  if ! grep -q '>>> handypriors ros wheels >>>' "$VENV/bin/activate"; then
    cat >> "$VENV/bin/activate" <<'EOF'

# >>> handypriors ros wheels >>> (added by scripts/setup_env.sh; `deactivate` keeps these)
# ROS 2 Jazzy lives in this venv: let ament and CMake find its packages.
case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;; esac
case ":${CMAKE_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *) export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" ;; esac
# for CMake builds against the wheels: colcon build --cmake-args -DCMAKE_PROJECT_INCLUDE=$HANDYPRIORS_ROS_CMAKE_FIX
export HANDYPRIORS_ROS_CMAKE_FIX="$VIRTUAL_ENV/share/handypriors_ros_env/ros_wheels_python_includes.cmake"
# keep DDS discovery on this host unless the caller chose otherwise
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
# <<< handypriors ros wheels <<<
EOF
  fi
  lap "6. activate hook"

  # -------------------------------------------------------------------------------------------- 7. ros2 launch
  # `ros2 launch/run/topic/node/param/pkg` and launch_testing: not on PyPI; installed from the upstream sources
  # in ../shared/vendor/ros2-jazzy-launch (its README's recipe), composition_interfaces generated like tf2_msgs.
  if [ ! -d "$LAUNCH_SRC" ]; then
    say "7. skipped: $LAUNCH_SRC not found, so no ros2 launch / launch_testing (their tests skip)"
  else
    LAUNCH_KEY=$( (cd "$LAUNCH_SRC" && find . -type f ! -path './composition_interfaces/*' | LC_ALL=C sort \
                   | xargs sha256sum; sha256sum < "$LAUNCH_REQUIREMENTS") | sha256sum | cut -d' ' -f1)
    LAUNCH_MARK="$VENV/share/handypriors_ros_env/ros2_launch.installed"
    if [ -f "$LAUNCH_MARK" ] && [ "$(cat "$LAUNCH_MARK")" = "$LAUNCH_KEY" ] && [ -x "$VENV/bin/ros2" ] \
       && "$VPY" "${TOOL[@]}" import-check --find-only "${LAUNCH_MODULES[@]}" 2>/dev/null; then
      say "7. ros2 launch stack already installed"
    else
      say "7. installing the ros2 launch stack from $LAUNCH_SRC"
      pip_install "${PIN_ARGS[@]}" -r "$LAUNCH_REQUIREMENTS"
      LAUNCH_COPY=$(mktemp -d)
      # pip builds in the source tree, and ../shared is read-only in CI: build from a writable copy
      cp -r "$LAUNCH_SRC/." "$LAUNCH_COPY/" && chmod -R u+w "$LAUNCH_COPY"
      for package in "${LAUNCH_PACKAGES[@]}"; do
        [ -f "$LAUNCH_COPY/$package/setup.py" ] || die "$LAUNCH_SRC/$package/setup.py not found"
        pip_install --no-deps --no-build-isolation "${PIN_ARGS[@]}" "$LAUNCH_COPY/$package"
      done
      rm -rf "$LAUNCH_COPY"
      echo "$LAUNCH_KEY" > "$LAUNCH_MARK"
    fi
    # launch_testing's pytest plugins use a hook argument pytest 9 removed: registered, they stop every pytest run
    "$VPY" "${TOOL[@]}" drop-pytest-plugins launch_testing launch_testing_ros | sed 's/^/[setup] /'
    generate_interfaces 7 composition_interfaces "$LAUNCH_SRC/composition_interfaces" composition_interfaces.srv
  fi
  lap "7. ros2 launch"
fi

# ---------------------------------------------------------------------------------------------- 8. this package
# Editable install: .venv/bin/handypriors, allegro_tracker, sequence_player, mano_tracker run this checkout's code.
# The venv prefix also becomes an ament prefix for handypriors_ros (share/ links to launch/, config/, urdf/;
# lib/handypriors_ros/ executables), so `ros2 launch handypriors_ros ...` and `ros2 run handypriors_ros ...`
# work with AMENT_PREFIX_PATH=$VENV (the activate hook sets it).
if "$VPY" "${TOOL[@]}" editable-check handypriors_ros "$PACKAGE_SOURCE" >/dev/null && [ -x "$VENV/bin/handypriors" ]
then
  say "8. handypriors_ros already installed (editable, $PACKAGE_SOURCE)"
else
  say "8. installing handypriors_ros (editable, $PACKAGE_SOURCE)"
  pip_install --no-deps --no-build-isolation --use-pep517 -e "$PACKAGE_SOURCE"
fi
"$VPY" "$ROOT/scripts/ament_prefix.py" "$VENV" --source "$PACKAGE_SOURCE" --python "$VPY" \
  || die "could not make $VENV an ament prefix for handypriors_ros"
lap "8. package"

# ---------------------------------------------------------------------------------------------- 9. check
MODULES=(numpy scipy torch warp trimesh cv2 urchin rosbags yaml matplotlib pytest xdist
         rclpy std_msgs.msg geometry_msgs.msg sensor_msgs.msg visualization_msgs.msg diagnostic_msgs.msg
         std_srvs.srv tf2_msgs.msg ray handypriors_core handypriors_ros)
if [ "$MODE" = wheels ] && [ -d "$LAUNCH_SRC" ]; then MODULES+=("${LAUNCH_MODULES[@]}" composition_interfaces.srv); fi
if [ "$INSTALLED" = 1 ]; then
  # something was installed: import every module (catches broken shared libraries)
  "$VPY" "${TOOL[@]}" import-check "${MODULES[@]}" || die "the environment is incomplete (imports above failed)"
  "$VPY" -c 'import torch, sys; sys.exit(torch.version.cuda is not None)' \
    || die "torch in $VENV is a CUDA build; the project pins the CPU build"
else
  # nothing changed: only make sure every module is there (fast)
  "$VPY" "${TOOL[@]}" import-check --find-only "${MODULES[@]}" || die "the environment is incomplete"
fi
command -v "$VENV/bin/colcon" >/dev/null || command -v colcon >/dev/null || say "note: colcon not found"
lap "9. import check"

if [ -n "$STAMP" ]; then
  mkdir -p "$(dirname "$STAMP")"
  echo "$KEY" > "$STAMP"
fi
say "environment ready in $((SECONDS - T0)) s ($VENV)"
