#!/bin/sh
# Runs the NSS benchmark and prints its markdown table.
#   bench/nss/run.sh [BUILD_DIR] [bench-nss options: --count N --samples N --cold-samples N]
#   bench/nss/run.sh [BUILD_DIR] --run 'COMMAND'   the same set-up, then COMMAND in it (profiling
#                                                  the hit path: bench/nss/hit-path.md)
# Needs root (private mount namespace, private MariaDB); changes nothing on the host.
# The table compares libnss_allgo.so.2 with the files backend measured in the same run;
# allgo-authkeys is timed too when <build>/bin/allgo-authkeys exists.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build="$src/build"
case "${1:-}" in
  ""|-*) ;;
  *) build=$1; shift ;;
esac
if [ "$(id -u)" != 0 ]; then
  echo "bench/nss/run.sh: run as root (it needs a private mount namespace)" >&2
  exit 1
fi
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
# allgo-authkeys is optional: build it when the tree has it, so its row appears.
targets="bench_nss nss_allgo"
if [ -f "$src/authkeys/CMakeLists.txt" ]; then targets="$targets allgo-authkeys"; fi
# nss-lookup (tests/nss) is what --run commands profile.
if [ -f "$src/tests/nss/nss_lookup.cc" ]; then targets="$targets nss_lookup"; fi
for t in $targets; do
  cmake --build "$build" -j2 --target "$t" >/dev/null
done
exec "$build/bin/bench-nss" "$@"
