#!/usr/bin/env bash
# Every ansible-core minor version the collection claims (meta/runtime.yml: requires_ansible), each in its own venv:
#
#   bash tests/compat/run.sh [--versions "2.16 2.19" | --others] [--parts venv,units,sanity,modules]
#                            [--sanity quick|full] [--units modules|all] [--units-edges]
#   bash tests/compat/run.sh [--others] --list    prints the versions it would test ("2.16, 2.17, ...") and exits
#
# --others: every version except the minor version of .venv's ansible-core (tests/requirements-dev.txt), which the
# rest of tests/run-all.sh tests in full (whole sanity, units, every molecule scenario); run-all passes it.
#
# Parts, for each version (VERSIONS_TABLE below: minor, pinned release, the Python it runs on):
#   venv     .cache/compat/<minor>: `python -m venv` + ansible-core==<pin> and pytest (the pin of
#            tests/requirements-dev.txt). Stamped like tests/setup.sh: a second run only checks. Also writes the pip
#            bootstrap script that version's `ansible-test --venv` wants (tests/harness/ansible-test-pip.sh).
#   units    plain pytest with that venv's Python and ansible-core (tests/unit/conftest.py makes the collection
#            importable) of tests/unit/plugins/modules: the unit tests of code that imports ansible-core (the modules,
#            AnsibleModule, the end-to-end playbook test with that venv's ansible-playbook). plugins/module_utils and
#            the other unit tests import nothing from ansible-core, so another version cannot change their verdict;
#            --units all runs the whole of tests/unit anyway. IRISOPS_COMPAT_PYTEST_ARGS adds pytest arguments
#            (e.g. "--deselect tests/unit/plugins/modules/test_iris_backup.py"). --units-edges: only the oldest and
#            the newest of the versions tested (run-all passes it): a version between two whose unit tests pass, whose
#            sanity passes and whose modules run on a managed host, is not where an AnsibleModule change hides, and
#            each version's units cost ~30-80 s of the CI's 45 minutes (the others get a SKIP row saying so).
#   sanity   `ansible-test sanity --venv` of that version, in the copy
#            .cache/compat/ansible-test/ansible_collections/irisops/backup (refreshed from the working tree once per
#            run): the tests whose verdict depends on the ansible-core version (SANITY_TESTS; pylint too under the
#            newest version), or with --sanity full every test (pslint/shellcheck skipped by name when their tool is
#            missing). ansible-test keeps each test's virtualenv in ~/.ansible/test/venv (per version of its
#            requirements), so only the first run of a version installs them (about 100 s per version).
#   modules  tests/compat/modules.yml with that venv's ansible-playbook over the community.docker.docker connection
#            against one irisops/iris-emu:bookworm container, irisops-compat (started once per run, removed at the
#            end): every module of the collection runs on the managed host under this ansible-core.
# A version whose Python is not found (2.20 and later need Python >= 3.12; Debian 12 has 3.11) is SKIPPED with the
# reason, not failed; IRISOPS_PYTHON_3_12=/path/to/python3.12 names one by hand.
#
# Logs: tests/output/compat/<minor>-<part>.log. Prints a table (version, part, seconds, result) and
# "N passed, N failed, N skipped"; exits 1 if any part failed. The container name is fixed: do not run two at once.
set -uo pipefail

# shellcheck source=tests/harness/env.sh
. "$(dirname "$0")/../harness/env.sh"
cd "$IRISOPS_REPO" || exit 1

# minor  release  python -- the newest release of each minor version on PyPI when this was last changed
VERSIONS_TABLE="
2.16 2.16.19 3.11
2.17 2.17.14 3.11
2.18 2.18.19 3.11
2.19 2.19.14 3.11
2.20 2.20.10 3.12
2.21 2.21.5 3.12
"
# sanity tests whose verdict depends on the ansible-core version: documentation and argument-spec schemas
# (validate-modules, ansible-doc, action-plugin-docs), meta/runtime.yml schema (runtime-metadata), what the modules
# and module_utils may import from that ansible-core (import), syntax for the Python it runs on (compile), the
# yamllint rules of that ansible-test and the ignore-<version>.txt file (ignores)
SANITY_TESTS="action-plugin-docs ansible-doc compile ignores import runtime-metadata validate-modules yamllint"
# plus pylint under the newest version only: each ansible-test release adds checks to its pylint plugins (2.21 flags
# subprocess.Popen in module_utils, for one) while the older ones' are the same as the main sanity step's or fewer;
# pylint is the costly test (about 45 s of CPU per version on the rig)
# --python of ansible-test sanity: the Python of the managed hosts of this rig (Debian 12, the emulator image), also
# for 2.20+ whose controller runs on 3.12 (their ansible-test still tests modules for 3.11 targets)
SANITY_PYTHON=${IRISOPS_COMPAT_SANITY_PYTHON:-3.11}

