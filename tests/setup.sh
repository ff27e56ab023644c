#!/usr/bin/env bash
# Install everything the test rig needs, from scratch, on Debian 12 (run as root on a fresh machine;
# as any user once the system packages and dockerd are there). Idempotent: a second run only checks.
#
#   bash tests/setup.sh
#
# Creates only .venv/ and .cache/ in the repository (both git-ignored), plus the Debian packages and a
# background dockerd when they are missing, fs.inotify.max_user_instances raised to 512 when lower (step_inotify),
# and ansible-test's pip bootstrap script in ~/.ansible/test/cache/
# (see step_ansible_test_pip). Galaxy is not used: the collections the tests need are unpacked
# from the `ansible` wheel on PyPI.
set -euo pipefail

# shellcheck source=tests/harness/env.sh
. "$(dirname "$0")/harness/env.sh"
cd "$IRISOPS_REPO"

ANSIBLE_WHEEL_VERSION=12.3.0
# collections taken from the ansible wheel (path below ansible_collections/)
WHEEL_COLLECTIONS=(community/docker ansible/posix community/general community/library_inventory_filtering_v1)
# Debian package -> a command (or python module, "py:NAME") whose presence means "already there"
APT_PACKAGES="docker.io:dockerd debootstrap:debootstrap qemu-system-x86:qemu-system-x86_64 qemu-utils:qemu-img
openssh-client:ssh rsync:rsync python3-venv:py:ensurepip shellcheck:shellcheck pandoc:pandoc restic:restic"

step_names=()
step_secs=()
run_step() {
    local name=$1 t0 rc=0
    shift
    echo "==> setup: $name"
    t0=$(irisops_now)
    "$@" || rc=$?
    step_names+=("$name")
    step_secs+=("$(irisops_elapsed "$t0")")
    echo "<== setup: $name: ${step_secs[-1]} s"
    if [ $rc -ne 0 ]; then
        echo "setup: step '$name' failed (rc=$rc)" >&2
        exit $rc
    fi
}

have() {
    case $1 in
        py:*) python3 -c "import ${1#py:}" >/dev/null 2>&1 ;;
        *) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] ;;
    esac
}

step_apt() {
    local missing=() entry pkg probe
    for entry in $APT_PACKAGES; do
        pkg=${entry%%:*}
        probe=${entry#*:}
        if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || have "$probe"; then
            continue
        fi
        missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "system packages: all present"
        return 0
    fi
    echo "system packages missing: ${missing[*]}"
    if [ "$(id -u)" != 0 ]; then
        echo "setup: run as root once (apt-get install ${missing[*]}) or install them yourself" >&2
        return 1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

step_dockerd() {
    if docker info >/dev/null 2>&1; then
        echo "docker engine: running ($(docker info --format '{{.ServerVersion}}, cgroup v{{.CgroupVersion}}' 2>/dev/null))"
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "setup: 'docker info' fails and only root can start dockerd; start it or add yourself to the docker group" >&2
        return 1
    fi
    mkdir -p "$IRISOPS_CACHE"
    echo "starting dockerd in the background (log: $IRISOPS_CACHE/dockerd.log)"
    setsid dockerd >"$IRISOPS_CACHE/dockerd.log" 2>&1 </dev/null &
    local i
    for i in $(seq 1 60); do
        if docker info >/dev/null 2>&1; then
            echo "dockerd answered after ${i} s"
            return 0
        fi
        sleep 1
    done
    echo "setup: dockerd did not answer within 60 s; last lines of $IRISOPS_CACHE/dockerd.log:" >&2
    tail -n 20 "$IRISOPS_CACHE/dockerd.log" >&2 || true
    return 1
}

step_inotify() {
    # Every systemd container (molecule scenarios, the hooks fleet, tests/compat) holds about 6 inotify instances of
    # uid 0, and fs.inotify.max_user_instances caps them per uid for the whole host (128 by default: about 20
    # containers, fewer beside other root processes); beyond it a new container's systemd exits at once (255).
    local want=512 have
    have=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo "")
    if [ -z "$have" ] || [ "$have" -ge $want ]; then
        echo "fs.inotify.max_user_instances: ${have:-unknown} (enough)"
        return 0
    fi
    if [ "$(id -u)" != 0 ] || ! sysctl -q -w fs.inotify.max_user_instances=$want 2>/dev/null; then
        echo "fs.inotify.max_user_instances is $have: the 20-container hooks fleet may not start; as root:" \
             "sysctl -w fs.inotify.max_user_instances=$want (not an error)"
        return 0
    fi
    echo "fs.inotify.max_user_instances: raised from $have to $want (until the next boot)"
}

step_venv() {
    local req=tests/requirements-dev.txt stamp_file=$IRISOPS_VENV/.irisops-requirements.sha256 stamp
    if [ ! -x "$IRISOPS_VENV/bin/python" ]; then
        python3 -m venv "$IRISOPS_VENV"
    fi
    stamp="$(sha256sum "$req" | cut -d' ' -f1) $("$IRISOPS_VENV/bin/python" -V 2>&1)"
    if [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then
        echo "venv $IRISOPS_VENV: up to date with $req"
        return 0
    fi
    "$IRISOPS_VENV/bin/python" -m pip install --quiet --upgrade pip
    "$IRISOPS_VENV/bin/python" -m pip install --quiet -r "$req"
    echo "$stamp" >"$stamp_file"
    "$IRISOPS_VENV/bin/python" -m pip freeze | grep -i -E '^(ansible-core|molecule|molecule-plugins|ansible-lint|pytest)==' || true
}

step_collections() {
    local wheel_dir=$IRISOPS_CACHE/wheels wheel
    mkdir -p "$wheel_dir" "$IRISOPS_COLLECTIONS/ansible_collections"
    wheel=$(find "$wheel_dir" -maxdepth 1 -name "ansible-$ANSIBLE_WHEEL_VERSION-*.whl" | head -n 1)
    if [ -z "$wheel" ]; then
        "$IRISOPS_VENV/bin/python" -m pip download --quiet --no-deps --dest "$wheel_dir" "ansible==$ANSIBLE_WHEEL_VERSION"
        wheel=$(find "$wheel_dir" -maxdepth 1 -name "ansible-$ANSIBLE_WHEEL_VERSION-*.whl" | head -n 1)
    fi
    echo "wheel: $wheel"
    # Unpack a collection only when it is absent or its version differs from the wheel's.
    "$IRISOPS_VENV/bin/python" - "$wheel" "$IRISOPS_COLLECTIONS/ansible_collections" "${WHEEL_COLLECTIONS[@]}" <<'PY'
import json, os, shutil, sys, tempfile, zipfile

wheel, dest, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as zf:
    names = zf.namelist()
    for coll in wanted:
        prefix = f"ansible_collections/{coll}/"
        manifest = json.loads(zf.read(prefix + "MANIFEST.json"))
        version = manifest["collection_info"]["version"]
        target = os.path.join(dest, coll)
        try:
            with open(os.path.join(target, "MANIFEST.json")) as fh:
                have = json.load(fh)["collection_info"]["version"]
        except (OSError, ValueError, KeyError):
            have = None
        if have == version:
            print(f"{coll.replace('/', '.')} {version}: present")
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".unpack-", dir=os.path.dirname(target))
        for name in names:
            if name.startswith(prefix) and not name.endswith("/"):
                zf.extract(name, tmp)
        old = target + ".old"
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(target):
            os.rename(target, old)
        os.rename(os.path.join(tmp, prefix), target)
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"{coll.replace('/', '.')} {version}: unpacked (was {have})")
PY
}

