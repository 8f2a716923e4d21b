#!/usr/bin/env bash
# A clone anywhere works: `git clone` of this tree's HEAD into a directory of mode 0700
# whose path holds a space (like a clone in /root); it configures and compiles there, and
# the e2e harness's throwaway Exim is started and stopped from that clone. Exim drops to its own user at once (its config
# is untrusted), so everything it reads must be outside the clone; this fails when the
# harness makes Exim read a file in the source tree. Exit 77 (skipped) without root, git,
# cmake, Exim, or when the source is not a git work tree (a release tarball).
set -euo pipefail
src="${FG_SOURCE_DIR:?}"
skip() {
    echo "SKIP: $*"
    exit 77
}
[ "$(id -u)" = 0 ] || skip "needs root (the harness starts Exim as root)"
command -v git >/dev/null || skip "git not installed"
command -v cmake >/dev/null || skip "cmake not installed"
git -C "$src" rev-parse --verify -q HEAD >/dev/null 2>&1 || skip "$src is not a git work tree"

tmp=$(mktemp -d /tmp/fg-clone.XXXXXX)
clone="$tmp/private dir/floodgate clone"
mkdir -m 0700 "$tmp/private dir"
cleanup() {
    if [ -n "${EH_DIR:-}" ]; then eh_stop; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
git clone -q "$src" "$clone"
[ "$(stat -c %a "$tmp/private dir")" = 700 ] || { echo "FAIL: test dir is not 0700" >&2; exit 1; }

# it configures and compiles there (a module that includes its own header by quotes)
cmake -S "$clone" -B "$clone/build" -DFLOODGATE_BUILD_TESTS=OFF >"$tmp/cmake.log" 2>&1 ||
    { cat "$tmp/cmake.log" >&2; echo "FAIL: cmake configure in the clone" >&2; exit 1; }
cmake --build "$clone/build" --target lib/action.c.o >"$tmp/build.log" 2>&1 ||
    { tail -n 20 "$tmp/build.log" >&2; echo "FAIL: compiling lib/action.c in the clone" >&2; exit 1; }
echo "ok configure and compile in '$clone'"

export FG_SOURCE_DIR=$clone
# shellcheck source=tests/e2e/exim-harness.sh
. "$clone/tests/e2e/exim-harness.sh"
eh_init || skip "no usable Exim"
if ! eh_start; then
    echo "FAIL: the e2e harness cannot start Exim from a clone in '$tmp/private dir'" >&2
    exit 1
fi
eh_exim -bV >/dev/null 2>"$tmp/bV.err" ||
    { cat "$tmp/bV.err" >&2; echo "FAIL: exim -bV on the harness config" >&2; exit 1; }
pid=$(cat "$EH_DIR/exim.pid")
dir=$EH_DIR
eh_stop
EH_DIR=
for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
    echo "FAIL: eh_stop left Exim (pid $pid) running" >&2
    exit 1
fi
[ ! -e "$dir" ] || { echo "FAIL: eh_stop left $dir" >&2; exit 1; }
echo "ok harness start/stop from a clone in a 0700 directory with a space in its path"
