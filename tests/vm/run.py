# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The VM rig: the real-LVM tests of the backup engine in ONE qemu VM (TCG), booted once (TEST ONLY).

    python3 tests/vm/run.py [--lane N] [--cases a,b,...] [--keep] [--list]

Steps: the VM image (tests/harness/vm/build-image.sh, cached), the sftp repository host (a container of
irisops/iris-emu:bookworm, network none, reached from the VM through qemu's guestfwd: 10.0.2.100:22 runs
``docker exec -i CONTAINER ... sshd -i`` per connection), the VM (tests/harness/vm/start.sh), the golden set-up
(ONE ssh call: tests/vm/guest/setup.sh), then every case in ONE ssh call each (``rig.py case NAME``: reset, run,
look, check; tests/vm/guest/rig.py), then the VM and the container are destroyed (always, also on SIGTERM).

  --lane N     VM irisops-vmrig-N on 127.0.0.1:2262N, container irisops-vmrig-sftp-N (N = 0..9, default 0 or
               $IRISOPS_VMRIG_LANE); different lanes can run at the same time
  --cases      only these cases (in the rig's order); --list prints them
  --keep       leave the VM and the container running at the end (debugging; stop them with --destroy)
  --destroy    only stop and remove the lane's VM and container
  --reuse      use the lane's running VM and container (left by --keep): set-up again (it is idempotent), then the
               cases (debugging)
  --no-setup   with --reuse: only ship the rig's and the engine's files again, keep the VM's state (the repository
               and what earlier cases left in it: the cases that build on earlier ones can be run alone; debugging)

Environment: IRISOPS_VMRIG_ROLE_PLAYBOOK (the "role" case: ansible-playbook of that playbook against the VM after
the engine cases; default tests/vm/role.yml, the lvm_backup role and its service started once; "": skipped),
IRISOPS_VMRIG_CASE_TIMEOUT (seconds per case, default 1800), and the VM rig's variables of tests/harness/vm
(IRISOPS_VM_MEM, IRISOPS_VM_CPU, default here "max", ...).

