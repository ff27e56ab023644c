# shellcheck shell=bash
# Environment shared by tests/setup.sh, tests/run-all.sh, tests/demo.sh and tests/harness/*.sh.
# Source it (". tests/harness/env.sh"); it only sets variables, it changes nothing on disk.

IRISOPS_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
IRISOPS_CACHE=${IRISOPS_CACHE:-$IRISOPS_REPO/.cache}
IRISOPS_VENV=${IRISOPS_VENV:-$IRISOPS_REPO/.venv}
# ansible_collections tree holding the unpacked third-party collections and irisops/backup -> repo root
IRISOPS_COLLECTIONS=$IRISOPS_CACHE/collections
# rsync copy of the collection at the path layout ansible-test insists on
IRISOPS_ANSIBLE_TEST_ROOT=$IRISOPS_CACHE/ansible-test
IRISOPS_ANSIBLE_TEST_COPY=$IRISOPS_ANSIBLE_TEST_ROOT/ansible_collections/irisops/backup

# Local image names (there is no registry: everything is built by tests/harness/build-images.sh).
IRISOPS_IMAGE_BASE=${IRISOPS_IMAGE_BASE:-irisops/base:bookworm}
IRISOPS_IMAGE_SYSTEMD=${IRISOPS_IMAGE_SYSTEMD:-irisops/systemd:bookworm}
IRISOPS_IMAGE_EMU=${IRISOPS_IMAGE_EMU:-irisops/iris-emu:bookworm}
# private key root of the iris-emu image accepts (sshd -i through docker exec); made by build-images.sh
IRISOPS_EMU_SSH_KEY=${IRISOPS_EMU_SSH_KEY:-$IRISOPS_CACHE/images/emu_ssh_key}

export IRISOPS_REPO IRISOPS_CACHE IRISOPS_VENV IRISOPS_COLLECTIONS IRISOPS_ANSIBLE_TEST_ROOT IRISOPS_ANSIBLE_TEST_COPY
export IRISOPS_IMAGE_BASE IRISOPS_IMAGE_SYSTEMD IRISOPS_IMAGE_EMU IRISOPS_EMU_SSH_KEY

case ":$PATH:" in
    *":$IRISOPS_VENV/bin:"*) ;;
    *) PATH=$IRISOPS_VENV/bin:$PATH ;;
esac
export PATH
export ANSIBLE_COLLECTIONS_PATH=$IRISOPS_COLLECTIONS
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0}
export ANSIBLE_NOCOLOR=${ANSIBLE_NOCOLOR:-1}
export ANSIBLE_RETRY_FILES_ENABLED=false
export PY_COLORS=${PY_COLORS:-0}
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Print "label: N s" for a step; used by every script so that timings look the same everywhere.
irisops_now() { date +%s.%N; }
irisops_elapsed() { awk -v a="$1" -v b="$(irisops_now)" 'BEGIN { printf "%.1f", b - a }'; }
