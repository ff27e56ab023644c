"""TEST-ONLY: handle a Compute Engine guest-flush snapshot the way the guest agent does.

From the agent's source (GoogleCloudPlatform/guest-agent google_guest_agent/snapshot_listener.go, cfg/cfg.go;
GoogleCloudPlatform/google-guest-agent cmd/core_plugin/snapshot/snapshot_linux.go, internal/cfg/cfg.go):
  * the snapshot listener runs only when [Snapshots] enabled = true in the configuration the agent loaded when it
    started: its defaults (enabled = false, timeout_in_seconds = 60), then /etc/default/instance_configs.cfg, .distro
    and .template, read with go-ini (case-insensitive; a repeated section is merged into the first, a later value of
    a key replaces the earlier one).  This simulator reads the copies that the test's stand-in agent unit took when
    it started (--loaded-config-dir), so a changed file counts only after a restart, as with the real agent;
  * a PRE_SNAPSHOT request runs /etc/google/snapshots/pre.sh, a POST_SNAPSHOT request post.sh: the file itself (no
    shell), as root, with one argument, the disk list; a missing file answers SCRIPT_NOT_FOUND;
  * with script_must_be_root_writable (default true) a script not owned by root (exit 125) or writable by group or
    others (exit 126) is not run and answers UNHANDLED_SCRIPT_ERROR;
  * timeout_in_seconds applies to each script: the agent kills the process (SIGKILL, not its children) and answers
    SCRIPT_TIMED_OUT; an exit status other than 0 answers UNHANDLED_SCRIPT_ERROR;
  * a request whose operation id was seen before is ignored.
Google's guide "Create Linux application consistent disk snapshots": no snapshot is created when a script errors
or times out.  Not documented (assumption, --post-after-failed-pre): whether the post request still comes after a
failed pre request; by default it does not.  --during is the snapshot.  Prints a JSON report; exit 0 when the
snapshot is created and both scripts succeeded.
"""
import argparse
import configparser
import json
import os
import subprocess
import sys
import tempfile
import time