Prints a table (step/case, seconds, result), writes tests/output/vm/<case>.log (the VM side's stderr),
tests/output/vm/results.json and the fault records tests/output/faults/<suite>-<case>.json
(tests/faults/summary.py); exits 1 when any step or case failed.
"""

from __future__ import absolute_import, division, print_function

import argparse
import glob
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.environ.get('IRISOPS_REPO') or os.path.abspath(os.path.join(HERE, '..', '..'))
CACHE = os.environ.get('IRISOPS_CACHE') or os.path.join(REPO, '.cache')
VM_CACHE = os.environ.get('IRISOPS_VM_CACHE') or os.path.join(CACHE, 'vm')
VM_KEY = os.path.join(VM_CACHE, 'id_ed25519')
EMU_IMAGE = os.environ.get('IRISOPS_IMAGE_EMU') or 'irisops/iris-emu:bookworm'
EMU_KEY = os.environ.get('IRISOPS_EMU_SSH_KEY') or os.path.join(CACHE, 'images', 'emu_ssh_key')
OUT = os.path.join(REPO, 'tests', 'output', 'vm')
FAULTS = os.path.join(REPO, 'tests', 'output', 'faults')
GUEST_FILES = ('setup.sh', 'rig.py', 'lvm_module.py', 'fault_watch.py')
CASE_TIMEOUT = int(os.environ.get('IRISOPS_VMRIG_CASE_TIMEOUT', '1800'))


def engine_files():
    """The engine files a host needs for irisops-backup: _backup.ENGINE_FILES, read from the source (the rig follows
    the engine without importing it)."""
    import ast
    import re
    with open(os.path.join(REPO, 'plugins', 'module_utils', '_backup.py')) as f:
        m = re.search(r'^ENGINE_FILES = (\([^)]*\))', f.read(), re.M)
    if not m:
        raise RuntimeError('ENGINE_FILES not found in plugins/module_utils/_backup.py')
    return ast.literal_eval(m.group(1))


def now():
    return time.time()


def say(text):
    sys.stdout.write('%s vmrig: %s\n' % (time.strftime('%H:%M:%S'), text))
    sys.stdout.flush()


class Lane(object):
    def __init__(self, n):
        self.n = n
        self.vm = 'irisops-vmrig-%d' % n
        self.port = 22620 + n
        self.ctr = 'irisops-vmrig-sftp-%d' % n

    def ssh_argv(self, command):
        return ['ssh', '-i', VM_KEY, '-p', str(self.port), '-o', 'StrictHostKeyChecking=no',
                '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'BatchMode=yes',
                '-o', 'ServerAliveInterval=30', '-o', 'ServerAliveCountMax=10', 'root@127.0.0.1', command]


def run(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          check=False, **kw)


# ---------------------------------------------------------------------------------------------------------------
# The sftp repository host
# ---------------------------------------------------------------------------------------------------------------

def ensure_emu_image():
    """The iris-emu image (only its sshd and its root key are used). run-all builds it in its main lane; when it is
    missing, wait for a build-images.sh that is running, else build it."""
    deadline = now() + 900
    while run(['docker', 'image', 'inspect', EMU_IMAGE]).returncode != 0:
        busy = run(['pgrep', '-f', 'tests/harness/build-images.sh']).returncode == 0
        if not busy:
            say('image %s missing: building it (tests/harness/build-images.sh)' % EMU_IMAGE)
            res = run(['bash', os.path.join(REPO, 'tests', 'harness', 'build-images.sh')])
            if res.returncode != 0:
                raise RuntimeError('build-images.sh failed:\n%s' % res.stdout[-3000:])
        elif now() > deadline:
            raise RuntimeError('image %s still missing after 900 s of waiting for build-images.sh' % EMU_IMAGE)
        else:
            time.sleep(5)
    if not os.path.isfile(EMU_KEY):
        raise RuntimeError('%s missing (tests/harness/build-images.sh makes it)' % EMU_KEY)


def container_up(lane):
    run(['docker', 'rm', '-f', lane.ctr])
    res = run(['docker', 'run', '-d', '--name', lane.ctr, '--network', 'none', '--entrypoint', '/bin/sleep',
               '--label', 'irisops.vmrig=%d' % lane.n, EMU_IMAGE, 'infinity'])
    if res.returncode != 0:
        raise RuntimeError('docker run failed: %s' % res.stdout)
    res = run(['docker', 'exec', lane.ctr, 'sh', '-c', 'mkdir -p /run/sshd /srv/restic && '
               'cut -d" " -f1,2 /etc/ssh/ssh_host_ed25519_key.pub'])
    if res.returncode != 0:
        raise RuntimeError('container %s: %s' % (lane.ctr, res.stdout))
    authorize_key(lane)
    return res.stdout.strip()


def authorize_key(lane):
    """root of the container accepts $IRISOPS_EMU_SSH_KEY: written into its authorized_keys here, because the image
    tag is shared by every checkout on this machine while the key is this checkout's (.cache/images): an image
    another checkout built holds that checkout's key."""
    pub = run(['ssh-keygen', '-y', '-f', EMU_KEY])
    if pub.returncode != 0:
        raise RuntimeError('ssh-keygen -y -f %s: %s' % (EMU_KEY, pub.stdout))
    res = subprocess.run(['docker', 'exec', '-i', lane.ctr, 'sh', '-c', 'umask 077 && mkdir -p /root/.ssh && '
                          'cat > /root/.ssh/authorized_keys'], input=pub.stdout, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    if res.returncode != 0:
        raise RuntimeError('authorizing the key in %s: %s' % (lane.ctr, res.stdout))


def sftp_down(lane):
    res = run(['docker', 'kill', lane.ctr])
    state = run(['docker', 'inspect', '-f', '{{.State.Running}}', lane.ctr]).stdout.strip()
    return 'docker kill rc %s, running=%s' % (res.returncode, state)


def sftp_up(lane):
    res = run(['docker', 'start', lane.ctr])
    run(['docker', 'exec', lane.ctr, 'mkdir', '-p', '/run/sshd'])
    state = run(['docker', 'inspect', '-f', '{{.State.Running}}', lane.ctr]).stdout.strip()
    return 'docker start rc %s, running=%s' % (res.returncode, state)


def guestfwd(lane):
    return ("tcp:10.0.2.100:22-cmd:docker exec -i %s sh -c 'mkdir -p /run/sshd && exec /usr/sbin/sshd -i'"
            % lane.ctr)


# ---------------------------------------------------------------------------------------------------------------
# What goes into the VM (one tar on the set-up's stdin)
# ---------------------------------------------------------------------------------------------------------------

def ansible_dir():
    try:
        import ansible  # noqa: F401  pylint: disable=import-outside-toplevel
        return os.path.dirname(ansible.__file__)
    except ImportError:
        venv = os.environ.get('IRISOPS_VENV') or os.path.join(REPO, '.venv')
        found = sorted(glob.glob(os.path.join(venv, 'lib', 'python3*', 'site-packages', 'ansible', '__init__.py')))
        if not found:
            raise RuntimeError('ansible-core not found (run tests/setup.sh, then . tests/harness/env.sh)')
        return os.path.dirname(found[-1])


def stage(known_hosts_line):
    """The rig's tarball: guest scripts, engine files, keys, ansible's module_utils + the collection's plugins, all
    byte-compiled here (the VM's Python is 3.11 too; tar keeps the mtimes the .pyc files refer to), so that the VM
    compiles nothing under TCG."""
    import compileall
    tmp = tempfile.mkdtemp(prefix='vmrig-stage-')
    try:
        def copy(src, dst):
            dst = os.path.join(tmp, dst)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.isdir(src):
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
            else:
                shutil.copy2(src, dst)

        def write(dst, data, mode=0o644):
            dst = os.path.join(tmp, dst)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(dst, 'wb') as f:
                f.write(data)
            os.chmod(dst, mode)
        mu = os.path.join(REPO, 'plugins', 'module_utils')
        for f in GUEST_FILES:
            copy(os.path.join(HERE, 'guest', f), f)
        for f in engine_files():
            copy(os.path.join(mu, f), 'engine/' + f)
        with open(EMU_KEY, 'rb') as f:
            write('keys/repo_key', f.read(), 0o600)
        write('keys/known_hosts', ('10.0.2.100 %s\n' % known_hosts_line).encode())
        adir = ansible_dir()
        copy(os.path.join(adir, 'module_utils'), 'ansible/ansible/module_utils')
        copy(os.path.join(adir, 'release.py'), 'ansible/ansible/release.py')
        write('ansible/ansible/__init__.py', b'')
        coll = 'ansible/ansible_collections/irisops/backup/'
        for d in ('ansible/ansible_collections/', 'ansible/ansible_collections/irisops/', coll, coll + 'plugins/',
                  coll + 'plugins/modules/', coll + 'plugins/module_utils/'):
            write(d + '__init__.py', b'')
        copy(os.path.join(REPO, 'plugins', 'modules', 'lvm_snapshot.py'), coll + 'plugins/modules/lvm_snapshot.py')
        for f in sorted(os.listdir(mu)):
            if f.endswith('.py'):
                copy(os.path.join(mu, f), coll + 'plugins/module_utils/' + f)
        if not compileall.compile_dir(tmp, quiet=1, workers=1):
            raise RuntimeError('byte-compiling the rig\'s files failed')
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode='w:gz') as tar:
            tar.add(tmp, arcname='.')
        return buf.getvalue()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# One ssh call, with the case's questions (RIG-ASK) answered on its stdin
# ---------------------------------------------------------------------------------------------------------------

def ssh_call(lane, command, log_path, stdin_data=None, timeout=CASE_TIMEOUT):
    """Run ``command`` in the VM (one ssh call).  Returns (rc, result dict or None, stdout lines)."""
    proc = subprocess.Popen(lane.ssh_argv(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    lines, result = [], [None]
    log = open(log_path, 'ab')

    def pump_err():
        for raw in iter(proc.stderr.readline, b''):
            log.write(raw)
            log.flush()
    t_err = threading.Thread(target=pump_err)
    t_err.daemon = True
    t_err.start()
    if stdin_data is not None:
        proc.stdin.write(stdin_data)
        proc.stdin.close()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for raw in iter(proc.stdout.readline, b''):
            line = raw.decode('utf-8', 'replace').rstrip('\n')
            if line.startswith('RIG-RESULT '):
                result[0] = json.loads(line[len('RIG-RESULT '):])
                continue
            if line.startswith('RIG-ASK '):
                what = line.split()[1]
                detail = {'sftp-down': sftp_down, 'sftp-up': sftp_up}.get(what, lambda _lane: 'unknown question')(lane)
                log.write(('controller: %s -> %s\n' % (what, detail)).encode())
                proc.stdin.write(('RIG-DONE %s %s\n' % (what, detail)).encode())
                proc.stdin.flush()
                continue
            lines.append(line)
            log.write((line + '\n').encode())
        proc.wait()
    finally:
        timer.cancel()
        t_err.join(5)
        log.close()
    rc = proc.returncode if not (proc.returncode == -signal.SIGKILL and not result[0]) else 'timeout %ss' % timeout
    return rc, result[0], lines


# ---------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------

class Table(object):
    def __init__(self):
        self.rows = []

    def add(self, name, seconds, result):
        self.rows.append((name, seconds, result))
        say('%s: %s in %.1f s' % (name, result, seconds))

    def failed(self):
        return [r for r in self.rows if r[2].startswith('FAIL')]

    def show(self, total):
        print('\nvm rig summary')
        print('  %-36s %8s  %s' % ('step / case', 'seconds', 'result'))
        print('  %-36s %8s  %s' % ('-----------', '-------', '------'))
        for name, sec, res in self.rows:
            print('  %-36s %8.1f  %s' % (name, sec, res))
        print('  %-36s %8.1f' % ('total', total))
        cases = [r for r in self.rows if r[0].startswith('case ')]
        print('%d cases: %d passed, %d failed, %d skipped' % (
            len(cases), len([r for r in cases if r[2] == 'PASS']), len([r for r in cases if r[2].startswith('FAIL')]),
            len([r for r in cases if r[2].startswith('SKIP')])))


def destroy(lane):
    run(['bash', os.path.join(REPO, 'tests', 'harness', 'vm', 'stop.sh'), lane.vm])
    run(['docker', 'rm', '-f', lane.ctr])


def role_case(lane, table, results):
    playbook = os.environ.get('IRISOPS_VMRIG_ROLE_PLAYBOOK', os.path.join(HERE, 'role.yml'))
    if not playbook:
        table.add('case role', 0.0, 'SKIP (IRISOPS_VMRIG_ROLE_PLAYBOOK is empty)')
        return
    t0 = now()
    inv = os.path.join(OUT, 'role-inventory.ini')
    with open(inv, 'w') as f:
        f.write('[vmrig]\n%s ansible_host=127.0.0.1 ansible_port=%d ansible_user=root '
                'ansible_ssh_private_key_file=%s ansible_python_interpreter=/usr/bin/python3 '
                'ansible_ssh_common_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"\n'
                % (lane.vm, lane.port, VM_KEY))
    facts = os.path.join(OUT, 'role-vars.json')
    with open(facts, 'w') as f:
        json.dump({'vmrig_repository': 'sftp:root@10.0.2.100:/srv/restic/repo',
                   'vmrig_repository_ssh_key': '/etc/irisops/repo_key',
                   'vmrig_repository_known_hosts': '/etc/irisops/known_hosts',
                   'vmrig_repository_password_file': '/etc/irisops/restic-password',
                   'vmrig_instances': ['IRISA', 'IRISB'], 'vmrig_vg': 'vgbk'}, f, indent=1)
    log = os.path.join(OUT, 'role.log')
    # 1. the install as an AWX job would run it (issue 13 item 6): the collection's playbook lvm_backup.yml through
    # ansible-runner, the survey answers as AWX passes them - strings, also for booleans ("true") - and the instances
    # as a multiple-select list; no backup from the play (lvm_backup_run "false"), the timer on
    status, detail = runner_install_job(lane)
    with open(log, 'w') as f:
        f.write('ansible-runner job install (survey answers as strings): %s\n%s\n' % (status, detail))
    if status != 'successful':
        results.append({'case': 'role', 'ok': False, 'seconds': round(now() - t0, 1), 'playbook': playbook})
        table.add('case role', now() - t0, 'FAIL (ansible-runner install job %s, %s)' % (
            status, os.path.relpath(log, REPO)))
        return
    # 2. the service the timer starts, and the checks (role_install false: the job above installed it)
    with open(log, 'a') as f:
        f.flush()
        # pipelining, as molecule's config (extensions/molecule/config.yml) and an operator's ansible.cfg have it:
        # one ssh exec per task instead of a transfer and three execs, each seconds under TCG
        env = dict(os.environ, ANSIBLE_PIPELINING='True')
        res = subprocess.run(['ansible-playbook', '-i', inv, '-e', '@' + facts, '-e', 'role_install=false', playbook],
                             stdout=f, stderr=subprocess.STDOUT, check=False, timeout=CASE_TIMEOUT, env=env)
    ok = res.returncode == 0
    results.append({'case': 'role', 'ok': ok, 'seconds': round(now() - t0, 1), 'playbook': playbook})
    table.add('case role', now() - t0, 'PASS' if ok else 'FAIL (ansible-playbook rc %s, %s)' % (
        res.returncode, os.path.relpath(log, REPO)))


def runner_install_job(lane):
    """(status, detail) of an AWX-style job (ansible-runner) of playbooks/lvm_backup.yml against the lane's VM."""
    import ansible_runner  # the rig's venv has it (tests/awx uses it too)
    res = run(lane.ssh_argv('cat /etc/irisops/restic-password'))
    if res.returncode != 0:
        return 'error', 'cannot read the repository password on the VM: %s' % res.stdout[-400:]
    pdd = os.path.join(OUT, 'role-runner')
    shutil.rmtree(pdd, ignore_errors=True)
    os.makedirs(os.path.join(pdd, 'inventory'))
    shutil.copytree(os.path.join(REPO, 'playbooks'), os.path.join(pdd, 'project'))
    with open(os.path.join(pdd, 'inventory', 'hosts.json'), 'w') as f:
        json.dump({'vmrig': {'hosts': {lane.vm: {
            'ansible_host': '127.0.0.1', 'ansible_port': lane.port, 'ansible_user': 'root',
            'ansible_ssh_private_key_file': VM_KEY, 'ansible_python_interpreter': '/usr/bin/python3',
            'ansible_ssh_common_args': '-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'}}}}, f)
    answers = {
        'lvm_backup_hosts': 'vmrig',
        'lvm_backup_run': 'false', 'lvm_backup_timer': 'true', 'lvm_backup_init_repository': 'false',
        'lvm_backup_set_history': 'true', 'lvm_backup_mirror_primary': 'fail',
        'lvm_backup_instances': ['IRISA', 'IRISB'],
        'lvm_backup_repository': 'sftp:root@10.0.2.100:/srv/restic/repo',
        'lvm_backup_repository_password': res.stdout.strip(),
        'lvm_backup_repository_ssh_key': '/etc/irisops/repo_key',
        'lvm_backup_repository_known_hosts': '/etc/irisops/known_hosts',
        'lvm_backup_verify_read_data_subset': '',
    }
    env = {'ANSIBLE_COLLECTIONS_PATH': os.environ.get('ANSIBLE_COLLECTIONS_PATH', ''), 'ANSIBLE_PIPELINING': 'True',
           'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_HOST_KEY_CHECKING': 'false', 'ANSIBLE_RETRY_FILES_ENABLED': 'false'}
    r = ansible_runner.run(private_data_dir=pdd, playbook='lvm_backup.yml', extravars=answers, envvars=env,
                           quiet=True, timeout=CASE_TIMEOUT)
    stats = r.stats or {}
    per_host = dict((k, (stats.get(k) or {}).get(lane.vm, 0)) for k in ('ok', 'changed', 'failures', 'dark'))
    tail = '' if r.status == 'successful' else '\n'.join(r.stdout.read().splitlines()[-60:])
    return r.status, 'rc %s %s%s' % (r.rc, per_host, ('\n' + tail) if tail else '')


def boot(lane, table):
    """VM image, VM, container: the host key line of the sftp host, or None when a step failed."""
    t0 = now()
    res = run(['bash', os.path.join(REPO, 'tests', 'harness', 'vm', 'build-image.sh')])
    table.add('vm image (build-image.sh)', now() - t0, 'PASS' if res.returncode == 0 else 'FAIL')
    say(res.stdout.strip().splitlines()[-1] if res.stdout.strip() else '')
    if res.returncode != 0:
        print(res.stdout[-3000:])
        return None
    destroy(lane)
    t0 = now()
    env = dict(os.environ, IRISOPS_VM_GUESTFWD=guestfwd(lane))
    env.setdefault('IRISOPS_VM_CPU', 'max')
    res = run(['bash', os.path.join(REPO, 'tests', 'harness', 'vm', 'start.sh'), lane.vm, str(lane.port)], env=env)
    say(res.stdout.strip().splitlines()[-1] if res.stdout.strip() else '')
    table.add('boot (start.sh)', now() - t0, 'PASS' if res.returncode == 0 else 'FAIL')
    if res.returncode != 0:
        print(res.stdout[-3000:])
        return None
    t0 = now()
    ensure_emu_image()
    host_key = container_up(lane)
    table.add('sftp container', now() - t0, 'PASS')
    return host_key


def main():
    ap = argparse.ArgumentParser(prog='tests/vm/run.py', description=__doc__.split('\n', maxsplit=1)[0])
    ap.add_argument('--lane', type=int, default=int(os.environ.get('IRISOPS_VMRIG_LANE', '0')))
    ap.add_argument('--cases')
    ap.add_argument('--keep', action='store_true')
    ap.add_argument('--destroy', action='store_true')
    ap.add_argument('--list', action='store_true')
    ap.add_argument('--reuse', action='store_true')
    ap.add_argument('--no-setup', action='store_true')
    args = ap.parse_args()
    if args.no_setup and not args.reuse:
        ap.error('--no-setup goes with --reuse')
    if not 0 <= args.lane <= 9:
        ap.error('--lane is 0..9 (ports 22620-22629)')
    lane = Lane(args.lane)
    all_cases = run([sys.executable, os.path.join(HERE, 'guest', 'rig.py'), 'list']).stdout.split()
    if args.list:
        print('\n'.join(all_cases + ['role']))
        return 0
    if args.destroy:
        destroy(lane)
        return 0
    cases = all_cases
    if args.cases:
        want = [x.strip() for x in args.cases.split(',') if x.strip()]
        unknown = [x for x in want if x not in all_cases + ['role']]
        if unknown:
            ap.error('unknown case(s) %s (see --list)' % ', '.join(unknown))
        cases = [x for x in all_cases if x in want]
    run_role = not args.cases or 'role' in (args.cases or '')

    os.makedirs(OUT, exist_ok=True)
    for f in glob.glob(os.path.join(OUT, '*.log')):
        os.unlink(f)
    os.makedirs(FAULTS, exist_ok=True)
    if not args.cases:
        for f in glob.glob(os.path.join(FAULTS, 'vmrig_*.json')) + glob.glob(os.path.join(FAULTS, 'soak-*.json')):
            os.unlink(f)
    table = Table()
    results = []
    t_all = now()

    def on_signal(signum, _frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        say('received signal %d: stopping%s' % (signum, '' if args.keep else ' (the finally block destroys the VM '
                                                                             'and the container)'))
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    say('lane %d: VM %s on 127.0.0.1:%d, sftp container %s, %d case(s)'
        % (lane.n, lane.vm, lane.port, lane.ctr, len(cases)))
    try:
        if args.reuse:
            host_key = run(['docker', 'exec', lane.ctr, 'cut', '-d', ' ', '-f1,2',
                            '/etc/ssh/ssh_host_ed25519_key.pub']).stdout.strip()
            authorize_key(lane)
        else:
            host_key = boot(lane, table)
            if host_key is None:
                return 1
        t0 = now()
        payload = stage(host_key)
        log_path = os.path.join(OUT, 'setup.log')
        rc, _r, lines = ssh_call(lane, 'rm -rf /opt/irisops-vmrig && mkdir -p /opt/irisops-vmrig && '
                                 'tar -xz -C /opt/irisops-vmrig && %sbash /opt/irisops-vmrig/setup.sh' % (
                                     'RIG_SETUP_ONLY=engine ' if args.no_setup else ''),
                                 log_path, stdin_data=payload, timeout=900)
        for line in lines:
            if line.startswith('setup:'):
                say(line)
        table.add('setup (one ssh call)', now() - t0, 'PASS' if rc == 0 else 'FAIL (rc %s, %s)' % (
            rc, os.path.relpath(log_path, REPO)))
        if rc != 0:
            print('\n'.join(lines[-40:]))
            return 1
        for name in cases:
            t0 = now()
            if run(['docker', 'inspect', '-f', '{{.State.Running}}', lane.ctr]).stdout.strip() != 'true':
                say('sftp container %s was not running: %s' % (lane.ctr, sftp_up(lane)))
            log_path = os.path.join(OUT, '%s.log' % name)
            rc, result, lines = ssh_call(lane, 'python3 /opt/irisops-vmrig/rig.py case %s' % shlex.quote(name),
                                         log_path)
            if result is None:
                results.append({'case': name, 'ok': False, 'error': 'no result (ssh rc %s)' % rc})
                table.add('case ' + name, now() - t0, 'FAIL (no result, ssh rc %s; %s)' % (
                    rc, os.path.relpath(log_path, REPO)))
                continue
            results.append(result)
            for rec in result.get('records') or []:
                path = os.path.join(FAULTS, '%s-%s.json' % (rec['suite'], rec['case']))
                with open(path, 'w') as f:
                    f.write(json.dumps(rec, indent=2, sort_keys=True) + '\n')
            bad = [c for c in result['checks'] if not c['ok']]
            for c in bad:
                say('  FAILED %s: %s: %s' % (name, c['check'], c['detail'][:400]))
            table.add('case ' + name, now() - t0, 'PASS' if result['ok'] else 'FAIL (%d of %d checks; %s)' % (
                len(bad), len(result['checks']), os.path.relpath(log_path, REPO)))
        if run_role:
            role_case(lane, table, results)
    finally:
        with open(os.path.join(OUT, 'results.json'), 'w') as f:
            json.dump({'rows': table.rows, 'cases': results}, f, indent=1, sort_keys=True, default=str)
        if args.keep:
            say('--keep: VM %s (ssh -i %s -p %d root@127.0.0.1) and container %s left running' % (
                lane.vm, VM_KEY, lane.port, lane.ctr))
        else:
            t0 = now()
            destroy(lane)
            table.add('destroy VM and container', now() - t0, 'PASS')
        table.show(now() - t_all)
    return 1 if table.failed() else 0


if __name__ == '__main__':
    sys.exit(main())
