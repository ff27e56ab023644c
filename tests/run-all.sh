#!/usr/bin/env bash
# The whole test suite (the CI runs exactly this through .ci/run):
#
#   bash tests/run-all.sh            the full tier: before a submission (the CI budget is 45 minutes on 2 cores)
#   bash tests/run-all.sh --quick    the quick tier: before every commit (about 2-3 minutes on the rig): setup,
#                                    ansible-test sanity without pylint, unit tests, emulator tests, ansible-lint,
#                                    docs checks -- no images, containers, VMs or ansible-core versions
#
# Steps: tests/setup.sh, image builds, ansible-test sanity, unit tests, emulator tests, ansible-lint, docs checks
# (tests/docs/run-checks.sh), every ansible-core version the collection claims (tests/compat/run.sh), the hooks fleet
# (tests/fleet/run-hooks-fleet.sh), galaxy-importer (tests/docs/galaxy-import.sh), AWX-style playbook runs
# (tests/awx/run_playbooks.py, ansible-runner), every molecule scenario found under extensions/molecule/
# (iris_community only with IRISOPS_REAL_IRIS=1), the VM rig (tests/vm/run.py: the real-LVM tests of the backup
# engine, journal shipping, restore drill and real restore in one qemu VM) and the fault summary.
#
#   MOLECULE_SCENARIOS="smoke hooks"  run only these scenarios (default: every directory with a molecule.yml)
#   IRISOPS_REAL_IRIS=1              also run iris_community (needs the intersystems/iris-community image)
#   IRISOPS_RUN_DEMO=1               also run the demo scenario (what bash tests/demo.sh runs)
#   IRISOPS_VM_LANE=1                run the VM rig step "vm rig (tests/vm/run.py)" in a second lane, started right
#                                    after setup and the image builds, alongside everything else: a TCG VM keeps
#                                    one core busy while the controller mostly waits on SSH, so the other steps use
#                                    the other core; its row joins the table at the end (0: the VM rig runs in the
#                                    main lane after the molecule scenarios)
#   IRISOPS_LANE_SCENARIOS="hooks smoke"     molecule scenarios the second lane runs
#                                    after the VM rig (instead of the main lane), so both lanes end at about the
#                                    same time ("": none); scenarios whose timing is tight (deadman, freeze_matrix)
#                                    stay in the main lane
#   IRISOPS_VM_RIG=0                 no VM rig step (a SKIP row; default 1)
#   IRISOPS_STEP_TIMEOUT=3600        seconds after which one step is killed and counted as failed
#   IRISOPS_TOTAL_BUDGET=5100        seconds for the whole run (85 min); steps that would start after it are
#                                    counted as failed ("not run"), a step running into it is killed
#   IRISOPS_CI_BUDGET=2700           seconds (45 min) the CI allows a full run: a WARNING line is printed as soon
#                                    as the run passes it and again under the summary (nothing is stopped)
#   IRISOPS_FLEET_HOSTS=4            containers of the fleet step (0: no fleet step); 20 cost about 20 minutes
#   IRISOPS_COMPAT_VERSIONS="2.16 2.21"  ansible-core minor versions of the compat step (default: every version of
#                                    tests/compat/run.sh except .venv's, which all other steps test; none: no step)
#
# Logs: tests/output/run-all/<step>.log. Prints a summary table and ends with "N passed, N failed";
# exits non-zero if any step failed or if no test step ran at all.
set -uo pipefail

QUICK=0
case ${1:-} in
    --quick) QUICK=1 ;;
    "") ;;
    *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac

# shellcheck source=tests/harness/env.sh
. "$(dirname "$0")/harness/env.sh"
cd "$IRISOPS_REPO" || exit 1