COMPAT_DIR=$IRISOPS_CACHE/compat
COMPAT_ROOT=$COMPAT_DIR/ansible-test
COMPAT_COPY=$COMPAT_ROOT/ansible_collections/irisops/backup
LOG_DIR=$IRISOPS_REPO/tests/output/compat
CONTAINER=irisops-compat

all_versions=$(echo "$VERSIONS_TABLE" | awk 'NF { print $1 }' | xargs)
newest=${all_versions##* }
versions=$all_versions
parts="venv,units,sanity,modules"
sanity_mode=quick
units_mode=modules
units_edges=0
while [ $# -gt 0 ]; do
    case $1 in
        --versions) versions=$2; shift 2 ;;
        --others)
            main=$("$IRISOPS_VENV/bin/python" -c 'from ansible.release import __version__ as v; print(".".join(v.split(".")[:2]))') || exit 1
            versions=$(for v in $all_versions; do [ "$v" = "$main" ] || echo "$v"; done | xargs)
            shift ;;
        --parts) parts=$2; shift 2 ;;
        --sanity) sanity_mode=$2; shift 2 ;;
        --units) units_mode=$2; shift 2 ;;
        --units-edges) units_edges=1; shift ;;
        --list) list=1; shift ;;
        *) echo "usage: $0 [--versions \"2.16 2.19\" | --others] [--parts venv,units,sanity,modules] [--sanity quick|full] [--units modules|all] [--units-edges] [--list]" >&2
           exit 2 ;;
    esac
done
if [ "${list:-0}" = 1 ]; then
    echo "${versions// /, }"
    exit 0
fi
case $sanity_mode in quick|full) ;; *) echo "compat: --sanity quick or full" >&2; exit 2 ;; esac
case $units_mode in modules|all) ;; *) echo "compat: --units modules or all" >&2; exit 2 ;; esac
want() { case ",$parts," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

mkdir -p "$LOG_DIR" "$COMPAT_DIR"
rows=()
passed=0
failed=0
skipped=0

row() {  # version part seconds result detail
    rows+=("$(printf '  %-8s %-9s %8s  %s' "$1" "$2" "$3" "$4${5:+  ($5)}")")
    case $4 in
        PASS) passed=$((passed + 1)) ;;
        SKIP*) skipped=$((skipped + 1)) ;;
        *) failed=$((failed + 1)) ;;
    esac
    echo "compat: ansible-core $1 $2: $4 in $3 s${5:+ ($5)}"
}

