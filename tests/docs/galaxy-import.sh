#!/usr/bin/env bash
# Import the collection tarball the way Galaxy / Automation Hub does, with galaxy-importer, offline.
#
#   bash tests/docs/galaxy-import.sh
#
# Builds the tarball (ansible-galaxy collection build, build_ignore of galaxy.yml applies) and runs
# `python -m galaxy_importer.main <tarball>` with tests/docs/galaxy-importer.cfg (no ansible-test container, no
# network: ansible-doc + offline ansible-lint + metadata/README/changelog/tag checks). Fails when the importer
# fails, when its log has any WARNING or ERROR line, or when its result (importer_result.json) does not list
# every module, role and playbook of the working tree, with documentation for each module and a README for each
# role. Output: tests/output/galaxy-import/ (IRISOPS_GALAXY_OUT overrides it).
set -euo pipefail

# shellcheck source=tests/harness/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/../harness/env.sh"

out=${IRISOPS_GALAXY_OUT:-$IRISOPS_REPO/tests/output/galaxy-import}
start=$(irisops_now)
if ! python3 -c 'import galaxy_importer' 2>/dev/null; then
    echo "galaxy-importer is not installed in $IRISOPS_VENV: run bash tests/setup.sh (pinned in tests/requirements-dev.txt)" >&2
    exit 1
fi
rm -rf "$out"
mkdir -p "$out/dist" "$out/tmp"

ansible-galaxy collection build --force --output-path "$out/dist" "$IRISOPS_REPO" >/dev/null
tarball=$(ls "$out"/dist/irisops-backup-*.tar.gz)
echo "== galaxy-importer $(python3 -c 'import importlib.metadata as m; print(m.version("galaxy-importer"))') on ${tarball#"$IRISOPS_REPO"/}"

# The importer writes importer_result.json into the current directory: run it in the output directory.
set +e
(cd "$out" && GALAXY_IMPORTER_CONFIG="$IRISOPS_REPO/tests/docs/galaxy-importer.cfg" \
    GALAXY_IMPORTER_TMP_ROOT_DIR="$out/tmp" python3 -m galaxy_importer.main "$tarball") >"$out/import.log" 2>&1
rc=$?
set -e
# The log ends with the full JSON result; show the messages only.
sed -n '1,/^{/p' "$out/import.log" | grep -v '^{' || true
if [ $rc -ne 0 ] || ! grep -q '^Importer processing completed successfully' "$out/import.log"; then
    echo "galaxy-importer FAILED (rc=$rc); full log: $out/import.log" >&2
    exit 1
fi

python3 - "$out/importer_result.json" "$out/import.log" "$IRISOPS_REPO" <<'PY'
import json, os, re, sys

result_path, log_path, repo = sys.argv[1:4]
data = json.load(open(result_path))
log = open(log_path).read().split('\n{', 1)[0]
problems = []
for line in log.splitlines():
    if re.match(r'^(WARNING|ERROR|CRITICAL)\b', line):
        problems.append('importer said: ' + line)

found = {}
for c in data['docs_blob']['contents']:
    found.setdefault(c['content_type'], {})[c['content_name']] = c
want = {
    'module': sorted(f[:-3] for f in os.listdir(os.path.join(repo, 'plugins/modules')) if f.endswith('.py')),
    'role': sorted(d for d in os.listdir(os.path.join(repo, 'roles'))
                   if os.path.isdir(os.path.join(repo, 'roles', d))),
    'playbook': sorted(f for f in os.listdir(os.path.join(repo, 'playbooks')) if f.endswith(('.yml', '.yaml'))),
}
counts = {}
for kind, names in want.items():
    counts[kind] = len(names)
    for name in names:
        entry = found.get(kind, {}).get(name)
        if entry is None:
            problems.append('%s %s is not in the import result' % (kind, name))
        elif kind == 'module' and not (entry.get('doc_strings') or {}).get('doc'):
            problems.append('module %s has no documentation in the import result (ansible-doc failed?)' % name)
        elif kind == 'role' and not entry.get('readme_html'):
            problems.append('role %s has no README in the import result' % name)
readme = (data['docs_blob'].get('collection_readme') or {}).get('html') or ''
if len(readme) < 200:
    problems.append('the collection README was not rendered')
if not data.get('requires_ansible'):
    problems.append('requires_ansible (meta/runtime.yml) is missing from the import result')
meta = data['metadata']
for p in problems:
    print('FAIL: ' + p)
if problems:
    sys.exit(1)
print('PASS: %s.%s %s imported: %d modules documented, %d roles with README, %d playbooks, requires_ansible %s, '
      '%d documentation files, 0 warnings' % (meta['namespace'], meta['name'], meta['version'], counts['module'],
                                              counts['role'], counts['playbook'], data['requires_ansible'],
                                              len(data['docs_blob'].get('documentation_files') or [])))
PY
echo "galaxy-importer check done in $(irisops_elapsed "$start") s"
