#!/usr/bin/env bash
# Build the HTML docsite of irisops.backup with antsibull-docs + Sphinx, from the collection tarball.
#
#   bash tests/docs/build-docs.sh            # prints the path of index.html at the end
#
# Steps: check that docs/docsite/ (generated from the Markdown guides in docs/ by tests/docs/sync-docsite.py) is up
# to date; install the docs tools into .venv if missing (the pins of tests/requirements-dev.txt, from PyPI);
# `ansible-galaxy collection build` the tarball and install it into a private collections path (so the site
# documents exactly what ships); `antsibull-docs lint-collection-docs --plugin-docs` (extra docs, links.yml,
# plugin and role docs); `antsibull-docs sphinx-init --use-current` + `antsibull-docs collection` (module and role
# pages plus the guides of docs/docsite/extra-docs.yml); `sphinx-build`. Intersphinx is switched off (no network
# besides PyPI), so references into docs.ansible.com stay plain text. The script fails on any Sphinx warning or
# error. Output: tests/output/docs/ (IRISOPS_DOCS_OUT overrides it).
set -euo pipefail

# shellcheck source=tests/harness/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/../harness/env.sh"

out=${IRISOPS_DOCS_OUT:-$IRISOPS_REPO/tests/output/docs}
start=$(irisops_now)

echo "== docs/docsite up to date with the Markdown guides"
if command -v pandoc >/dev/null; then
    python3 "$IRISOPS_REPO/tests/docs/sync-docsite.py" --check
else
    echo "   pandoc is not installed (apt-get install pandoc): NOT checked; building what is committed"
fi

if ! python3 -c 'import antsibull_docs, sphinx_ansible_theme' 2>/dev/null; then
    echo "== installing antsibull-docs and sphinx-ansible-theme into $IRISOPS_VENV"
    # the versions pinned in tests/requirements-dev.txt (tests/setup.sh installs them)
    mapfile -t pins < <(grep -E '^(antsibull-docs|ansible-pygments|sphinx|sphinx-ansible-theme)==' \
        "$IRISOPS_REPO/tests/requirements-dev.txt")
    pip install -q "${pins[@]}"
fi

rm -rf "$out/dist" "$out/collections" "$out/site" "$out/sphinx.log"
mkdir -p "$out/dist" "$out/collections" "$out/site"

echo "== building the collection tarball"
ansible-galaxy collection build --force --output-path "$out/dist" "$IRISOPS_REPO" >/dev/null
tarball=$(ls "$out"/dist/irisops-backup-*.tar.gz)
echo "   $tarball"
# Only the freshly installed copy (no repository link, no third-party collections) is documented. Set the path
# first: otherwise ansible-galaxy finds the repository link in .cache/collections and installs nothing.
export ANSIBLE_COLLECTIONS_PATH="$out/collections"
ansible-galaxy collection install --offline -p "$out/collections" "$tarball" >/dev/null
coll="$out/collections/ansible_collections/irisops/backup"
test -f "$coll/MANIFEST.json" || { echo "the tarball did not install to $coll" >&2; exit 1; }

echo "== antsibull-docs lint-collection-docs"
antsibull-docs lint-collection-docs --plugin-docs "$coll"

echo "== antsibull-docs sphinx-init + collection"
antsibull-docs sphinx-init --use-current --dest-dir "$out/site" --project irisops.backup \
    --title 'irisops.backup documentation' --html-short-title irisops.backup \
    --copyright 'irisops.backup contributors' irisops.backup >/dev/null
cat >> "$out/site/conf.py" <<'EOF'

# --- added by tests/docs/build-docs.sh ---
# Offline build: no intersphinx inventories (references into docs.ansible.com stay plain text).
intersphinx_mapping = {}
nitpicky = False
EOF
mkdir -p "$out/site/rst"
chmod og-w "$out/site/rst"
(cd "$out/site" && antsibull-docs --config-file antsibull-docs.cfg collection --cleanup everything \
    --use-current --dest-dir rst irisops.backup >/dev/null)

test -d "$out/site/rst/collections/irisops/backup/docsite" || {
    echo "antsibull-docs wrote no guides (docs/docsite/extra-docs.yml)" >&2; exit 1; }

echo "== sphinx-build"
log="$out/sphinx.log"
set +e
(cd "$out/site" && sphinx-build -M html rst build -c . --keep-going -q) > "$log" 2>&1
rc=$?
set -e
cat "$log"
# Offline: the references into docs.ansible.com and into other collections' docs (intersphinx) cannot resolve.
# Those, and only those, are accepted.
offline_re="WARNING: undefined label: '(ansible_configuration_settings|common_return_values|ansible_collections\.(community|ansible)\.[a-z_.]+)' \[ref\.ref\]"
accepted=$(grep -c -E "$offline_re" "$log" || true)
warnings=$(grep -E 'WARNING|ERROR|CRITICAL' "$log" | grep -c -v -E "$offline_re" || true)
echo "   $accepted accepted offline warning(s) (references into docs.ansible.com / other collections)"
index="$out/site/build/html/index.html"
if [ $rc -ne 0 ] || [ ! -f "$index" ] || [ "$warnings" -ne 0 ]; then
    echo "docs build FAILED (sphinx rc=$rc, $warnings warning(s)/error(s); log $log)" >&2
    exit 1
fi
pages=$(find "$out/site/build/html" -name '*.html' | wc -l)
echo "docs built in $(irisops_elapsed "$start") s: $pages HTML pages, 0 other warnings"
echo "site: $index"
