# Shared by scripts/test, scripts/demo and bench/run: install what is missing, then build.
# shellcheck shell=bash

KEYGATE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Debian 12 packages keygate builds and tests with (see the README for why each is there).
KEYGATE_PACKAGES=(
  build-essential cmake pkg-config git ca-certificates
  libboost1.81-dev libboost-json1.81-dev libhiredis-dev libpq-dev libssl-dev libyaml-cpp-dev
  libcrypt-dev doctest-dev postgresql redis-server redis-tools python3 curl nginx-light openssl ccache python3-yaml
)

# Installs the packages given (default: KEYGATE_PACKAGES) that are not installed yet.
install_missing_packages() {
  local wanted=("$@") missing=() p
  [ ${#wanted[@]} -gt 0 ] || wanted=("${KEYGATE_PACKAGES[@]}")
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> installing: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  # --no-upgrade: never upgrade what is already installed under the user.
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-upgrade \
    --no-install-recommends "${missing[@]}"
  # Debian starts the packaged servers; keygate only uses its own throwaway instances.
  if command -v service >/dev/null 2>&1; then
    for p in postgresql redis-server nginx; do "${sudo[@]}" service "$p" stop >/dev/null 2>&1 || true; done
  fi
}

# Configures and builds into $KEYGATE_BUILD_DIR (default build/); KEYGATE_SANITIZE=ON builds
# with ASan + UBSan (always passed, so a build folder never keeps another run's choice).
# The compiler's output goes to $dir/build.log; its last lines are shown when the build fails.
build_keygate() {
  local dir=${KEYGATE_BUILD_DIR:-$KEYGATE_ROOT/build}
  mkdir -p "$dir"
  echo "==> building in $dir (log: $dir/build.log)"
  # KEYGATE_CMAKE_ARGS: more configure options, space-separated (scripts/fuzz: clang, the
  # fuzz targets).
  local configure=()
  read -r -a configure <<<"${KEYGATE_CMAKE_ARGS:-}"
  if ! { cmake -S "$KEYGATE_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE="${KEYGATE_BUILD_TYPE:-RelWithDebInfo}" \
           -DKEYGATE_SANITIZE="${KEYGATE_SANITIZE:-OFF}" ${configure[@]+"${configure[@]}"} &&
         cmake --build "$dir" -j "$(nproc)" "$@"; } >"$dir/build.log" 2>&1; then
    grep -E "error|Error" "$dir/build.log" | head -40 >&2 || true
    tail -20 "$dir/build.log" >&2
    echo "build failed; the whole log is $dir/build.log" >&2
    return 1
  fi
}