# An interpreter of Python X.Y that really runs (a pyenv shim of a version pyenv has not selected does not): the
# base interpreter behind it, so that venvs do not stack.
find_python() {
    local want=$1 var cand base root
    var=IRISOPS_PYTHON_${want//./_}
    for cand in "${!var:-}" "python$want" "$IRISOPS_VENV/bin/python$want" "/usr/bin/python$want" \
                "/usr/local/bin/python$want"; do
        [ -n "$cand" ] || continue
        base=$("$cand" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$want'; print(sys._base_executable)" \
               2>/dev/null) && [ -x "$base" ] && { echo "$base"; return 0; }
    done
    if command -v pyenv >/dev/null 2>&1 && root=$(pyenv root 2>/dev/null); then
        for cand in "$root"/versions/"$want".*/bin/python"$want"; do
            [ -x "$cand" ] && "$cand" -c '' 2>/dev/null && { echo "$cand"; return 0; }
        done
    fi
    return 1
}

pytest_pin=$(grep -E '^pytest==' tests/requirements-dev.txt | head -n 1)
pytest_pin=${pytest_pin:-pytest}

make_venv() {  # minor release python
    local minor=$1 release=$2 base=$3 venv=$COMPAT_DIR/$1 stamp want_stamp
    want_stamp="ansible-core==$release $pytest_pin $("$base" -V 2>&1)"
    stamp=$(cat "$venv/.irisops-compat" 2>/dev/null || true)
    if [ "$stamp" = "$want_stamp" ] && [ -x "$venv/bin/ansible-test" ]; then
        echo "venv $venv: up to date ($want_stamp)"
    else
        rm -rf "$venv"
        "$base" -m venv "$venv" || return 1
        "$venv/bin/python" -m pip install --quiet --upgrade pip || return 1
        "$venv/bin/python" -m pip install --quiet "ansible-core==$release" "$pytest_pin" || return 1
        echo "$want_stamp" >"$venv/.irisops-compat"
        "$venv/bin/python" -m pip freeze | grep -i -E '^(ansible-core|pytest|jinja2|pyyaml)=='
    fi
    bash tests/harness/ansible-test-pip.sh "$venv/bin/python"
}

refresh_copy() {
    mkdir -p "$COMPAT_COPY"
    rsync -a --delete \
        --exclude=/.git/ --exclude=/.cache/ --exclude=/.venv/ --exclude=/tests/output/ \
        --exclude=__pycache__/ --exclude=.pytest_cache/ --exclude='*.pyc' --exclude=/ansible_collections/ \
        "$IRISOPS_REPO"/ "$COMPAT_COPY"/ || return 1
    # its own repository, as in tests/setup.sh: ansible-test would otherwise find the work tree's .git (where .cache/
    # is ignored) and see no files at all
    [ -d "$COMPAT_COPY/.git" ] || git init -q "$COMPAT_COPY"
    echo "compat: copy of the working tree in ${COMPAT_COPY#"$IRISOPS_REPO"/}"
}

run_units() {  # minor
    local venv=$COMPAT_DIR/$1 where=tests/unit/plugins/modules extra=()
    [ "$units_mode" = all ] && where=tests/unit
    read -r -a extra <<<"${IRISOPS_COMPAT_PYTEST_ARGS:-}"
    cd "$COMPAT_COPY" || return 1
    PATH=$venv/bin:$PATH "$venv/bin/python" -m pytest -p no:cacheprovider -q -rs "${extra[@]}" "$where"
}

run_sanity() {  # minor
    local venv=$COMPAT_DIR/$1 tests=() t
    cd "$COMPAT_COPY" || return 1
    rm -rf tests/output
    if [ "$sanity_mode" = quick ]; then
        for t in $SANITY_TESTS; do tests+=(--test "$t"); done
        [ "$1" = "$newest" ] && tests+=(--test pylint)
    else
        command -v pwsh >/dev/null 2>&1 || { echo "pslint: skipped, pwsh is not installed"; tests+=(--skip-test pslint); }
        command -v shellcheck >/dev/null 2>&1 || { echo "shellcheck: skipped, not installed"; tests+=(--skip-test shellcheck); }
    fi
    PATH=$venv/bin:$PATH ansible-test sanity --python "$SANITY_PYTHON" --venv --color no "${tests[@]}"
}

container_up=0
start_container() {
    [ $container_up = 1 ] && return 0
    docker image inspect "$IRISOPS_IMAGE_EMU" >/dev/null 2>&1 || {
        echo "compat: image $IRISOPS_IMAGE_EMU missing - run tests/harness/build-images.sh first" >&2; return 1; }
    docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
    # same settings as the molecule scenarios and tests/fleet: systemd as PID 1 unprivileged, no network
    docker run -d --name "$CONTAINER" --hostname "$CONTAINER" --add-host "$CONTAINER:127.0.1.1" --network none \
        --tmpfs /run --tmpfs /run/lock -v /sys/fs/cgroup:/sys/fs/cgroup:ro --stop-signal SIGRTMIN+3 \
        "$IRISOPS_IMAGE_EMU" /lib/systemd/systemd >/dev/null || return 1
    container_up=1
    docker exec "$CONTAINER" systemctl is-system-running --wait >/dev/null 2>&1 || true
    printf '%s\n' "all:" "  children:" "    compat:" "      hosts:" "        $CONTAINER:" \
        "          ansible_connection: community.docker.docker" \
        "          ansible_python_interpreter: /usr/bin/python3" >"$COMPAT_DIR/inventory.yml"
}
cleanup() {
    [ $container_up = 1 ] && docker rm -f "$CONTAINER" >/dev/null 2>&1
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

run_modules() {  # minor
    local venv=$COMPAT_DIR/$1
    # irisops.backup from the copy of this run, community.docker (the connection) from the rig's collections
    PATH=$venv/bin:$PATH ANSIBLE_COLLECTIONS_PATH=$COMPAT_ROOT:$IRISOPS_COLLECTIONS ANSIBLE_PIPELINING=true \
        ANSIBLE_LOCAL_TEMP=$COMPAT_DIR/tmp/$1 \
        "$venv/bin/ansible-playbook" -i "$COMPAT_DIR/inventory.yml" "$IRISOPS_REPO/tests/compat/modules.yml"
}

# part MINOR NAME CMD...: run, time, log, add a row; the detail is the last line of pytest / the recap
part() {
    local minor=$1 name=$2 t0 rc log detail
    shift 2
    log=$LOG_DIR/$minor-$name.log
    t0=$(irisops_now)
    ("$@") >"$log" 2>&1
    rc=$?
    detail=""
    case $name in
        units) detail=$(grep -E '^[=]* ?[0-9]+ (passed|failed)|[0-9]+ (passed|failed|skipped|error)' "$log" | tail -n 1 |
                        sed -E 's/^=+ //; s/ =+$//') ;;
        sanity) detail="$(grep -c '^Running sanity test' "$log") tests, $sanity_mode" ;;
        modules) detail=$(grep -E "^$CONTAINER +: ok=" "$log" | sed -E 's/ +/ /g; s/^[^:]*: //' | cut -d' ' -f1-4) ;;
    esac
    if [ $rc -eq 0 ]; then
        row "$minor" "$name" "$(irisops_elapsed "$t0")" PASS "$detail"
    else
        row "$minor" "$name" "$(irisops_elapsed "$t0")" "FAIL (rc=$rc, log ${log#"$IRISOPS_REPO"/})" "$detail"
        tail -n 25 "$log" | sed 's/^/    /'
    fi
    return $rc
}