LOG_DIR=$IRISOPS_REPO/tests/output/run-all
rm -rf "$LOG_DIR"
mkdir -p "$LOG_DIR"
# fault records of this run only (bad_inputs and the VM rig write them; "fault summary" reads them)
FAULTS_DIR=$IRISOPS_REPO/tests/output/faults
[ $QUICK = 1 ] || rm -rf "$FAULTS_DIR"
STEP_TIMEOUT=${IRISOPS_STEP_TIMEOUT:-3600}
TOTAL_BUDGET=${IRISOPS_TOTAL_BUDGET:-5100}
CI_BUDGET=${IRISOPS_CI_BUDGET:-2700}
FLEET_HOSTS=${IRISOPS_FLEET_HOSTS:-4}
COMPAT_VERSIONS=${IRISOPS_COMPAT_VERSIONS:-}
T_START=$(date +%s)

names=()
secs=()
results=()
notes=()
tests_run=0
fault_scenarios=()

# Seconds the next step may run: the step timeout, or what is left of the total budget if that is less; prints
# nothing when less than 30 s are left (the step is then counted as failed, "not run").
step_limit() {
    local left=$((TOTAL_BUDGET - ($(date +%s) - T_START)))
    [ $left -lt 30 ] || echo $((left < STEP_TIMEOUT ? left : STEP_TIMEOUT))
}

# step_result RC LIMIT: the table's result of a step that ran under `timeout LIMIT` and exited with RC
step_result() {
    if [ "$1" -eq 0 ]; then
        echo "PASS"
    elif [ "$1" -eq 124 ] || [ "$1" -eq 137 ]; then
        echo "FAIL (timeout ${2}s)"
    else
        echo "FAIL (rc=$1)"
    fi
}

NOT_RUN="FAIL (not run: ${TOTAL_BUDGET}s budget used up)"

# Prints the WARNING line once (either lane) when the run has passed the CI budget; nothing is stopped.
ci_budget_check() {
    local took=$(($(date +%s) - T_START))
    [ $took -gt "$CI_BUDGET" ] || return 0
    mkdir "$LOG_DIR/.ci-budget-warned" 2>/dev/null || return 0
    echo "WARNING: run-all has run ${took} s, past the CI budget of ${CI_BUDGET} s ($((CI_BUDGET / 60)) minutes), after: $1"
}

# run_step KIND NAME CMD... ; KIND is "prep" (setup/build) or "test" (counts towards "some test ran")
run_step() {
    local kind=$1 name=$2 t0 rc log limit
    shift 2
    log=$(step_log "$name")
    echo
    echo "################ $name"
    limit=$(step_limit)
    if [ -z "$limit" ]; then
        names+=("$name")
        secs+=("-")
        results+=("$NOT_RUN")
        echo "################ $name: ${results[-1]}"
        return 1
    fi
    t0=$(irisops_now)
    # shell functions reach the timeout'd bash through export -f (below)
    # a pipe, not a process substitution: the pipeline ends when tee has written everything, and no `wait` is
    # needed (a plain `wait` would also wait for the vm lane running in the background)
    timeout --kill-after=60 "$limit" bash -c '"$@"' run-all-step "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    names+=("$name")
    secs+=("$(irisops_elapsed "$t0")")
    results+=("$(step_result "$rc" "$limit")")
    [ "$kind" = test ] && tests_run=$((tests_run + 1))
    echo "################ $name: ${results[-1]} in ${secs[-1]} s (log: ${log#"$IRISOPS_REPO"/})"
    ci_budget_check "$name"
    return "$rc"
}

skip_step() {
    names+=("$1")
    secs+=("-")
    results+=("SKIP")
    notes+=("$1: $2")
    echo
    echo "################ $1: SKIPPED: $2"
}

step_log() {
    echo "$LOG_DIR/$(echo "$1" | tr -c 'A-Za-z0-9_.-' '_').log"
}

# The VM rig: one step, one VM (tests/vm/run.py boots it, runs every case, destroys it; its fault records go to
# tests/output/faults, its logs to tests/output/vm). Lane 0 of the rig (VM irisops-vmrig-0 on port 22620, container
# irisops-vmrig-sftp-0) unless IRISOPS_VMRIG_LANE says otherwise.
VM_RIG_STEP="vm rig (tests/vm/run.py)"
vm_rig() {
    python3 tests/vm/run.py
}

