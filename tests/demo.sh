#!/usr/bin/env bash
# Demo of the collection on two local containers, from a fresh clone:
#
#   bash tests/demo.sh
#
# 1. tests/setup.sh (tools, venv, collections) and tests/harness/build-images.sh (local images, no registry);
# 2. starts two containers from irisops/iris-emu:bookworm, each with an emulated IRIS and Cache instance
#    (tests/emulator: a test stand-in for the real product);
# 3. runs tests/demo/freeze-thaw.yml through the community.docker.docker connection: discover every instance
#    (irisops.backup.iris_instance_info), freeze them all (iris_freeze), confirm with the instances that they are
#    frozen, thaw them all (iris_thaw, in an `always:` block), confirm they are thawed;
# 4. prints a report: host, instance, flavour, how long the freeze and the thaw took, the journal file a restore
#    would start from;
# 5. removes the containers, also when a step fails or the demo is interrupted.
set -euo pipefail

# shellcheck source=tests/harness/env.sh
. "$(dirname "$0")/harness/env.sh"
cd "$IRISOPS_REPO"

HOSTS=(irisops-demo-1 irisops-demo-2)
OUT=$IRISOPS_REPO/tests/output/demo
mkdir -p "$OUT"
export IRISOPS_DEMO_REPORT=$OUT/report.json
rm -f "$IRISOPS_DEMO_REPORT"

names=()
secs=()
timed() {
    local name=$1 t0
    shift
    echo
    echo "==> demo: $name"
    t0=$(irisops_now)
    "$@"
    names+=("$name")
    secs+=("$(irisops_elapsed "$t0")")
    echo "<== demo: $name: ${secs[-1]} s"
}

remove_containers() {
    docker rm -f "${HOSTS[@]}" >/dev/null 2>&1 || true
}

cleanup() {
    local rc=$?
    echo
    echo "==> demo: removing the demo containers"
    remove_containers
    if [ $rc -ne 0 ]; then
        echo "demo: FAILED (rc=$rc); see the output above" >&2
    fi
    exit $rc
}

start_containers() {
    remove_containers  # leftovers of an interrupted run
    local h
    for h in "${HOSTS[@]}"; do
        # systemd as PID 1 without privileges; no network, but the container's own name resolves (sudo needs it)
        docker run -d --name "$h" --hostname "$h" --network none --add-host "$h:127.0.1.1" \
            --tmpfs /run --tmpfs /run/lock -v /sys/fs/cgroup:/sys/fs/cgroup:ro \
            --label irisops.demo=1 "$IRISOPS_IMAGE_EMU" >/dev/null
        echo "started $h"
    done
}

child=
run_playbook() {
    # in the background + wait, so that a TERM/INT to this script acts at once (see on_signal)
    ansible-playbook -i tests/demo/inventory.yml tests/demo/freeze-thaw.yml &
    child=$!
    wait "$child"
    child=
}

on_signal() {
    if [ -n "$child" ]; then
        kill -TERM "$child" 2>/dev/null || true
    fi
    exit 130
}

print_report() {
    python3 - "$IRISOPS_DEMO_REPORT" <<'PY'
import json, sys

rows = json.load(open(sys.argv[1]))
if not rows:
    sys.exit("demo: the report is empty")
cols = [("host", "host"), ("instance", "instance"), ("flavour", "flavour"), ("freeze ms", "freeze_ms"),
        ("thaw ms", "thaw_ms"), ("frozen at (UTC)", "frozen_at"), ("journal file to restore from", "journal_file")]
table = [[str(r.get(k) if r.get(k) is not None else "-") for _, k in cols] for r in rows]
widths = [max(len(h), *(len(t[i]) for t in table)) for i, (h, _) in enumerate(cols)]
line = "  ".join("%-*s" % (w, h) for w, (h, _) in zip(widths, cols))
print("\nFreeze/thaw report (%d instances on %d hosts)" % (len(rows), len({r["host"] for r in rows})))
print(line.rstrip())
print("  ".join("-" * w for w in widths))
for t in table:
    print("  ".join("%-*s" % (w, c) for w, c in zip(widths, t)).rstrip())
PY
}

trap cleanup EXIT
trap on_signal INT TERM
t_all=$(irisops_now)
timed "setup" bash tests/setup.sh
timed "build images" bash tests/harness/build-images.sh
timed "start ${#HOSTS[@]} containers" start_containers
timed "freeze/thaw playbook" run_playbook
print_report
echo
echo "demo timings:"
for i in "${!names[@]}"; do
    printf '  %-30s %8s s\n' "${names[$i]}" "${secs[$i]}"
done
printf '  %-30s %8s s\n' "total" "$(irisops_elapsed "$t_all")"
echo "demo: OK (report also in ${IRISOPS_DEMO_REPORT#"$IRISOPS_REPO"/})"
