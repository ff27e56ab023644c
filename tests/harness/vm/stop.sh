#!/usr/bin/env bash
# Stop and delete a test VM started by start.sh:  stop.sh NAME
# Always cleans up and exits 0 when the VM is gone (also when it was never started). The console log is kept as
# .cache/vm/logs/NAME-console.log for post-mortems.
set -uo pipefail

name=${1:?usage: stop.sh NAME}
case $name in *[!A-Za-z0-9_.-]*) echo "stop.sh: bad VM name '$name'" >&2; exit 2;; esac
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
cache=${IRISOPS_VM_CACHE:-$repo/.cache/vm}
inst=$cache/instances/$name

[ -d "$inst" ] || { echo "stop.sh: VM $name not present"; exit 0; }
if [ -f "$inst/qemu.pid" ]; then
    pid=$(cat "$inst/qemu.pid")
    # only signal the process if it is really our qemu (pid files outlive processes)
    if kill -0 "$pid" 2>/dev/null && grep -q "irisops-$name" "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
        for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
fi
mkdir -p "$cache/logs"
[ -f "$inst/console.log" ] && cp "$inst/console.log" "$cache/logs/$name-console.log"
rm -rf "$inst"
echo "stop.sh: VM $name stopped and removed"
exit 0