# --- sanity: ansible-test inside the rsync copy made by tests/setup.sh -------------------------------------
sanity() {
    local skip=() reason
    cd "$IRISOPS_ANSIBLE_TEST_COPY" || return 1
    rm -rf tests/output
    if [ "${1:-}" = quick ]; then
        # pylint takes 30 of the 41 s of a cached sanity run on the rig; the full tier runs it
        echo "pylint: skipped in the quick tier (three quarters of the sanity time; bash tests/run-all.sh runs it)"
        skip+=(--skip-test pylint)
    fi
    # Tests whose tool is missing are skipped here, by name and with the reason, never silently.
    if ! command -v pwsh >/dev/null 2>&1; then
        reason="pslint: skipped, PowerShell (pwsh) is not installed (the collection has no PowerShell content)"
        echo "$reason"
        skip+=(--skip-test pslint)
    fi
    if ! command -v shellcheck >/dev/null 2>&1; then
        reason="shellcheck: skipped, the shellcheck command is not installed (tests/setup.sh installs it)"
        echo "$reason"
        skip+=(--skip-test shellcheck)
    fi
    # --venv: ansible-test installs each test's pinned requirements into its own virtualenv
    # (~/.ansible/test/venv, reused across runs), so they cannot clash with .venv's tools.
    ansible-test sanity --python 3.11 --venv --color no "${skip[@]}"
}

pytest_in_copy() {
    local rc
    cd "$IRISOPS_ANSIBLE_TEST_COPY" || return 1
    # ansible_collections.irisops.backup.* resolves through the copy's path layout
    PYTHONPATH=$IRISOPS_ANSIBLE_TEST_ROOT${PYTHONPATH:+:$PYTHONPATH} \
        python -m pytest -p no:cacheprovider -q -rs "$@"
    rc=$?
    if [ $rc -eq 5 ]; then
        echo "run-all: pytest collected no tests in $* -- counted as a failure"
    fi
    return $rc
}

lint() {
    ansible-lint --profile production
}

molecule_scenario() {
    local scenario=$1 rc
    molecule test -s "$scenario"
    rc=$?
    if [ $rc -ne 0 ]; then
        echo "run-all: molecule test -s $scenario failed (rc=$rc); making sure its instances are gone"
        molecule destroy -s "$scenario" >/dev/null 2>&1 || true
    fi
    return $rc
}

export -f sanity pytest_in_copy lint molecule_scenario vm_rig irisops_now irisops_elapsed

