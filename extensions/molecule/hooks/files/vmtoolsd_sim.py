"""TEST-ONLY: run VMware Tools custom quiescing scripts the way vmtoolsd does for a quiesced snapshot.

Follows open-vm-tools services/plugins/vmbackup/scriptOps.c (VmBackup_NewScriptOp / VmBackupRunNextScript /
VmBackupScriptOpQuery):
  * script list = [legacy slot] + regular files directly in backupScripts.d sorted with strcmp (byte order);
    the legacy slot (first entry) exists when /usr/sbin/pre-freeze-script or /usr/sbin/post-thaw-script is a file;
  * freeze: ascending, `"<path>" freeze ["<scriptArg>"]`, run through /bin/sh -c; a non-zero exit stops the
    freeze and the scripts BEFORE the failed one get freezeFail in reverse order (the failed one does not);
  * when the snapshot itself fails after all freeze scripts succeeded, every script gets freezeFail in reverse;
  * thaw / freezeFail: the legacy slot is replaced by /usr/sbin/post-thaw-script, so it runs last; non-existent
    paths are skipped; a failing thaw script does not stop the others, the error is reported at the end.
Between freeze and thaw it runs --during (the "snapshot"): its output is kept in the report.
Prints a JSON report: every script run with op, rc, seconds, and the overall outcome.
"""
import argparse
import json
import os
import subprocess
import sys
import time

LEGACY_FREEZE = '/usr/sbin/pre-freeze-script'
LEGACY_THAW = '/usr/sbin/post-thaw-script'
# vmtoolsd runs under systemd: the default systemd PATH, no other environment from the caller
ENV = {'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'LANG': 'C'}


def script_list(scripts_dir):
    scripts = []
    if os.path.isfile(LEGACY_FREEZE) or os.path.isfile(LEGACY_THAW):
        scripts.append(LEGACY_FREEZE)
    if os.path.isdir(scripts_dir):
        for name in sorted(os.listdir(scripts_dir), key=lambda n: n.encode()):
            path = os.path.join(scripts_dir, name)
            if os.path.isfile(path):
                scripts.append(path)
    return scripts


def run(path, op, script_arg, timeout, report):
    if not os.path.isfile(path):
        return None
    cmd = '"%s" %s' % (path, op) + (' "%s"' % script_arg if script_arg is not None else '')
    start = time.time()
    try:
        proc = subprocess.run(['/bin/sh', '-c', cmd], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False)
        rc = proc.returncode
        out = proc.stdout.decode('utf-8', 'replace')
    except subprocess.TimeoutExpired as exc:
        rc = 'timeout'
        out = (exc.output or b'').decode('utf-8', 'replace')
    report['runs'].append({'script': path, 'op': op, 'rc': rc, 'seconds': round(time.time() - start, 2),
                           'output': out[-4000:]})
    return rc


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--scripts-dir', default='/etc/vmware-tools/backupScripts.d')
    p.add_argument('--script-arg')
    p.add_argument('--during', help='shell command run while quiesced (the snapshot)')
    p.add_argument('--snapshot-fails', action='store_true', help='the snapshot fails after a successful freeze')
    p.add_argument('--timeout', type=int, default=900, help='quiesce timeout (tools default 900 s)')
    a = p.parse_args()
    deadline = time.time() + a.timeout
    scripts = script_list(a.scripts_dir)
    report = {'scripts': list(scripts), 'runs': [], 'during': None}
    failed_at = None
    for i, path in enumerate(scripts):
        rc = run(path, 'freeze', a.script_arg, max(1, deadline - time.time()), report)
        if rc not in (None, 0):
            failed_at = i
            break
    if scripts and (scripts[0] == LEGACY_FREEZE):
        scripts[0] = LEGACY_THAW
    if failed_at is not None:
        report['outcome'] = 'freeze script failed: %s' % scripts[failed_at] if failed_at else \
            'freeze script failed: %s' % LEGACY_FREEZE
        for path in reversed(scripts[:failed_at]):
            run(path, 'freezeFail', a.script_arg, max(1, deadline - time.time()), report)
    elif a.snapshot_fails:
        report['outcome'] = 'snapshot failed'
        for path in reversed(scripts):
            run(path, 'freezeFail', a.script_arg, max(1, deadline - time.time()), report)
    else:
        if a.during:
            proc = subprocess.run(['/bin/sh', '-c', a.during], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  check=False)
            report['during'] = {'rc': proc.returncode, 'output': proc.stdout.decode('utf-8', 'replace')}
        thaw_failed = False
        for path in reversed(scripts):
            rc = run(path, 'thaw', a.script_arg, max(1, deadline - time.time()), report)
            if rc not in (None, 0):
                thaw_failed = True
        report['outcome'] = 'thaw script failed' if thaw_failed else 'ok'
    print(json.dumps(report, indent=2))
    return 0 if report['outcome'] == 'ok' else 1


if __name__ == '__main__':
    sys.exit(main())
