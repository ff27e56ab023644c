"""TEST-ONLY: run Azure Backup's Linux pre/post scripts the way the VMSnapshot extension (ScriptRunner) does.

From the Azure docs (backup-azure-linux-app-consistent.md) and MicrosoftAzureBackup/VMSnapshotPluginConfig:
  * /etc/azure/VMSnapshotScriptPluginConfig.json must be a regular file owned by root with mode 600, and
    pluginName ScriptRunner; otherwise IncorrectJSONConfigFile / permission errors and no script runs;
  * pre/post scripts must exist (Pre-ScriptNotFound / Post-ScriptNotFound), be owned by root and have mode 700
    (InsufficientPermissionforPre-Script / ...-Post-Script);
  * each script gets its *ScriptParams as arguments and timeoutInSeconds for all its attempts
    (*ScriptNoOfRetries extra attempts after a failure; 0 = one attempt) -> Pre-ScriptTimeout / Post-ScriptTimeout;
  * exit status 0 = success, 1 = error, 2 = warning.
Assumption of this simulator (not documented): the post-script runs even when the pre-script failed.
--during is the snapshot. Prints a JSON report.
"""
import argparse
import json
import os
import stat
import subprocess
import sys
import time

ENV = {'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'LANG': 'C'}
KEYS = ('pluginName', 'preScriptLocation', 'postScriptLocation', 'preScriptParams', 'postScriptParams',
        'preScriptNoOfRetries', 'postScriptNoOfRetries', 'timeoutInSeconds', 'continueBackupOnFailure',
        'fsFreezeEnabled', 'ScriptsExecutionPollTimeSeconds')


def check_file(path, mode, err, not_found):
    try:
        st = os.lstat(path)
    except OSError:
        return '%s (%s)' % (not_found, path)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or stat.S_IMODE(st.st_mode) != mode:
        return '%s (owner uid %d, mode %o; needs root and %o)' % (err, st.st_uid, stat.S_IMODE(st.st_mode), mode)
    return None


def run_script(kind, path, params, retries, timeout, report):
    deadline = time.time() + timeout
    attempts = []
    rc = None
    for _attempt in range(retries + 1):
        left = deadline - time.time()
        if left <= 0:
            rc = 'timeout'
            break
        start = time.time()
        try:
            proc = subprocess.run([path] + [str(x) for x in params], env=ENV, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=left, check=False)
            rc = proc.returncode
            out = proc.stdout.decode('utf-8', 'replace')
        except subprocess.TimeoutExpired as exc:
            rc = 'timeout'
            out = (exc.output or b'').decode('utf-8', 'replace')
        attempts.append({'rc': rc, 'seconds': round(time.time() - start, 2), 'output': out[-4000:]})
        if rc in (0, 2):
            break
    failed = '%s-ScriptTimeout' % kind if rc == 'timeout' else '%s-ScriptExecutionFailed' % kind
    status = {0: 'success', 2: 'warning'}.get(rc, failed)
    report[kind.lower()] = {'script': path, 'params': params, 'attempts': attempts, 'rc': rc, 'status': status}
    return status


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--config', default='/etc/azure/VMSnapshotScriptPluginConfig.json')
    p.add_argument('--during', help='shell command run between the pre and the post script (the snapshot)')
    a = p.parse_args()
    report = {'errors': [], 'pre': None, 'post': None, 'during': None}
    err = check_file(a.config, 0o600, 'IncorrectJSONConfigFile', 'IncorrectJSONConfigFile (missing)')
    cfg = None
    if not err:
        try:
            with open(a.config) as f:
                cfg = json.load(f)
        except ValueError as exc:
            err = 'IncorrectJSONConfigFile (%s)' % exc
    if not err and (cfg.get('pluginName') != 'ScriptRunner' or any(k not in cfg for k in KEYS)):
        err = 'IncorrectJSONConfigFile (pluginName or keys)'
    if not err:
        t = cfg['timeoutInSeconds']
        poll = cfg['ScriptsExecutionPollTimeSeconds']
        if not isinstance(t, int) or not 1 <= t <= 1800 or not isinstance(poll, int) or not 1 <= poll <= 5:
            err = 'IncorrectJSONConfigFile (timeoutInSeconds %r / ScriptsExecutionPollTimeSeconds %r)' % (t, poll)
    if err:
        report['errors'].append(err)
        report['outcome'] = 'crash-consistent (no scripts): %s' % err
        print(json.dumps(report, indent=2))
        return 1
    report['config'] = cfg
    for kind, key in (('Pre', 'preScriptLocation'), ('Post', 'postScriptLocation')):
        e = check_file(cfg[key], 0o700, 'InsufficientPermissionfor%s-Script' % kind, '%s-ScriptNotFound' % kind)
        if e:
            report['errors'].append(e)
    if report['errors']:
        report['outcome'] = 'crash-consistent (no scripts): %s' % '; '.join(report['errors'])
        print(json.dumps(report, indent=2))
        return 1
    pre = run_script('Pre', cfg['preScriptLocation'], cfg['preScriptParams'], cfg['preScriptNoOfRetries'],
                     cfg['timeoutInSeconds'], report)
    if pre in ('success', 'warning') and a.during:
        proc = subprocess.run(['/bin/sh', '-c', a.during], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              check=False)
        report['during'] = {'rc': proc.returncode, 'output': proc.stdout.decode('utf-8', 'replace')}
    post = run_script('Post', cfg['postScriptLocation'], cfg['postScriptParams'], cfg['postScriptNoOfRetries'],
                      cfg['timeoutInSeconds'], report)
    if pre in ('success', 'warning') and post in ('success', 'warning'):
        report['outcome'] = 'application-consistent' if pre == post == 'success' else 'application-consistent (warning)'
    elif cfg['continueBackupOnFailure']:
        report['outcome'] = 'file-system consistent (pre %s, post %s)' % (pre, post)
    else:
        report['outcome'] = 'backup failed (pre %s, post %s)' % (pre, post)
    print(json.dumps(report, indent=2))
    return 0 if report['outcome'].startswith('application-consistent') else 1


if __name__ == '__main__':
    sys.exit(main())
