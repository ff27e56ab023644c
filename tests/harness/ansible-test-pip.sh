#!/usr/bin/env bash
# Put the pip bootstrap script that `ansible-test --venv` would download into ~/.ansible/test/cache/, for the
# ansible-test installed in the Python environment of PYTHON (default: .venv's). Used by tests/setup.sh (.venv) and
# tests/compat/run.sh (one venv per ansible-core version; each ansible-test release may want another pip).
#
#   bash tests/harness/ansible-test-pip.sh [PYTHON]
#
# `ansible-test sanity --venv` bootstraps pip into each new test venv with a get-pip script that it downloads from
# ci-files.testing.ansible.com into ~/.ansible/test/cache/ -- a host the rig machines cannot reach, so on a fresh
# machine every sanity test fails with "does not have pip available".  This writes an equivalent script there (same
# contract: `python get_pip_X.py [pip install args] [--no-setuptools] [--no-wheel]`) that runs pip from the pip wheel
# of the version ansible-test wants, downloaded from PyPI into .cache/wheels.
set -euo pipefail

# shellcheck source=tests/harness/env.sh
. "$(dirname "$0")/env.sh"

python=${1:-$IRISOPS_VENV/bin/python}
wheel_dir=$IRISOPS_CACHE/wheels
version=$("$python" - <<'PY'
import os, re, ansible_test
src = open(os.path.join(os.path.dirname(ansible_test.__file__), '_internal', 'python_requirements.py')).read()
m = re.search(r"default_packages = dict\(\s*pip='([0-9.]+)'", src)
print(m.group(1) if m else '')
PY
)
if [ -z "$version" ]; then
    echo "ansible-test-pip: cannot find the pip version ansible-test bootstraps (ansible_test changed?) in $python" >&2
    exit 1
fi
cache=$HOME/.ansible/test/cache
script=$cache/get_pip_${version//./_}.py
if [ -f "$script" ] && { ! grep -q '^# Written by irisops.backup' "$script" ||
                         [ -f "$cache/pip-$version-py3-none-any.whl" ]; }; then
    echo "ansible-test pip $version bootstrap script: present ($script)"
    exit 0
fi
mkdir -p "$wheel_dir" "$cache"
wheel=$(find "$wheel_dir" -maxdepth 1 -name "pip-$version-py3-none-any.whl" | head -n 1)
if [ -z "$wheel" ]; then
    "$python" -m pip download --quiet --no-deps --dest "$wheel_dir" "pip==$version"
    wheel=$(find "$wheel_dir" -maxdepth 1 -name "pip-$version-py3-none-any.whl" | head -n 1)
fi
cp "$wheel" "$cache/"
cat >"$script.tmp" <<PY
# Written by irisops.backup tests/harness/ansible-test-pip.sh in place of ansible-test's download of get-pip $version (unreachable here).
# Runs pip from the wheel next to this file and installs the requested packages (pip==$version: that same wheel).
import os
import sys
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'pip-$version-py3-none-any.whl'))
from pip._internal.cli.main import main  # noqa: E402
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
sys.exit(main(['install', '--upgrade', '--force-reinstall', '--find-links', HERE] + args))
PY
mv "$script.tmp" "$script"
echo "ansible-test pip $version bootstrap script: written ($script, pip wheel copied next to it)"
