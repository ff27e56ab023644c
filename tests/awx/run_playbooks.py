"""Run the collection's playbooks the way AWX / Automation Controller does, against an emulator container.

AWX runs a job template through ansible-runner: a private data directory with the inventory, the extra variables
of the template and its survey (survey answers arrive as *strings*: "true", "600"), no prompts, optionally as a
check job (``--check``).  This script does the same with the ansible-runner Python API (the engine AWX uses) and
checks the outcome on a real container built from irisops/iris-emu:bookworm (see tests/harness/build-images.sh):

  0. the collection is built (ansible-galaxy collection build) and installed into the runner's collections path,
     so that all jobs run the same content even if the checkout changes meanwhile;
  1. check job of playbooks/install_hooks.yml: must succeed, freeze nothing (IsWDSuspendedExt of IRIS and CACHE
     stays 3) and write no file (every regular file under /etc /usr/local /var/lib /var/log /opt is listed with size
     and mtime before and after; the lists must be equal, apart from the emulator's own instance trees);
  2. run job with the same survey answers: must succeed and change something; the hook program and the
     backupScripts.d entry exist; calling that entry with ``freeze`` makes IsWDSuspendedExt return 5 for both
     instances, ``thaw`` returns it to 3;
  3. the same run job again (AWX re-launch): must report changed=0;
  4. removal job (hooks_state="absent" as a survey string): must succeed; the hook files are gone;
     IsWDSuspendedExt is 3;
  5. run job of playbooks/mirror_plan.yml (mirror_fallback "fail" as a survey string): must succeed, change nothing.
playbooks/lvm_backup.yml needs LVM (device-mapper), which containers on this rig do not have; it is listed as
skipped with that reason (the lvm molecule scenario covers it in a VM), and so is playbooks/restore_drill.yml (a
drill restores a backup taken on LVM; the unit tests cover the drill engine).  Any other playbook found in playbooks/
without a case here is reported as NOT COVERED and makes the script exit 1.

Usage (from the repository root):  . tests/harness/env.sh && python3 tests/awx/run_playbooks.py [--keep]
Exit status 0 when every case passed.  The container is always removed (unless --keep).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
IMAGE = os.environ.get('IRISOPS_IMAGE_EMU', 'irisops/iris-emu:bookworm')
# (instance, OS owner, session argv) as installed in the image (tests/harness/images/iris-emu.Dockerfile)
INSTANCES = (
    ('IRIS', 'irisowner', ['iris', 'session', 'IRIS']),
    ('CACHE', 'cacheusr', ['csession', 'CACHE']),
)
# Files and directories the hooks role installs with the settings below (roles/hooks/defaults/main.yml).
HOOK_PATHS = (
    '/usr/local/sbin/irisops-hook',
    '/usr/local/lib/irisops',
    '/etc/irisops/hook.conf',
    '/var/lib/irisops-hook',
    '/etc/logrotate.d/irisops-hook',
    '/usr/local/sbin/irisops-pre-snapshot',
    '/usr/local/sbin/irisops-post-snapshot',
    '/usr/local/sbin/irisops-aws-dlm',
    '/etc/irisops/irisops-aws-dlm-ssm-document.json',
    '/etc/google/snapshots/pre.sh',
    '/etc/google/snapshots/post.sh',
)
VMWARE_DIR = '/etc/vmware-tools/backupScripts.d'
SCANNED = ('/etc', '/usr/local', '/var/lib', '/var/log', '/opt')
# The emulator's own state changes while it runs (write daemon, journals, messages.log); it is not a hook file.
SCAN_EXCLUDE = ('/var/log/journal', '/var/lib/systemd', '/usr/irissys', '/usr/cachesys', '/var/lib/irisemu',
                '/opt/irisemu')

# Survey answers as AWX passes them: text and multiple-choice answers are strings, also for booleans and numbers.
SURVEY = {
    'hooks_hosts': 'awx_iris',
    'hooks_targets': ['vmware_backupscripts', 'generic', 'aws_dlm', 'gcp'],
    'hooks_aws_dlm_timeout': '120',
    'hooks_gcp_timeout': '90',
    'hooks_external_freeze_timeout': '600',
    'hooks_session_timeout': '120',
    'hooks_set_history': 'false',
    'hooks_stat_fallback': 'true',
    'hooks_force': 'false',
    'hooks_verify': 'true',
}
SKIPPED = {
    'lvm_backup.yml': 'needs LVM/device-mapper, which the rig kernel lacks in containers '
                      '(covered by the lvm molecule scenario in a qemu VM)',
    'restore_drill.yml': 'a drill restores a backup taken on LVM (device-mapper), which containers on this rig '
                         'lack; the drill engine is covered by the unit tests (test_drill.py, test_journal.py)',
    'mirror_backup.yml': 'its backup is the lvm_backup role (LVM/device-mapper); its plan, mirror_plan.yml, has a '
                         'case here and the mirror molecule scenario',
}


def sh(argv, check=True, timeout=300):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError('%s failed (rc=%s): %s' % (' '.join(argv), proc.returncode, proc.stderr.strip()))
    return proc


class Rig:
    def __init__(self, name):
        self.name = name

    def start(self):
        sh(['docker', 'run', '-d', '--name', self.name, '--hostname', self.name, '--network', 'none',
            '--add-host', '%s:127.0.1.1' % self.name, '--tmpfs', '/run', '--tmpfs', '/run/lock',
            '-v', '/sys/fs/cgroup:/sys/fs/cgroup:ro', '--stop-signal', 'SIGRTMIN+3', IMAGE, '/lib/systemd/systemd'])
        deadline = time.time() + 240
        while True:
            states = [self.exec(['iris' if n == 'IRIS' else 'ccontrol', 'qlist', n], check=False).stdout
                      for n, _owner, _session in INSTANCES]
            if all('^running' in s for s in states):
                return
            if time.time() > deadline:
                raise RuntimeError('instances not running after 240 s: %r' % states)
            time.sleep(2)

    def remove(self):
        sh(['docker', 'rm', '-f', self.name], check=False)

    def exec(self, argv, user=None, check=True, timeout=120):
        cmd = ['docker', 'exec'] + (['-u', user] if user else []) + [self.name] + list(argv)
        return sh(cmd, check=check, timeout=timeout)

    def wd_suspended(self):
        """IsWDSuspendedExt exit status per instance (5 frozen, 3 not frozen)."""
        out = {}
        for name, owner, session in INSTANCES:
            proc = self.exec(session + ['-U', '%SYS', '##class(Backup.General).IsWDSuspendedExt()'],
                             user=owner, check=False)
            out[name] = proc.returncode
        return out

    def file_list(self):
        prune = ' -o '.join('-path %s' % p for p in SCAN_EXCLUDE)
        script = ('find %s \\( %s \\) -prune -o \\( -type f -o -type l \\) -printf "%%p %%s %%T@\\n" 2>/dev/null'
                  ' | sort' % (' '.join(SCANNED), prune))
        return set(self.exec(['sh', '-c', script]).stdout.splitlines())

    def exists(self, path):
        return self.exec(['test', '-e', path], check=False).returncode == 0

    def vmware_entries(self):
        proc = self.exec(['sh', '-c', 'ls -1 %s 2>/dev/null || true' % VMWARE_DIR])
        return [os.path.join(VMWARE_DIR, n) for n in proc.stdout.split()]


def run_job(workdir, label, playbook, host, extravars, check=False):
    """One AWX-style job through ansible-runner; returns (status, rc, stats, seconds)."""
    import ansible_runner  # imported here so that --help works without the venv

    pdd = os.path.join(workdir, label)
    os.makedirs(os.path.join(pdd, 'inventory'))
    shutil.copytree(os.path.join(workdir, 'collections', 'ansible_collections', 'irisops', 'backup', 'playbooks'),
                    os.path.join(pdd, 'project'))
    with open(os.path.join(pdd, 'inventory', 'hosts.json'), 'w') as f:
        json.dump({'awx_iris': {'hosts': {host: {'ansible_connection': 'community.docker.docker',
                                                 'ansible_python_interpreter': '/usr/bin/python3'}}}}, f)
    rig_collections = os.environ.get('ANSIBLE_COLLECTIONS_PATH', os.path.join(REPO, '.cache', 'collections'))
    env = {
        # the collection from the tarball built at the start (a fixed revision, like an AWX project sync) first,
        # then the rig's third-party collections (community.docker for the connection plugin)
        'ANSIBLE_COLLECTIONS_PATH': os.path.join(workdir, 'collections') + os.pathsep + rig_collections,
        'ANSIBLE_FORCE_COLOR': '0', 'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_RETRY_FILES_ENABLED': 'false',
        'ANSIBLE_HOST_KEY_CHECKING': 'false',
    }
    start = time.time()
    r = ansible_runner.run(private_data_dir=pdd, playbook=playbook, extravars=extravars, envvars=env,
                           cmdline='--check --diff' if check else None, quiet=True, timeout=900)
    seconds = time.time() - start
    stats = (r.stats or {})
    per_host = {k: (stats.get(k) or {}).get(host, 0) for k in ('ok', 'changed', 'failures', 'dark', 'skipped')}
    if r.status != 'successful':
        sys.stdout.write('--- %s output (last 60 lines) ---\n' % label)
        sys.stdout.write('\n'.join(r.stdout.read().splitlines()[-60:]) + '\n')
    return r.status, r.rc, per_host, seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    ap.add_argument('--keep', action='store_true', help='leave the container and the runner directories')
    args = ap.parse_args()

    results = []   # (case, passed, detail)

    def record(case, ok, detail):
        results.append((case, bool(ok), detail))
        print('%-58s %s  %s' % (case, 'PASS' if ok else 'FAIL', detail), flush=True)

    playbooks = sorted(p for p in os.listdir(os.path.join(REPO, 'playbooks')) if p.endswith(('.yml', '.yaml')))
    for pb in playbooks:
        if pb in SKIPPED:
            print('%-58s SKIP  %s' % ('playbook ' + pb, SKIPPED[pb]))
        elif pb not in ('install_hooks.yml', 'mirror_plan.yml'):
            record('playbook %s has an AWX case' % pb, False, 'NOT COVERED: add a case to tests/awx/run_playbooks.py')

    name = 'irisops-awx-%d' % os.getpid()
    rig = Rig(name)
    workdir = tempfile.mkdtemp(prefix='irisops-awx-')
    try:
        # Every job uses the same content: the tarball of the working tree at start, installed into a private
        # collections path (other people editing the checkout during the run do not change what is tested).
        sh(['ansible-galaxy', 'collection', 'build', '--force', '--output-path', os.path.join(workdir, 'dist'), REPO])
        tarball = [f for f in os.listdir(os.path.join(workdir, 'dist')) if f.endswith('.tar.gz')][0]
        inst_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(workdir, 'collections'))
        subprocess.run(['ansible-galaxy', 'collection', 'install', '--offline',
                        '-p', os.path.join(workdir, 'collections'), os.path.join(workdir, 'dist', tarball)],
                       env=inst_env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        print('collection under test: %s' % tarball, flush=True)
        t0 = time.time()
        rig.start()
        print('container %s ready in %.1f s' % (name, time.time() - t0), flush=True)
        wd0 = rig.wd_suspended()
        record('baseline: IsWDSuspendedExt is 3 everywhere', set(wd0.values()) == {3}, wd0)

        before = rig.file_list()
        status, rc, st, sec = run_job(workdir, 'check', 'install_hooks.yml', name, SURVEY, check=True)
        record('check job install_hooks: successful', status == 'successful' and st['failures'] == 0
               and st['dark'] == 0, 'status=%s rc=%s %s %.0fs' % (status, rc, st, sec))
        after = rig.file_list()
        written = sorted(after - before)
        record('check job wrote no file', not written, written[:10] or 'no change under %s' % ', '.join(SCANNED))
        present = [p for p in HOOK_PATHS if rig.exists(p)] + rig.vmware_entries()
        record('check job installed no hook path', not present, present or 'none of %d paths' % len(HOOK_PATHS))
        wd = rig.wd_suspended()
        record('check job froze nothing (IsWDSuspendedExt 3)', set(wd.values()) == {3}, wd)

        status, rc, st, sec = run_job(workdir, 'run1', 'install_hooks.yml', name, SURVEY)
        record('run job install_hooks: successful, changed', status == 'successful' and st['changed'] > 0,
               'status=%s rc=%s %s %.0fs' % (status, rc, st, sec))
        new_files = sorted(rig.file_list() - after)
        record('run job wrote files the scan sees (scan is sensitive)', len(new_files) >= len(HOOK_PATHS) - 2,
               '%d new/changed files, e.g. %s' % (len(new_files), [f.split()[0] for f in new_files[:3]]))
        missing = [p for p in HOOK_PATHS if not rig.exists(p)]
        entries = rig.vmware_entries()
        record('run job installed the hook files', not missing and len(entries) == 1,
               'missing=%s backupScripts.d=%s' % (missing, entries))
        if len(entries) == 1:
            fr = rig.exec([entries[0], 'freeze'], check=False, timeout=300)
            wd = rig.wd_suspended()
            record('backupScripts.d entry "freeze": rc 0, both frozen', fr.returncode == 0 and set(wd.values()) == {5},
                   'rc=%s wd=%s' % (fr.returncode, wd))
            th = rig.exec([entries[0], 'thaw'], check=False, timeout=300)
            wd = rig.wd_suspended()
            record('backupScripts.d entry "thaw": rc 0, both thawed', th.returncode == 0 and set(wd.values()) == {3},
                   'rc=%s wd=%s' % (th.returncode, wd))

        status, rc, st, sec = run_job(workdir, 'run2', 'install_hooks.yml', name, SURVEY)
        record('re-launched run job: successful, changed=0', status == 'successful' and st['changed'] == 0,
               'status=%s rc=%s %s %.0fs' % (status, rc, st, sec))

        absent = dict(SURVEY, hooks_state='absent')
        status, rc, st, sec = run_job(workdir, 'remove', 'install_hooks.yml', name, absent)
        left = [p for p in HOOK_PATHS if rig.exists(p)] + rig.vmware_entries()
        record('removal job (state="absent"): successful, nothing left', status == 'successful' and not left,
               'status=%s %s left=%s %.0fs' % (status, st, left, sec))
        # mirror_plan.yml on a host with no mirror member: every instance is planned, nothing is frozen
        status, rc, st, sec = run_job(workdir, 'mirror', 'mirror_plan.yml', name, {'mirror_fallback': 'fail'})
        record('run job mirror_plan (fallback "fail"): successful, changed=0', status == 'successful'
               and st['failures'] == 0 and st['changed'] == 0, 'status=%s rc=%s %s %.0fs' % (status, rc, st, sec))
        wd = rig.wd_suspended()
        record('after all jobs: IsWDSuspendedExt is 3', set(wd.values()) == {3}, wd)
    except Exception as exc:  # a broken rig is a failure, reported like one
        record('rig', False, '%s: %s' % (type(exc).__name__, exc))
    finally:
        if args.keep:
            print('kept container %s and %s' % (name, workdir))
        else:
            rig.remove()
            shutil.rmtree(workdir, ignore_errors=True)

    passed = sum(1 for result in results if result[1])
    failed = len(results) - passed
    print('\nAWX-style summary: %d passed, %d failed, %d playbook(s) skipped (%s)'
          % (passed, failed, len(SKIPPED), ', '.join(sorted(SKIPPED))))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == '__main__':
    sys.exit(main())
