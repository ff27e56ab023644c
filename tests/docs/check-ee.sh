#!/usr/bin/env bash
# Check meta/execution-environment.yml with ansible-builder (no image is built: there is no registry here).
#   bash tests/docs/check-ee.sh
# Builds the collection tarball, installs it into a scratch collections path, runs `ansible-builder introspect`
# on it and checks that the collection contributes no Python and no system requirement (the modules need nothing
# on the controller). Because "no requirement" looks the same as "file not found", it then adds a probe line to
# both files in a scratch copy and checks that introspect reports both probes as coming from irisops.backup, which
# proves that meta/execution-environment.yml is read and points at the right files.
set -euo pipefail
# shellcheck source=tests/harness/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/../harness/env.sh"

python3 -c 'import ansible_builder' 2>/dev/null || \
    pip install -q "$(grep -E '^ansible-builder==' "$IRISOPS_REPO/tests/requirements-dev.txt")"
work=$(mktemp -d /tmp/irisops-ee.XXXXXX)
trap 'rm -rf "$work"' EXIT
ansible-galaxy collection build --force --output-path "$work/dist" "$IRISOPS_REPO" >/dev/null
ANSIBLE_COLLECTIONS_PATH="$work/collections" ansible-galaxy collection install --offline \
    -p "$work/collections" "$work"/dist/irisops-backup-*.tar.gz >/dev/null
test -f "$work/collections/ansible_collections/irisops/backup/meta/execution-environment.yml" || {
    echo "FAIL: meta/execution-environment.yml is not in the tarball" >&2; exit 1; }

echo "== ansible-builder introspect $work/collections"
ansible-builder introspect -v 3 "$work/collections" \
    > "$work/introspect.yml"
cat "$work/introspect.yml"

python3 - "$work/introspect.yml" <<'PY'
import sys, yaml
data = yaml.safe_load(open(sys.argv[1]))
fails = []
py = data.get('python') or []
system = data.get('system') or []
mine_py = [r for r in py if 'irisops.backup' in str(r)]
mine_sys = [r for r in system if 'irisops.backup' in str(r)]
if mine_py or mine_sys:
    fails.append('irisops.backup contributes requirements: %s %s' % (mine_py, mine_sys))
if fails:
    print('FAIL: ' + '; '.join(fails))
    sys.exit(1)
print('PASS: irisops.backup adds 0 Python and 0 system requirements to an execution environment')
PY

coll="$work/collections/ansible_collections/irisops/backup"
echo "irisops-ee-probe-python" >> "$coll/meta/ee-requirements.txt"
echo "irisops-ee-probe-system [platform:dpkg]" >> "$coll/meta/ee-bindep.txt"
ansible-builder introspect "$work/collections" > "$work/probe.yml"
python3 - "$work/probe.yml" <<'PY'
import sys, yaml
data = yaml.safe_load(open(sys.argv[1]))
py = [str(r) for r in data.get('python') or []]
system = [str(r) for r in data.get('system') or []]
ok_py = any('irisops-ee-probe-python' in r and 'irisops.backup' in r for r in py)
ok_sys = any('irisops-ee-probe-system' in r and 'irisops.backup' in r for r in system)
if not (ok_py and ok_sys):
    print('FAIL: the probe lines were not picked up from meta/ee-*.txt (python %s, system %s)' % (py, system))
    sys.exit(1)
print('PASS: introspect reads meta/execution-environment.yml -> meta/ee-requirements.txt and meta/ee-bindep.txt '
      '(probe lines reported as %r and %r)' % ([r for r in py if 'probe' in r][0], [r for r in system if 'probe' in r][0]))
PY