ENV = {'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'LANG': 'C'}
SCRIPTS_DIR = '/etc/google/snapshots'
CONFIG_FILES = ('instance_configs.cfg', 'instance_configs.cfg.distro', 'instance_configs.cfg.template')


def _lower_sections(text):
    """go-ini compares section names case-insensitively (LoadOptions Insensitive)."""
    return '\n'.join('[%s]' % line.strip()[1:-1].strip().lower()
                     if line.strip().startswith('[') and line.strip().endswith(']') else line
                     for line in text.splitlines())


def loaded_config(config_dir):
    """(enabled, timeout_in_seconds) as the agent merged its configuration, or None when the agent is not running."""
    if not os.path.isdir(config_dir):
        return None
    cp = configparser.ConfigParser(strict=False, interpolation=None)   # repeated sections merge, later values win
    cp.read_string('[snapshots]\nenabled = false\ntimeout_in_seconds = 60\n')
    for name in CONFIG_FILES:
        path = os.path.join(config_dir, name)
        if os.path.exists(path):
            with open(path) as f:
                cp.read_string(_lower_sections(f.read()), source=path)
    sec = cp['snapshots']
    return sec.get('enabled', 'false').strip().lower() in ('true', '1', 'yes', 'on'), int(sec.get('timeout_in_seconds'))


def run_script(kind, disks, timeout, report):
    path = os.path.join(SCRIPTS_DIR, '%s.sh' % kind)
    entry = {'script': path, 'disks': disks, 'timeout': timeout}
    report['%s_run' % kind] = entry
    if not os.path.isfile(path):
        entry.update(rc=-1, agent='SCRIPT_NOT_FOUND')
        return entry
    st = os.stat(path)
    if st.st_uid != 0 or st.st_mode & 0o022:
        entry.update(rc=125 if st.st_uid != 0 else 126, agent='UNHANDLED_SCRIPT_ERROR',
                     output='script not owned by root or writable by others than root')
        return entry
    start = time.time()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([path, disks], env=ENV, stdout=out, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=timeout)
            agent = 'NO_ERROR' if rc == 0 else 'UNHANDLED_SCRIPT_ERROR'
        except subprocess.TimeoutExpired:
            proc.kill()                # exec.CommandContext: SIGKILL to the process only
            proc.wait()
            rc, agent = -1, 'SCRIPT_TIMED_OUT'
        out.seek(0)
        output = out.read().decode('utf-8', 'replace')
    entry.update(rc=rc, agent=agent, seconds=round(time.time() - start, 2), output=output[-4000:])
    return entry


def summarize(report):
    """The same summary as aws_dlm_sim.py: pre/post 'ok' / 'error' / 'timeout' / None (not run), and their exit codes."""
    for kind in ('pre', 'post'):
        entry = report.get('%s_run' % kind)
        report[kind] = {'NO_ERROR': 'ok', 'SCRIPT_TIMED_OUT': 'timeout'}.get(entry['agent'], 'error') if entry else None
        report['%s_rc' % kind] = entry['rc'] if entry else None
    return json.dumps(report, indent=2)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--loaded-config-dir', default='/run/google-guest-agent-sim',
                   help='the configuration files as the (stand-in) agent read them at its start')
    p.add_argument('--disks', default='/dev/sda', help='the disk list the request carries')
    p.add_argument('--during', help='shell command run between pre.sh and post.sh (the snapshot)')
    p.add_argument('--post-lost', action='store_true', help='the post request never reaches the agent')
    p.add_argument('--post-after-failed-pre', action='store_true', help='send the post request after a failed pre')
    p.add_argument('--only', choices=('pre', 'post'), help='send only this request (e.g. a late post)')
    a = p.parse_args()
    report = {'pre_run': None, 'post_run': None, 'during': None, 'snapshot': None}
    cfg = loaded_config(a.loaded_config_dir)
    if cfg is None or not cfg[0]:
        report['outcome'] = ('guest-flush not handled: %s' % (
            'the guest agent is not running' if cfg is None else '[Snapshots] enabled is not true in the '
            'configuration the guest agent loaded'))
        print(summarize(report))
        return 1
    timeout = cfg[1]
    report['timeout_in_seconds'] = timeout
    if a.only:
        r = run_script(a.only, a.disks, timeout, report)
        report['outcome'] = '%s.sh %s (exit %s)' % (a.only, r['agent'], r['rc'])
        print(summarize(report))
        return 0 if r['agent'] == 'NO_ERROR' else 1
    pre = run_script('pre', a.disks, timeout, report)
    if pre['agent'] == 'NO_ERROR':
        if a.during:
            proc = subprocess.run(['/bin/sh', '-c', a.during], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  check=False)
            report['during'] = {'rc': proc.returncode, 'output': proc.stdout.decode('utf-8', 'replace')}
        report['snapshot'] = 'taken'
    if a.post_lost or (pre['agent'] != 'NO_ERROR' and not a.post_after_failed_pre):
        pass
    else:
        run_script('post', a.disks, timeout, report)
    post = report['post_run']
    if pre['agent'] != 'NO_ERROR':
        report['snapshot'] = None
        report['outcome'] = 'no snapshot: pre.sh %s (exit %s)' % (pre['agent'], pre['rc'])
    elif post is None:
        report['outcome'] = 'snapshot taken; the post request never came'
    elif post['agent'] != 'NO_ERROR':
        report['snapshot'] = None
        report['outcome'] = 'no snapshot: post.sh %s (exit %s)' % (post['agent'], post['rc'])
    else:
        report['outcome'] = 'application-consistent'
    print(summarize(report))
    return 0 if report['outcome'] == 'application-consistent' else 1


if __name__ == '__main__':
    sys.exit(main())