# bg_step NAME CMD...: a test step like run_step, but in the background with its output only in its log; bg_collect
# waits for it and adds its row to the table.
bg_pids=()
bg_results=()
bg_step() {
    local name=$1 log limit result_file
    shift
    log=$(step_log "$name")
    result_file=$LOG_DIR/bg-${#bg_results[@]}.result
    bg_results+=("$result_file")
    limit=$(step_limit)
    echo
    echo "################ $name: started in the background (log: ${log#"$IRISOPS_REPO"/})"
    (
        if [ -z "$limit" ]; then
            printf '%s\t-\t%s\n' "$name" "$NOT_RUN" >"$result_file"
            exit 0
        fi
        t0=$(irisops_now)
        timeout --kill-after=60 "$limit" bash -c '"$@"' run-all-step "$@" >"$log" 2>&1
        rc=$?
        printf '%s\t%s\t%s\n' "$name" "$(irisops_elapsed "$t0")" "$(step_result "$rc" "$limit")" >"$result_file"
    ) &
    bg_pids+=($!)
}
# bg_lane "NAME::COMMAND" ...: steps one after another in ONE background lane (each under its own timeout, output
# only in its log, a row each); COMMAND is a line for bash -c (the exported functions above are there).
bg_lane() {
    local result_file item
    result_file=$LOG_DIR/bg-${#bg_results[@]}.result
    bg_results+=("$result_file")
    : >"$result_file"
    for item in "$@"; do
        echo
        echo "################ ${item%%::*}: queued in the background lane (log: $(step_log "${item%%::*}" | sed "s|^$IRISOPS_REPO/||"))"
    done
    (
        for item in "$@"; do
            name=${item%%::*}
            log=$(step_log "$name")
            limit=$(step_limit)
            if [ -z "$limit" ]; then
                printf '%s\t-\t%s\n' "$name" "$NOT_RUN" >>"$result_file"
                continue
            fi
            t0=$(irisops_now)
            timeout --kill-after=60 "$limit" bash -c "${item#*::}" >"$log" 2>&1
            rc=$?
            printf '%s\t%s\t%s\n' "$name" "$(irisops_elapsed "$t0")" "$(step_result "$rc" "$limit")" >>"$result_file"
            ci_budget_check "$name (background lane)"
        done
    ) &
    bg_pids+=($!)
}
# an interrupted run-all: SIGTERM to the timeout of every background step (it passes it on to the step)
stop_bg_steps() {
    local p
    for p in "${bg_pids[@]}"; do
        pkill -TERM -P "$p" 2>/dev/null
    done
}
bg_collect() {
    local f n sec res
    [ ${#bg_pids[@]} -gt 0 ] || return 0
    wait "${bg_pids[@]}"
    for f in "${bg_results[@]}"; do
        while IFS=$'\t' read -r n sec res; do
            names+=("$n")
            secs+=("$sec")
            results+=("$res")
            tests_run=$((tests_run + 1))
            echo
            echo "################ $n: $res in $sec s (log: $(step_log "$n" | sed "s|^$IRISOPS_REPO/||"))"
            case $res in PASS) ;; *) tail -n 25 "$(step_log "$n")" ;; esac
        done <"$f"
    done
}

# The quick tier: the static checks and the tests that need no image, container or VM. The emulator tests mostly
# wait for the emulated instances (15 of their 43 s are CPU), so they run beside the other steps.
quick_tier() {
    bg_step "emulator tests (pytest tests/emulator/tests)" pytest_in_copy tests/emulator/tests
    run_step test "ansible-test sanity (quick: no pylint)" sanity quick
    run_step test "unit tests (pytest tests/unit)" pytest_in_copy tests/unit
    run_step test "ansible-lint --profile production" lint
    run_step test "docs checks (tests/docs/run-checks.sh)" bash tests/docs/run-checks.sh
    bg_collect
}

t_all=$(irisops_now)
tier=full
[ $QUICK = 1 ] && tier=quick
echo "run-all ($tier tier): $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname), $(nproc) cores; logs in ${LOG_DIR#"$IRISOPS_REPO"/}"

if ! run_step prep "setup" bash tests/setup.sh; then
    echo "run-all: tests/setup.sh failed; nothing else can run"
elif [ $QUICK = 1 ]; then
    quick_tier
else
    # molecule scenarios: every directory with a molecule.yml, or exactly MOLECULE_SCENARIOS
    if [ -n "${MOLECULE_SCENARIOS:-}" ]; then
        read -r -a scenarios <<<"$MOLECULE_SCENARIOS"
    else
        scenarios=()
        for f in extensions/molecule/*/molecule.yml; do
            [ -f "$f" ] && scenarios+=("$(basename "$(dirname "$f")")")
        done
    fi
    for s in "${scenarios[@]}"; do
        # a scenario that writes fault records names their directory
        grep -rqs 'tests/output/faults' "extensions/molecule/$s" && fault_scenarios+=("$s")
    done
    # an interrupted run-all stops the background steps too (the VM rig destroys its VM and container on SIGTERM)
    trap 'stop_bg_steps; exit 130' INT TERM

    run_step prep "build images" bash tests/harness/build-images.sh
    lane_scenarios=()
    vm_rig_where=main
    if [ "${IRISOPS_VM_RIG:-1}" = 0 ]; then
        vm_rig_where=skip
    elif [ "${IRISOPS_VM_LANE:-1}" = 1 ]; then
        vm_rig_where=lane
        # the lane runs the VM rig, then the scenarios of IRISOPS_LANE_SCENARIOS, so that the two lanes end at about
        # the same time (full run from a fresh clone, 2026-12-07 15:28, 2440 s: build images ended at 83 s, the rig
        # took 1692 s and hooks 592 s: lane 2367 s; main lane 2440 s, with compat 364 s and smoke 30 s; since then
        # compat runs the units only on the edge versions and smoke runs here)
        lane_items=("$VM_RIG_STEP::vm_rig")
        for s in ${IRISOPS_LANE_SCENARIOS-hooks smoke}; do
            if [ -f "extensions/molecule/$s/molecule.yml" ] && [[ " ${scenarios[*]} " == *" $s "* ]]; then
                lane_items+=("molecule $s::molecule_scenario $s")
                lane_scenarios+=("$s")
            fi
        done
        bg_lane "${lane_items[@]}"
    fi
    run_step test "ansible-test sanity" sanity
    if [ -d tests/unit ]; then
        run_step test "unit tests (pytest tests/unit)" pytest_in_copy tests/unit
    else
        run_step test "unit tests (pytest tests/unit)" sh -c 'echo "tests/unit is missing"; exit 1'
    fi
    if [ -d tests/emulator/tests ]; then
        run_step test "emulator tests (pytest tests/emulator/tests)" pytest_in_copy tests/emulator/tests
    else
        run_step test "emulator tests (pytest tests/emulator/tests)" \
            sh -c 'echo "tests/emulator/tests is missing"; exit 1'
    fi
    run_step test "ansible-lint --profile production" lint
    run_step test "docs checks (tests/docs/run-checks.sh)" bash tests/docs/run-checks.sh
    # units, quick sanity and every module against an emulator container under each other ansible-core version
    # (the .venv's version is the one every other step tests)
    if [ "$COMPAT_VERSIONS" = none ]; then
        skip_step "compat" "IRISOPS_COMPAT_VERSIONS=none"
    else
        if [ -n "$COMPAT_VERSIONS" ]; then
            compat_args=(--versions "$COMPAT_VERSIONS")
        else
            compat_args=(--others)
        fi
        # the other versions skip the slow module tests whose subject is engine code, not the module's interface
        # (restic retention over four real backups, torn and killed copies, restore rollbacks, the window cap:
        # ~60 of the ~80 s per version, measured with pytest --durations): the main unit step runs them with
        # .venv's ansible-core; and only the oldest and newest other version run the units at all (--units-edges):
        # every version still runs its sanity and every module on a managed host (the full run of 2026-12-07
        # 15:28 measured the step at 364 s, units 25-35 s per version; the main lane was the longer one)
        compat_deselect=""
        for t in test_iris_backup.py::test_retention_keeps_the_floor_and_the_newest \
                 test_iris_backup.py::test_a_torn_copy_is_forgotten_and_not_recorded \
                 test_iris_backup.py::test_a_write_daemon_resumed_inside_the_window_records_nothing \
                 test_iris_restore.py::test_recover_only_rolls_back_a_killed_restore \
                 test_iris_restore.py::test_a_failed_restore_is_rolled_back_and_fails \
                 test_iris_lvm_snapshot.py::test_window_is_capped_at_the_deadman_timeout; do
            compat_deselect+=" --deselect tests/unit/plugins/modules/$t"
        done
        export IRISOPS_COMPAT_PYTEST_ARGS="${IRISOPS_COMPAT_PYTEST_ARGS-${compat_deselect# }}"
        run_step test "compat (ansible-core $(bash tests/compat/run.sh "${compat_args[@]}" --list))" \
            bash tests/compat/run.sh "${compat_args[@]}" --units-edges
    fi
    if [ "$FLEET_HOSTS" -gt 0 ]; then
        run_step test "hooks fleet ($FLEET_HOSTS hosts)" bash tests/fleet/run-hooks-fleet.sh --hosts "$FLEET_HOSTS" --remove
    else
        skip_step "hooks fleet" "IRISOPS_FLEET_HOSTS=0"
    fi
    run_step test "galaxy-importer" bash tests/docs/galaxy-import.sh
    run_step test "awx playbooks (ansible-runner)" python3 tests/awx/run_playbooks.py

    for s in "${scenarios[@]}"; do
        if [[ " ${lane_scenarios[*]} " == *" $s "* ]]; then
            continue    # in the background lane, after the VM rig
        elif [ ! -f "extensions/molecule/$s/molecule.yml" ]; then
            run_step test "molecule $s" sh -c "echo 'no scenario extensions/molecule/$s'; exit 1"
        elif [ "$s" = iris_community ] && [ "${IRISOPS_REAL_IRIS:-0}" != 1 ]; then
            skip_step "molecule $s" "needs the real intersystems/iris-community image; set IRISOPS_REAL_IRIS=1"
        elif [ "$s" = demo ] && [ "${IRISOPS_RUN_DEMO:-0}" != 1 ]; then
            skip_step "molecule $s" "the demo of bash tests/demo.sh, not a test; set IRISOPS_RUN_DEMO=1"
        else
            run_step test "molecule $s" molecule_scenario "$s"
        fi
    done
    case $vm_rig_where in
        main) run_step test "$VM_RIG_STEP" vm_rig ;;
        skip) skip_step "$VM_RIG_STEP" "IRISOPS_VM_RIG=0" ;;
        lane)
            echo
            echo "################ waiting for the vm rig (background lane)"
            bg_collect
            ;;
    esac

    # last step: the table of the fault records (tests/faults/summary.py; fails on a case that did not survive)
    if [ ${#fault_scenarios[@]} -gt 0 ] || [ "$vm_rig_where" != skip ]; then
        run_step test "fault summary" python tests/faults/summary.py --dir "$FAULTS_DIR"
    else
        skip_step "fault summary" "neither the VM rig nor a scenario that writes fault records ran (they write to tests/output/faults)"
    fi
fi

passed=0
failed=0
echo
echo "run-all summary"
printf '  %-50s %9s  %s\n' "step" "seconds" "result"
printf '  %-50s %9s  %s\n' "----" "-------" "------"
for i in "${!names[@]}"; do
    printf '  %-50s %9s  %s\n' "${names[$i]}" "${secs[$i]}" "${results[$i]}"
    case ${results[$i]} in
        PASS) passed=$((passed + 1)) ;;
        FAIL*) failed=$((failed + 1)) ;;
    esac
done
printf '  %-50s %9s\n' "total" "$(irisops_elapsed "$t_all")"
for n in "${notes[@]}"; do
    echo "  skipped: $n"
done
# Why each failed step failed, in a few lines from its log: the CI shows only the tail of this output, so the
# cause has to be here, under the table, not only in a log file the CI does not keep.
for i in "${!names[@]}"; do
    case ${results[$i]} in FAIL*) ;; *) continue ;; esac
    log=$(step_log "${names[$i]}")
    [ -f "$log" ] || continue
    echo "  why ${names[$i]} failed (last matching lines of ${log#"$IRISOPS_REPO"/}):"
    grep -a -E 'NOT SURVIVED|did not survive|fatal: \[|FAILED|\bFAIL\b|^ERROR|Error:|Traceback|AssertionError' \
        "$log" | grep -v -E 'FAILED - RETRYING|ignoring|^\s*[0-9]+ passed, 0 failed' | tail -n 6 | cut -c1-240 |
        sed 's/^/    /'
done
took=$(($(date +%s) - T_START))
if [ $took -gt "$CI_BUDGET" ]; then
    echo "WARNING: run-all took ${took} s, more than the CI budget of ${CI_BUDGET} s ($((CI_BUDGET / 60)) minutes)"
fi
if [ $tests_run -eq 0 ]; then
    echo "run-all: no test step ran -- this is a failure"
    failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
