#!/usr/bin/env bash
# All documentation checks in one step (for tests/run-all.sh):
#   bash tests/docs/run-checks.sh
# 1. every error message of the modules, module_utils, hook program and roles is explained in docs/troubleshooting.md
# 2. every constant named in docs/unconfirmed.md exists where the page says
# 3. ansible-builder introspect accepts meta/execution-environment.yml (tests/docs/check-ee.sh)
# 4. the docsite builds from the collection tarball without warnings (tests/docs/build-docs.sh; it also checks that
#    docs/docsite is in sync with the Markdown guides when pandoc is installed)
# Prints one line per check and "N passed, N failed"; exits 1 if any failed.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/harness/env.sh
. "$here/../harness/env.sh"
out=${IRISOPS_DOCS_OUT:-$IRISOPS_REPO/tests/output/docs}
mkdir -p "$out"
passed=0
failed=0
run() {
    local name=$1
    shift
    local start log
    start=$(irisops_now)
    log="$out/check-$name.log"
    if "$@" >"$log" 2>&1; then
        passed=$((passed + 1))
        printf '%-22s PASS %6ss  %s\n' "$name" "$(irisops_elapsed "$start")" "$(tail -n 1 "$log")"
    else
        failed=$((failed + 1))
        printf '%-22s FAIL %6ss  see %s\n' "$name" "$(irisops_elapsed "$start")" "$log"
        tail -n 15 "$log" | sed 's/^/    /'
    fi
}
run troubleshooting python3 "$here/check_messages.py"
run unconfirmed python3 "$here/check_unconfirmed.py"
run execution-env bash "$here/check-ee.sh"
run docsite bash "$here/build-docs.sh"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