step_self_link() {
    # irisops.backup importable from ANSIBLE_COLLECTIONS_PATH: a relative symlink to the repository root
    local link=$IRISOPS_COLLECTIONS/ansible_collections/irisops/backup
    mkdir -p "$(dirname "$link")"
    if [ -L "$link" ] && [ "$(readlink -f "$link")" = "$(readlink -f "$IRISOPS_REPO")" ]; then
        echo "$link -> $(readlink "$link")"
        return 0
    fi
    rm -rf "$link"
    ln -s ../../../.. "$link"
    echo "$link -> $(readlink "$link") (created)"
}

step_ansible_test_copy() {
    # ansible-test wants .../ansible_collections/<ns>/<name> as the current directory; a symlink is not enough
    # (it resolves it and then finds the wrong layout), so keep an rsync copy that every run refreshes.
    mkdir -p "$IRISOPS_ANSIBLE_TEST_COPY"
    rsync -a --delete \
        --exclude=/.git/ --exclude=/.cache/ --exclude=/.venv/ --exclude=/tests/output/ \
        --exclude=__pycache__/ --exclude=.pytest_cache/ --exclude='*.pyc' --exclude=/ansible_collections/ \
        "$IRISOPS_REPO"/ "$IRISOPS_ANSIBLE_TEST_COPY"/
    # The copy lies inside this repository's work tree, where .cache/ is git-ignored; ansible-test walks up to the
    # nearest .git and would then see no files at all. A repository of its own (never committed to: ansible-test
    # lists untracked files too) makes the copy its own content root.
    if [ ! -d "$IRISOPS_ANSIBLE_TEST_COPY/.git" ]; then
        git init -q "$IRISOPS_ANSIBLE_TEST_COPY"
    fi
    echo "copied to $IRISOPS_ANSIBLE_TEST_COPY ($(find "$IRISOPS_ANSIBLE_TEST_COPY" -type f -not -path '*/tests/output/*' | wc -l) files)"
}

step_ansible_test_pip() {
    # `ansible-test sanity --venv` downloads a get-pip script from a host the rig machines cannot reach; the helper
    # writes an equivalent one into ~/.ansible/test/cache/, built from the pip wheel on PyPI (see its header).
    bash tests/harness/ansible-test-pip.sh "$IRISOPS_VENV/bin/python"
}

t_all=$(irisops_now)
run_step "system packages" step_apt
run_step "docker engine" step_dockerd
run_step "inotify instances for systemd containers" step_inotify
run_step "python venv" step_venv
run_step "collections from ansible==$ANSIBLE_WHEEL_VERSION wheel" step_collections
run_step "irisops.backup on the collections path" step_self_link
run_step "ansible-test copy" step_ansible_test_copy
run_step "ansible-test pip bootstrap" step_ansible_test_pip

echo
echo "setup timings:"
for i in "${!step_names[@]}"; do
    printf '  %-50s %8s s\n' "${step_names[$i]}" "${step_secs[$i]}"
done
printf '  %-50s %8s s\n' "total" "$(irisops_elapsed "$t_all")"
echo "setup: done. Use: . tests/harness/env.sh   (puts .venv/bin on PATH and sets ANSIBLE_COLLECTIONS_PATH)"