t_all=$(irisops_now)
echo "compat: ansible-core $(echo "$versions" | xargs | sed 's/ /, /g'); parts $parts; units $units_mode; sanity $sanity_mode; logs in ${LOG_DIR#"$IRISOPS_REPO"/}"
if want units || want sanity || want modules; then
    refresh_copy || exit 1
fi
for minor in $versions; do
    line=$(echo "$VERSIONS_TABLE" | awk -v m="$minor" '$1 == m')
    if [ -z "$line" ]; then
        row "$minor" "-" "-" "FAIL (not in VERSIONS_TABLE of tests/compat/run.sh)"
        continue
    fi
    read -r _ release pyver <<<"$line"
    if ! base=$(find_python "$pyver"); then
        row "$minor" "all" "-" "SKIP: ansible-core $release needs Python $pyver, none found (set IRISOPS_PYTHON_${pyver//./_})"
        continue
    fi
    echo
    echo "======== ansible-core $release on Python $pyver ($base)"
    # a version whose venv cannot be made runs nothing else
    part "$minor" venv make_venv "$minor" "$release" "$base" || continue
    if want units; then
        if [ $units_edges = 1 ] && [ "$minor" != "${versions%% *}" ] && [ "$minor" != "${versions##* }" ]; then
            row "$minor" units "-" "SKIP (--units-edges: the oldest and newest tested version run the units)"
        else
            part "$minor" units run_units "$minor"
        fi
    fi
    want sanity && part "$minor" sanity run_sanity "$minor"
    if want modules; then
        if start_container; then
            part "$minor" modules run_modules "$minor"
        else
            row "$minor" modules "-" "FAIL (container $CONTAINER did not start)"
        fi
    fi
done

echo
echo "compat summary"
printf '  %-8s %-9s %8s  %s\n' version part seconds result
for r in "${rows[@]}"; do echo "$r"; done
printf '  %-8s %-9s %8s\n' total "" "$(irisops_elapsed "$t_all")"
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ] && [ $passed -gt 0 ]
