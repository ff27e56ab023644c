# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The VM side of the VM rig (tests/vm, TEST ONLY; standard library, runs as root inside the rig's VM).

    python3 rig.py write-config PATH         the rig's base configuration of irisops-backup
    python3 rig.py reset                     put the VM back in its golden state (see reset())
    python3 rig.py case NAME                 reset, then run case NAME; prints one line "RIG-RESULT <json>" at the end
    python3 rig.py list                      the case names, in the order run.py runs them

Each case is one ``irisops-backup`` scenario (or the lvm_snapshot module checks, lvm_module.py): it injects its fault,
runs the engine exactly as the systemd timer would (``irisops-backup --config FILE run --run-id ID --json``),
then looks at the host with its own tools (lvs, findmnt, IsWDSuspendedExt through ``iris session``, the instances'
backup history file, irisemu-dbcheck of the live databases, restic itself for the repository) and checks what it
saw.  The result line carries every check (name, ok, detail), what was observed and the fault records
(tests/faults/summary.py format) that run.py writes to tests/output/faults.

A case that needs the controller (stopping or starting the sftp container) prints ``RIG-ASK <what>`` and reads one
line ``RIG-DONE <what> <detail>`` from stdin (run.py answers).

The checks are the ones of the molecule scenarios this rig replaced (lvm, lvm_backup, lvm_backup_faults,
lvm_backup_soak); tests/vm/README.md maps every old assertion to the check here that keeps it.
"""

from __future__ import absolute_import, division, print_function

import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

RIG = os.path.dirname(os.path.abspath(__file__))
VG = 'vgbk'
STATE = '/run/irisops'
MOUNT_ROOT = '/run/irisops/backup/mnt'
REPORT_DIR = '/var/lib/irisops/backup/reports'
TEXTFILE_DIR = '/var/lib/irisops-vmrig/textfile'
CONF_DIR = '/etc/irisops/vmrig'
BASE_CONFIG = '/etc/irisops/backup.json'
PIDS = '/run/irisops-vmrig/pids'
REPO_HOST = '10.0.2.100'
REPO = 'sftp:root@%s:/srv/restic/repo' % REPO_HOST
KEY = '/etc/irisops/repo_key'
KNOWN_HOSTS = '/etc/irisops/known_hosts'
PASSWORD = '/etc/irisops/restic-password'
WRONG_PASSWORD = '/etc/irisops/restic-password.wrong'
INSTANCES = [
    {'name': 'IRISA', 'dir': '/iris/sys/irisa', 'dbdir': '/iris/dba', 'jrndir': '/iris/jrn/irisa'},
    {'name': 'IRISB', 'dir': '/iris/sys/irisb', 'dbdir': '/iris/dbb', 'jrndir': '/iris/jrn/irisb'},
]
IRISC = {'name': 'IRISC', 'dir': '/iris/sys/irisc', 'dbdir': '/iris/sys/irisc-db',
         'jrndir': '/iris/sys/irisc/mgr/journal'}
#: The write load between and during the cases (interval_ms, block_pause_ms): a write cycle every ~0.8 s on each
#: instance.  The emulator's default (100, 2) keeps a TCG guest's CPU half busy with the two write daemons and makes
#: every lvcreate twice as slow; the cases whose checks are about copies taken under writes set their own, heavier
#: load (below), the fault cases only need writes going on.
RIG_LOAD = (500, 2)
HIGH_LOAD = (0, 1)               # the old soak's load
CONTINUOUS_LOAD = (0, 10)        # the old torn-copy/staggered load on IRISA: a write cycle always in progress
FOUR_LVS = ['vgbk/dba', 'vgbk/dbb', 'vgbk/jrn', 'vgbk/sys']

BASE = {
    'instances': ['IRISA', 'IRISB'],
    'snapshot_size': '25%ORIGIN',
    'repository': REPO,
    'repository_password_file': PASSWORD,
    'repository_ssh_key': KEY,
    'repository_known_hosts': KNOWN_HOSTS,
    'verify_restore_command': 'irisemu-dbcheck',
    'metrics_file': TEXTFILE_DIR + '/irisops_backup.prom',
    'report_dir': REPORT_DIR,
    'mount_root': MOUNT_ROOT,
}
#: The cheaper verification of runs whose copy is checked elsewhere (follow-up runs of the kill cases).
QUICK_VERIFY = {'verify_read_data_subset': None, 'verify_restore_command': None}
#: Run ids of the cases that later cases read (the repository's history of this boot).
RUN_FULL = 'vmrig-full'
RUN_SECOND = 'vmrig-second'
FULL_STATE = '/var/lib/irisops-vmrig/full-backup.json'


def log(text):
    sys.stderr.write('%s rig: %s\n' % (time.strftime('%H:%M:%S'), text))
    sys.stderr.flush()


def sh(argv, data=None, timeout=600, env=None):
    """(rc, stdout+stderr) of argv; rc None on timeout."""
    try:
        proc = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        return None, (exc.output or '') if isinstance(exc.output, str) else ''
    return proc.returncode, proc.stdout


def read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (IOError, OSError, ValueError):
        return default


def write_json(path, obj):
    d = os.path.dirname(path)
    if not os.path.isdir(d):
        os.makedirs(d, 0o755)
    with open(path + '.tmp', 'w') as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(path + '.tmp', path)


# ---------------------------------------------------------------------------------------------------------------
# The controller (run.py): questions on stdout, answers on stdin
# ---------------------------------------------------------------------------------------------------------------

def ask(what):
    sys.stdout.write('RIG-ASK %s\n' % what)
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line.startswith('RIG-DONE %s' % what):
        raise RuntimeError('asked the controller for %s, got %r' % (what, line))
    return line.strip()[len('RIG-DONE %s' % what):].strip()


# ---------------------------------------------------------------------------------------------------------------
# Instances and the write load
# ---------------------------------------------------------------------------------------------------------------

def state_of(inst):
    """The emulator's runtime state of the instance, read under its state lock (the emulator rewrites state.json
    in place under an exclusive flock on state.lock: a read without the lock can see half a file)."""
    import fcntl
    emudir = os.path.join(inst['dir'], 'mgr', 'irisemu')
    try:
        fd = os.open(os.path.join(emudir, 'state.lock'), os.O_RDWR)
    except OSError:
        return {}
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return read_json(os.path.join(emudir, 'state.json'), {}) or {}
    finally:
        os.close(fd)


def registered():
    return [i for i in INSTANCES + [IRISC] if os.path.exists('/usr/local/etc/irisemu/%s.json' % i['name'])]


def wd_pid(inst):
    pid = state_of(inst).get('wd_pid')
    if not pid:
        return None
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            if b'irisemu-wd' in f.read():
                return pid
    except (IOError, OSError):
        pass
    return None


def is_running(inst):
    return wd_pid(inst) is not None


def proc_state(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0]
    except (IOError, OSError, IndexError):
        return None


_EMU = {}


def emu_call(name, argv):
    """A test-only emulator command (irisemu-load, irisemu-dbcheck, irisemu-fault) run in this process: the same code
    as the command (irisemu.cli, installed in /opt/irisemu), without a Python start per call.  (rc, output)."""
    import contextlib
    import io
    if not _EMU:
        sys.path.insert(0, '/opt/irisemu')
        from irisemu import cli  # pylint: disable=import-error
        _EMU.update({'irisemu-load': cli.load_main, 'irisemu-dbcheck': cli.dbcheck_main,
                     'irisemu-fault': cli.fault_main})
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            rc = _EMU[name](list(argv))
        except SystemExit as exc:
            rc = exc.code
    return rc or 0, out.getvalue()


def set_load(names, load):
    for n in names:
        emu_call('irisemu-load', [n, '--interval-ms', str(load[0]), '--block-pause-ms', str(load[1])])


def pause_load(names):
    for n in names:
        emu_call('irisemu-load', [n, '--pause'])


def wd_status(name):
    """IsWDSuspendedExt of the instance, as its owner (5 frozen, 3 not frozen, other: could not ask)."""
    rc, _out = sh(['runuser', '-u', 'irisowner', '--', 'iris', 'session', name, '-U', '%SYS',
                   '##Class(Backup.General).IsWDSuspendedExt()'], timeout=120)
    return rc


def live_check(inst):
    """irisemu-dbcheck of the instance's LIVE databases (install dir and database dir).  A running instance's write
    load is paused first and the check waits until the write daemon has left the cycle it was in (its heartbeat,
    written at the top of every loop, moved after the pause), then the load is resumed (unless it was paused)."""
    running = is_running(inst)
    was_paused = bool((state_of(inst).get('load') or {}).get('paused'))
    if running and not was_paused:
        emu_call('irisemu-load', [inst['name'], '--pause'])
    try:
        if running:
            t_pause = time.time()
            deadline = t_pause + 30
            while time.time() < deadline:
                hb = ((state_of(inst).get('wd') or {}).get('heartbeat')) or 0
                if hb > t_pause + 0.05:
                    break
                time.sleep(0.1)
        rc, out = emu_call('irisemu-dbcheck', [inst['dir'], inst['dbdir']])
    finally:
        if running and not was_paused:
            emu_call('irisemu-load', [inst['name'], '--resume'])
    return {'rc': rc, 'output': out.strip().splitlines()[:5], 'running': running}


def history(inst):
    """Entries of the instance's backup history (the emulator's ^SYS("BUHISTORY")), oldest first."""
    data = read_json(os.path.join(inst['dir'], 'mgr', 'irisemu', 'buhistory.json'), {}) or {}
    return [data[k] for k in sorted(data, key=float)]


def history_with(run_id, insts=None):
    """Instance name -> number of history entries whose text names run_id."""
    pat = re.compile(r'\b%s\b' % re.escape(run_id))
    return dict((i['name'], sum(1 for e in history(i) if pat.search(str(e.get('DESC') or ''))))
                for i in (insts or INSTANCES))


def messages_count(inst, text):
    try:
        with open(os.path.join(inst['dir'], 'mgr', 'messages.log'), errors='replace') as f:
            return sum(1 for line in f if text in line)
    except (IOError, OSError):
        return 0


# ---------------------------------------------------------------------------------------------------------------
# LVM, mounts, the repository (seen with the tools, not with the engine's word)
# ---------------------------------------------------------------------------------------------------------------

def lvs_rows(fields='lv_name,origin,lv_tags,lv_attr,lv_uuid'):
    rc, out = sh(['lvs', '--reportformat', 'json', '-o', fields, VG])
    if rc != 0:
        raise RuntimeError('lvs failed: %s' % out)
    return json.loads(out[out.index('{'):])['report'][0]['lv']


def snapshots():
    return sorted('%s/%s' % (VG, lv['lv_name']) for lv in lvs_rows() if lv.get('origin'))


def mounts_under(root='/run/irisops/'):
    rc, out = sh(['findmnt', '-rn', '-o', 'TARGET'])
    return [m for m in out.splitlines() if m.startswith(root)]


def restic_env(password=PASSWORD):
    env = dict(os.environ, RESTIC_PASSWORD_FILE=password, LC_ALL='C',
               RESTIC_CACHE_DIR='/var/cache/irisops-vmrig/restic')
    env.pop('RESTIC_PASSWORD', None)
    return env


def restic(args, repo=REPO, timeout=600):
    """restic itself against the rig's repository (its own ssh command line, not the engine's)."""
    ssh = 'ssh -i %s -o IdentitiesOnly=yes -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o BatchMode=yes ' \
          'root@%s -s sftp' % (KEY, KNOWN_HOSTS, REPO_HOST)
    return sh(['restic', '-r', repo, '-o', 'sftp.command=%s' % ssh] + list(args), timeout=timeout, env=restic_env())


def repo_snapshots(repo=REPO):
    """Snapshots in the repository as restic lists them: [{id, short_id, tags, time, run, verified}]."""
    rc, out = restic(['snapshots', '--json'], repo=repo)
    if rc != 0:
        raise RuntimeError('restic snapshots failed (rc %s): %s' % (rc, out.strip()[-400:]))
    out = out[out.index('['):]
    snaps = json.loads(out) or []
    for s in snaps:
        tags = s.get('tags') or []
        s['run'] = next((t[4:] for t in tags if t.startswith('run=')), None)
        s['verified'] = 'verified' in tags
    return snaps


def repo_locks(path='/srv/restic/repo'):
    """The lock files in the sftp repository (listed on the sftp host itself)."""
    rc, out = sh(['ssh', '-i', KEY, '-o', 'UserKnownHostsFile=%s' % KNOWN_HOSTS, '-o', 'BatchMode=yes',
                  'root@%s' % REPO_HOST, 'ls %s/locks 2>/dev/null || true' % path], timeout=60)
    return out.split() if rc == 0 else []


def of_run(snaps, run_id):
    return [s for s in snaps if s['run'] == run_id]


def case_config(name, overrides=None):
    cfg = dict(BASE)
    cfg.update(overrides or {})
    path = os.path.join(CONF_DIR, '%s.json' % name)
    write_json(path, cfg)
    return path


def backup_cmd(config, run_id):
    return ['irisops-backup', '--config', config, 'run', '--run-id', run_id, '--json']


def parse_report(out):
    try:
        return json.loads(out[out.index('{'):])
    except ValueError:
        return None


def run_backup(run_id, overrides=None, timeout=900):
    """One ``irisops-backup run`` with the base configuration plus ``overrides``: (rc, report or None, stderr)."""
    config = case_config(run_id, overrides)
    t0 = time.time()
    log('irisops-backup run %s (config %s: %s)' % (run_id, config, json.dumps(overrides or {}, sort_keys=True)))
    # the engine's progress lines (stderr) go straight to the case's log
    proc = subprocess.run(backup_cmd(config, run_id), stdout=subprocess.PIPE, universal_newlines=True,
                          timeout=timeout, check=False)
    log('irisops-backup run %s: rc %s in %.1f s' % (run_id, proc.returncode, time.time() - t0))
    rep = parse_report(proc.stdout)
    if rep is None:
        log('no JSON report; stdout %r' % proc.stdout[-1500:])
    return proc.returncode, rep, ''


def start_backup(run_id, overrides=None):
    """``irisops-backup run`` in the background: the Popen (its pid is the engine's python: the wrapper execs)."""
    config = case_config(run_id, overrides)
    out = open('/run/irisops-vmrig/%s.out' % run_id, 'w')
    err = open('/run/irisops-vmrig/%s.err' % run_id, 'w')
    return subprocess.Popen(backup_cmd(config, run_id), stdout=out, stderr=err, universal_newlines=True)


def finish_backup(proc, run_id, timeout=900):
    rc = proc.wait(timeout)
    with open('/run/irisops-vmrig/%s.out' % run_id) as f:
        out = f.read()
    with open('/run/irisops-vmrig/%s.err' % run_id) as f:
        err = f.read()
    sys.stderr.write(err)
    log('irisops-backup run %s (background): rc %s' % (run_id, rc))
    return rc, parse_report(out), err


def processes():
    """[(pid, ppid, argv)] of every process."""
    out = []
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % d, 'rb') as f:
                argv = [a.decode('utf-8', 'replace') for a in f.read().split(b'\0') if a]
            with open('/proc/%s/stat' % d) as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
        except (IOError, OSError, ValueError, IndexError):
            continue
        if argv:
            out.append((int(d), ppid, argv))
    return out


def wait_for_process(pred, timeout, what, stop=None):
    """(pid, argv) of the first process whose argv satisfies pred (polled every 0.1 s: a /proc scan costs CPU under
    TCG); raises when none came within timeout s or ``stop()`` (e.g. the run ended) says so."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for pid, ppid, argv in processes():
            if pred(argv):
                return pid, argv
        if stop is not None and stop():
            break
        time.sleep(0.1)
    raise RuntimeError('no %s (waited %.0f s)' % (what, timeout - max(deadline - time.time(), 0)))


def wait_for_copying(pid, timeout, stop=None):
    """Wait until restic (pid) has a file or directory under the mount root open: it has opened the repository and
    is reading the snapshots (polled every 50 ms).  Returns the path it had open."""
    deadline = time.time() + timeout
    fd_dir = '/proc/%d/fd' % pid
    while time.time() < deadline:
        try:
            for fd in os.listdir(fd_dir):
                try:
                    target = os.readlink(os.path.join(fd_dir, fd))
                except OSError:
                    continue
                if target.startswith(MOUNT_ROOT + '/%s/' % VG):
                    return target
        except OSError:
            break
        if stop is not None and stop():
            break
        time.sleep(0.05)
    raise RuntimeError('restic (pid %d) did not start reading the snapshots' % pid)


def is_restic_backup(argv, run_id):
    return argv[:1] and os.path.basename(argv[0]) == 'restic' and 'backup' in argv and ('run=%s' % run_id) in argv


def engine_pids(run_id):
    return [pid for pid, _pp, argv in processes()
            if argv[:1] and argv[0].startswith('python3') and '/usr/local/lib/irisops/_backup.py' in argv
            and run_id in argv]


# ---------------------------------------------------------------------------------------------------------------
# Background helpers of a case (fault watchers, lock holders): started here, ended by reset() at the latest
# ---------------------------------------------------------------------------------------------------------------

def spawn(name, argv):
    if not os.path.isdir(PIDS):
        os.makedirs(PIDS)
    out = open('/run/irisops-vmrig/%s.log' % name, 'w')
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    with open(os.path.join(PIDS, name), 'w') as f:
        f.write(str(proc.pid))
    return proc


def watcher(case, trigger, action):
    """fault_watch.py (the old scenario's injector): waits for its trigger, injects, writes its result file."""
    argv = [sys.executable, os.path.join(RIG, 'fault_watch.py'), '--timeout', '600',
            '--stop-file', '/run/irisops-vmrig/%s.stop' % case, '--result', '/run/irisops-vmrig/%s.result' % case]
    return spawn('watch-' + case, argv + trigger + action)


def watcher_result(case, proc, wait=60):
    open('/run/irisops-vmrig/%s.stop' % case, 'a').close()
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        pass
    return read_json('/run/irisops-vmrig/%s.result' % case)


# ---------------------------------------------------------------------------------------------------------------
# Reset between cases
# ---------------------------------------------------------------------------------------------------------------

def reset(verbose=True):
    """The golden state: no helper of an earlier case running, nothing mounted under /run/irisops, no snapshot or
    filler LV in the VG, no test file left, every instance thawed, no emulator fault, write daemons not stopped,
    IRISA and IRISB running with the default write load, no dead-man switch armed, the sftp repository host up
    (run.py starts the container before every case).  Prints what it had to undo."""
    done = []
    for f in glob.glob(os.path.join(PIDS, '*')):
        try:
            with open(f) as h:
                pid = int(h.read().strip())
            os.killpg(pid, signal.SIGKILL)
            done.append('killed helper %s' % os.path.basename(f))
        except (ValueError, OSError):
            pass
        os.unlink(f)
    for pid, _pp, argv in processes():
        if '/usr/local/lib/irisops/_backup.py' in ' '.join(argv) or (
                argv[:1] and os.path.basename(argv[0]) == 'restic' and 'backup' in argv):
            try:
                os.kill(pid, signal.SIGKILL)
                done.append('killed %s' % ' '.join(argv)[:80])
            except OSError:
                pass
    for inst in registered():
        pid = state_of(inst).get('wd_pid')
        if pid and proc_state(pid) == 'T':
            os.kill(pid, signal.SIGCONT)
            done.append('SIGCONT write daemon of %s' % inst['name'])
    for m in sorted(mounts_under() + mounts_under('/var/backups/irisops-small'), key=len, reverse=True):
        sh(['umount', '-l', m])
        done.append('unmounted %s' % m)
    for path in (MOUNT_ROOT, '/run/irisops/torn', '/run/irisops/snapshots'):
        if os.path.lexists(path):
            shutil.rmtree(path, ignore_errors=True)
    for lv in lvs_rows():
        if lv.get('origin') or lv['lv_name'] == 'filler':
            sh(['lvremove', '-f', '%s/%s' % (VG, lv['lv_name'])])
            done.append('removed LV %s' % lv['lv_name'])
    for path in ('/iris/dba/overflow.bin', '/iris/jrn/fill', '/iris/dba/marker.txt', '/iris/jrn/marker.txt',
                 '/iris/dba/created-after-snapshot.txt', '/iris/jrn/created-after-snapshot.txt'):
        if os.path.exists(path):
            os.unlink(path)
            done.append('removed %s' % path)
    # dead-man switches and their transient timers
    rc, out = sh(['systemctl', 'list-units', '--all', '--plain', '--no-legend', 'irisops-deadman-*'])
    for line in out.splitlines():
        unit = line.split()[0] if line.split() else ''
        if unit.startswith('irisops-deadman-'):
            sh(['systemctl', 'stop', unit])
            done.append('stopped %s' % unit)
    for f in glob.glob(os.path.join(STATE, 'deadman', '*.json')):
        os.unlink(f)
        done.append('removed switch %s' % os.path.basename(f))
    for inst in registered():
        faults = read_json(os.path.join(inst['dir'], 'mgr', 'irisemu', 'faults.json'), {})
        if faults:
            emu_call('irisemu-fault', [inst['name'], '--clear'])
            done.append('cleared faults of %s' % inst['name'])
        st = state_of(inst)
        if st.get('freeze') and is_running(inst):
            sh([os.path.join(inst['dir'], 'bin', 'irisstat'), '-W'])
            done.append('irisstat -W of %s' % inst['name'])
    restore_leftovers_reset(done)
    for inst in INSTANCES:
        if not is_running(inst):
            sh(['iris', 'start', inst['name'], 'quietly'])
            done.append('started %s' % inst['name'])
        load = state_of(inst).get('load') or {}
        if (load.get('interval_ms', 100), load.get('block_pause_ms', 2)) != RIG_LOAD or load.get('paused'):
            emu_call('irisemu-load', [inst['name'], '--resume', '--interval-ms', str(RIG_LOAD[0]),
                                      '--block-pause-ms', str(RIG_LOAD[1])])
            done.append('default load on %s' % inst['name'])
    for f in glob.glob('/run/irisops-vmrig/*.stop') + glob.glob('/run/irisops-vmrig/*.result'):
        os.unlink(f)
    # stale restic locks a killed or cut-off restic left in the repository (restic 0.14 never ignores them: every
    # exclusive operation - check, forget, prune - fails until `restic unlock`, which removes only stale ones)
    locks = repo_locks()
    if locks:
        rc, out = restic(['unlock'])
        done.append('restic unlock of %d lock(s) left in the repository (rc %s)' % (len(locks), rc))
    if verbose:
        log('reset: %s' % ('; '.join(done) or 'nothing to undo'))
    return done


# ---------------------------------------------------------------------------------------------------------------
# Checks, observations, fault records
# ---------------------------------------------------------------------------------------------------------------

class Case(object):
    def __init__(self, name):
        self.name = name
        self.checks = []
        self.observed = {}
        self.records = []
        self.t0 = time.time()

    def check(self, what, ok, detail=''):
        ok = bool(ok)
        self.checks.append({'check': what, 'ok': ok, 'detail': '' if ok else str(detail)[:1500]})
        if not ok:
            log('CHECK FAILED: %s: %s' % (what, str(detail)[:600]))
        return ok

    def look(self, insts=None, live=True, paths=(), key=None):
        """Everything a fault case looks at after the run (the old observe.py): snapshots, IsWDSuspendedExt,
        frozen instances, mounts under /run/irisops, paths that must be gone, live databases."""
        insts = insts or INSTANCES
        seen = {'snapshots': snapshots(), 'wd': {}, 'mounts': mounts_under(),
                'paths_left': [p for p in paths if os.path.lexists(p)], 'live': {}}
        for inst in insts:
            seen['wd'][inst['name']] = wd_status(inst['name']) if is_running(inst) else 'down'
        seen['frozen'] = sorted(n for n, s in seen['wd'].items() if s == 5)
        if live:
            for inst in insts:
                seen['live'][inst['name']] = live_check(inst)
        seen['live_failed'] = sum(1 for r in seen['live'].values() if r['rc'] != 0)
        if key:
            self.observed[key] = seen
        return seen

    def record(self, suite, case, fault, expect, rc_failed, message, message_expected, frozen_after,
               snapshots_after, data_lost, report_status, **extra):
        rec = dict(suite=suite, case=case, fault=' '.join(fault.split()), expect=expect, rc_failed=bool(rc_failed),
                   message=(message or '')[:4000], message_expected=message_expected,
                   frozen_after=list(frozen_after), snapshots_after=list(snapshots_after),
                   data_lost=int(data_lost), report_status=report_status,
                   seconds=round(time.time() - self.t0, 1))
        rec.update(extra)
        self.records.append(rec)

    def result(self, error=None):
        if error:
            self.checks.append({'check': 'case ran to its end', 'ok': False, 'detail': error})
        return {'case': self.name, 'ok': all(c['ok'] for c in self.checks) and bool(self.checks),
                'checks': self.checks, 'observed': self.observed, 'records': self.records,
                'seconds': round(time.time() - self.t0, 1)}


def common_failure_checks(c, rc, rep, msg_expected, seen, run_id, repo_snaps=None, history_before=None):
    """What every failing run must satisfy (the old tasks/observe.yml, on the engine's report and the host)."""
    err = (rep or {}).get('error') or ''
    cleanup = (rep or {}).get('cleanup') or {}
    c.check('the run failed (exit status not 0)', rc not in (0, None), 'rc %s' % rc)
    c.check('a JSON report was printed', rep is not None, 'no report')
    c.check('report status failed', (rep or {}).get('status') == 'failed', (rep or {}).get('status'))
    c.check('the message names the fault within its first 300 characters: %r' % msg_expected,
            msg_expected in err[:300], err[:600])
    c.check('report: no snapshot left, nothing left frozen',
            not cleanup.get('snapshots_left') and not cleanup.get('still_frozen'), cleanup)
    c.check('host: nothing frozen (IsWDSuspendedExt), no snapshot LV (lvs)',
            seen['frozen'] == [] and seen['snapshots'] == [],
            'frozen %s snapshots %s' % (seen['frozen'], seen['snapshots']))
    c.check('host: nothing mounted under /run/irisops, lock record and run paths gone',
            seen['mounts'] == [] and seen['paths_left'] == [],
            'mounts %s paths %s' % (seen['mounts'], seen['paths_left']))
    c.check('host: every running instance answered IsWDSuspendedExt with 3 or 5',
            all(v in (3, 5, 'down') for v in seen['wd'].values()), seen['wd'])
    c.check('host: the live databases are consistent (irisemu-dbcheck)', seen['live_failed'] == 0, seen['live'])
    if repo_snaps is not None:
        c.check('repository: no backup of run %s (no partial copy)' % run_id, of_run(repo_snaps, run_id) == [],
                of_run(repo_snaps, run_id))
    if history_before is not None:
        after = history_with(run_id)
        c.check('ExternalSetHistory not called (no history entry of the run)', after == history_before,
                'before %s after %s' % (history_before, after))


def fault_record(c, case, fault, rc, rep, msg_expected, seen, expect='fail', suite='vmrig_faults'):
    c.record(suite, case, fault, expect, rc not in (0, None), (rep or {}).get('error') or '', msg_expected,
             seen['frozen'], seen['snapshots'], seen['live_failed'], (rep or {}).get('status'),
             failed_step=(rep or {}).get('failed_step'))


LOCK_PATHS = [os.path.join(STATE, 'backup.owner.json')]


def lock_free():
    """The backup-run lock is free: no owner record and the flock can be taken."""
    import fcntl
    if os.path.exists(os.path.join(STATE, 'backup.owner.json')):
        return False
    path = os.path.join(STATE, 'backup.lock')
    if not os.path.exists(path):
        return True
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------------------------------------------

def successful_run_checks(c, rc, rep, run_id, seen, set_history=True):
    """The checks of the old converge verify (full backup) that every successful run must pass."""
    rep = rep or {}
    inst = rep.get('instances') or {}
    vols = rep.get('volumes') or []
    cleanup = rep.get('cleanup') or {}
    restic_ = rep.get('restic') or {}
    c.check('run succeeded (rc 0, status success)', rc == 0 and rep.get('status') == 'success',
            'rc %s status %s error %s' % (rc, rep.get('status'), rep.get('error')))
    c.check('both instances in the report', sorted(inst) == ['IRISA', 'IRISB'], sorted(inst))
    c.check('each instance frozen for a positive number of ms',
            all(isinstance(inst.get(n, {}).get('frozen_ms'), int) and inst[n]['frozen_ms'] > 0
                for n in ('IRISA', 'IRISB')), dict((n, e.get('frozen_ms')) for n, e in inst.items()))
    c.check('journal file to restore from: IRISA in /iris/jrn/irisa/, IRISB in /iris/jrn/irisb/',
            str((inst.get('IRISA') or {}).get('journal_file')).startswith('/iris/jrn/irisa/')
            and str((inst.get('IRISB') or {}).get('journal_file')).startswith('/iris/jrn/irisb/'),
            dict((n, e.get('journal_file')) for n, e in inst.items()))
    if set_history:
        c.check('history recorded for both (report)',
                [inst.get(n, {}).get('history_recorded') for n in ('IRISA', 'IRISB')] == [True, True],
                dict((n, e.get('history_recorded')) for n, e in inst.items()))
    c.check('the four LVs were snapshotted and copied',
            sorted('%s/%s' % (v['vg'], v['lv']) for v in vols) == FOUR_LVS, [v.get('lv') for v in vols])
    c.check('snapshot fill at the end of the copy is a number for all four',
            len([v for v in vols if isinstance(v.get('fill_percent'), (int, float))]) == 4,
            [v.get('fill_percent') for v in vols])
    c.check('bytes copied > 0 for all four volumes', len([v for v in vols if (v.get('bytes') or 0) > 0]) == 4,
            [v.get('bytes') for v in vols])
    seconds = restic_.get('seconds')
    c.check('throughput: bytes processed and copy seconds are numbers (MiB/s computable)',
            isinstance(seconds, (int, float)) and seconds > 0 and (restic_.get('bytes_processed') or 0) > 0,
            restic_)
    c.check('every check of the run ok', rep.get('checks') and all(x['ok'] for x in rep['checks']),
            rep.get('checks'))
    c.check('report cleanup: 4 snapshots removed, none left, nothing frozen',
            len(cleanup.get('snapshots_removed') or []) == 4 and not cleanup.get('snapshots_left')
            and not cleanup.get('still_frozen'), cleanup)
    c.check('host: no snapshot LV left (lvs)', seen['snapshots'] == [], seen['snapshots'])
    c.check('host: IsWDSuspendedExt 3 for both (not frozen)', [seen['wd'].get(n) for n in ('IRISA', 'IRISB')] == [3, 3],
            seen['wd'])
    c.check('host: nothing mounted under /run/irisops, run lock free', seen['mounts'] == [] and lock_free(),
            seen['mounts'])
    c.check('host: the live databases are consistent', seen['live_failed'] == 0, seen['live'])


def restore_and_check(c, snap_id, label):
    """restic restore of a snapshot into a temporary directory, then irisemu-dbcheck on it."""
    tmp = tempfile.mkdtemp(prefix='vmrig-restore-')
    try:
        rc, out = restic(['restore', snap_id, '--target', tmp])
        c.check('%s: restic restore of %s' % (label, snap_id[:8]), rc == 0, out[-500:])
        rc, out = emu_call('irisemu-dbcheck', [tmp])
        c.observed['%s_dbcheck' % label] = out.strip().splitlines()
        c.check('%s: irisemu-dbcheck on the restored copy: consistent, IRISA and IRISB' % label,
                rc == 0 and re.search(r'consistent: instance IRISA\b', out) and
                re.search(r'consistent: instance IRISB\b', out), 'rc %s: %s' % (rc, out[-800:]))
        return rc == 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def soak_record(c, n, rc, rep, copy_ok, seen, load):
    """The old soak's record of run n (suite soak): succeeded, copy consistent (checked independently), nothing
    frozen or snapshotted after it, live databases consistent."""
    c.record('soak', 'run-%d' % n, 'back-to-back run %d of 2 under a high write load (irisemu-load --interval-ms %d '
             '--block-pause-ms %d)' % (n, load[0], load[1]), 'ok', rc != 0, (rep or {}).get('error') or '', '',
             seen['frozen'], seen['snapshots'], (0 if copy_ok else 1) + seen['live_failed'], (rep or {}).get('status'))


def case_full_backup(c):
    """Full backup of both instances under a high write load (the old converge and soak run 1): sftp repository,
    restic check with read-data subset, restore + irisemu-dbcheck, ExternalSetHistory."""
    set_load(['IRISA', 'IRISB'], HIGH_LOAD)
    hist_before = history_with(RUN_FULL)
    rc, rep, err = run_backup(RUN_FULL)
    set_load(['IRISA', 'IRISB'], RIG_LOAD)
    seen = c.look(key='after')
    successful_run_checks(c, rc, rep, RUN_FULL, seen)
    rep = rep or {}
    c.check('restic check with --read-data-subset=10% ran and passed',
            any(x['check'].startswith('restic check --read-data-subset=10%') and x['ok']
                for x in rep.get('checks') or []),
            rep.get('checks'))
    c.check('the run\'s own restore check: irisemu-dbcheck ok',
            any(x['check'].startswith('restored copy passes `irisemu-dbcheck`') and x['ok']
                for x in rep.get('checks') or []), rep.get('checks'))
    hist = history_with(RUN_FULL)
    c.check('history: one entry naming the run in each instance\'s ^SYS("BUHISTORY")',
            all(hist[n] == hist_before[n] + 1 for n in hist), 'before %s after %s' % (hist_before, hist))
    snaps = repo_snapshots()
    mine = of_run(snaps, RUN_FULL)
    c.observed['repository'] = [(s['short_id'], s['run'], s['verified']) for s in snaps]
    c.check('repository: exactly one snapshot of the run, tagged verified',
            len(mine) == 1 and mine[0]['verified'], mine)
    c.observed['report'] = dict((k, rep.get(k)) for k in ('freeze_window_ms', 'snapshot_ms', 'duration_s',
                                                          'bytes_added', 'bytes_processed', 'steps'))
    # the restore case checks this run's copy independently and writes the soak record of run 1
    write_json(FULL_STATE, {'rc': rc, 'status': rep.get('status'), 'error': rep.get('error'), 'seen': seen,
                            'ok': all(x['ok'] for x in c.checks)})


def case_restore(c):
    """restic restore of the full backup's snapshot into a temporary directory and irisemu-dbcheck on it (the old
    converge's independent irisemu-dbcheck of the copy, and the soak's for run 1: writes the soak record of run 1)."""
    pause_load(['IRISA', 'IRISB'])   # nothing here depends on the write load: spare the VM's CPU
    full = read_json(FULL_STATE)
    c.check('the full-backup case ran before (its state file)', full is not None, FULL_STATE)
    mine = [s for s in of_run(repo_snapshots(), RUN_FULL) if s['verified']]
    copy_ok = False
    if c.check('the full backup\'s verified snapshot is in the repository', len(mine) == 1, mine):
        copy_ok = restore_and_check(c, mine[0]['id'], 'restore')
    if full:
        soak_record(c, 1, full['rc'], full, copy_ok and full.get('ok'), full['seen'], HIGH_LOAD)


def case_second_run_and_lock(c):
    """A second run (soak run 2, high write load) is deduplicated; while it runs, a third run is refused by the
    run lock and names it (the freeze lock: case freeze-lock-held)."""
    first = read_json(os.path.join(REPORT_DIR, 'backup-%s.json' % RUN_FULL)) or {}
    set_load(['IRISA', 'IRISB'], HIGH_LOAD)
    # verified by its own restore below (the soak's independent check) instead of the engine's restore command
    proc = start_backup(RUN_SECOND, QUICK_VERIFY)
    owner = os.path.join(STATE, 'backup.owner.json')
    deadline = time.time() + 300
    while time.time() < deadline and (read_json(owner) or {}).get('run_id') != RUN_SECOND and proc.poll() is None:
        time.sleep(0.05)
    c.check('the second run holds the run lock (backup.owner.json names it)',
            (read_json(owner) or {}).get('run_id') == RUN_SECOND, read_json(owner))
    t_lock = time.time()
    rc3, rep3, _err3 = run_backup('vmrig-lock-second')
    holder_after = read_json(owner) or {}
    lock_alive = proc.poll() is None
    rc2, rep2, err2 = finish_backup(proc, RUN_SECOND)
    set_load(['IRISA', 'IRISB'], RIG_LOAD)
    seen = c.look(key='after')
    # -- lock (old lvm_backup verify "Lock:" and fault record lock-held-by-another-run)
    rep3 = rep3 or {}
    err3 = rep3.get('error') or ''
    c.check('second run refused while the first runs', rc3 != 0 and rep3.get('status') == 'failed' and lock_alive,
            'rc %s status %s, first still running %s' % (rc3, rep3.get('status'), lock_alive))
    c.check('the refusal names the lock and the run holding it',
            'another backup run holds' in err3 and RUN_SECOND in err3, err3)
    c.check('the refused run did nothing: no instance, no snapshot removed',
            rep3.get('instances') == {} and not (rep3.get('cleanup') or {}).get('snapshots_removed'), rep3)
    c.check('the refused run left the lock of the first run in place',
            holder_after.get('run_id') == RUN_SECOND, holder_after)
    c.record('vmrig_faults', 'lock-held-by-another-run', 'a second irisops-backup run starts while a first one (in '
             'the background) holds the run lock', 'fail', rc3 != 0, err3, 'another backup run holds',
             seen['frozen'], seen['snapshots'], seen['live_failed'], rep3.get('status'),
             seconds_to_refuse=round(time.time() - t_lock, 1))
    # -- the first (second) run and dedup (old soak run 2; issue 14 "second run deduplicated")
    successful_run_checks(c, rc2, rep2, RUN_SECOND, seen)
    rep2 = rep2 or {}
    added1, added2 = first.get('bytes_added'), rep2.get('bytes_added')
    processed2 = rep2.get('bytes_processed')
    c.observed['dedup'] = {'first_bytes_added': added1, 'second_bytes_added': added2,
                           'second_bytes_processed': processed2}
    log('dedup: first run added %s bytes, second run added %s of %s bytes read' % (added1, added2, processed2))
    c.check('deduplicated: the second run added less than half of what it read and less than half of what the '
            'first added', isinstance(added2, int) and isinstance(added1, int) and added2 * 2 < processed2
            and added2 * 2 < added1, c.observed['dedup'])
    mine = of_run(repo_snapshots(), RUN_SECOND)
    c.check('repository: one verified snapshot of the second run', len(mine) == 1 and mine[0]['verified'], mine)
    copy_ok = bool(mine) and restore_and_check(c, mine[0]['id'], 'soak run 2 copy')
    soak_record(c, 2, rc2, rep2, copy_ok, seen, HIGH_LOAD)


def golden_repository():
    """An empty, initialised repository and no reports, metrics or state of earlier runs (set-up, also when the rig
    sets up a VM again with run.py --reuse)."""
    rc, out = sh(['ssh', '-i', KEY, '-o', 'UserKnownHostsFile=%s' % KNOWN_HOSTS, '-o', 'BatchMode=yes',
                  'root@%s' % REPO_HOST, 'rm -rf /srv/restic/repo; mkdir -p /srv/restic'])
    if rc != 0:
        sys.stderr.write('cannot reach the sftp host: %s\n' % out)
        return 1
    for d in (REPORT_DIR, TEXTFILE_DIR, CONF_DIR, '/var/cache/irisops/restic', '/var/cache/irisops-vmrig',
              '/var/lib/irisops-vmrig', '/var/lib/irisops/journals', DRILL_ROOT):
        shutil.rmtree(d, ignore_errors=True)
    os.makedirs(TEXTFILE_DIR)
    rc, out = sh(['irisops-backup', '--config', BASE_CONFIG, 'init'], timeout=600)
    sys.stdout.write(out)
    return rc


def hold_freeze_lock(seconds):
    """Helper process: hold the host freeze lock (the freeze engine's own FreezeLock) like another freezer's window."""
    sys.path.insert(0, '/usr/local/lib/irisops')
    import _freeze  # pylint: disable=import-error
    lock = _freeze.FreezeLock('vmrig-freeze-holder', run_id='vmrig-hold')
    lock.acquire(wait=30)
    open('/run/irisops-vmrig/freeze-holder.ready', 'w').close()
    time.sleep(float(seconds))
    lock.release()


def case_list(c):
    """irisops-backup list: both runs complete (verified), each with the journal file of each instance from the
    manifest inside the backup."""
    pause_load(['IRISA', 'IRISB'])   # nothing here depends on the write load: spare the VM's CPU
    rc, out = sh(['irisops-backup', '--config', BASE_CONFIG, 'list', '--json'])
    entries = json.loads(out[out.index('['):]) if rc == 0 and '[' in out else []
    c.check('list --json works', rc == 0, out[-500:])
    by_run = dict((e.get('run_id'), e) for e in entries)
    c.observed['list'] = [(e.get('short_id'), e.get('run_id'), e.get('verified'), e.get('complete')) for e in entries]
    for run_id in (RUN_FULL, RUN_SECOND):
        e = by_run.get(run_id) or {}
        rep = read_json(os.path.join(REPORT_DIR, 'backup-%s.json' % run_id)) or {}
        man = ((e.get('manifest') or {}).get('instances')) or {}
        c.check('list: run %s is there, verified and complete' % run_id,
                e.get('verified') is True and e.get('complete') is True, e)
        c.check('list: run %s names IRISA and IRISB' % run_id, sorted(e.get('instances') or []) == ['IRISA', 'IRISB'],
                e.get('instances'))
        for inst in INSTANCES:
            jf = (man.get(inst['name']) or {}).get('journal_file')
            want = ((rep.get('instances') or {}).get(inst['name']) or {}).get('journal_file')
            c.check('list: run %s, %s: journal file from the manifest is the run\'s (%s)'
                    % (run_id, inst['name'], want),
                    jf and jf == want and jf.startswith(inst['jrndir'] + '/'), 'manifest %s report %s' % (jf, want))
    c.check('list: no incomplete backup', all(e.get('complete') for e in entries), c.observed['list'])
    rc, text = sh(['irisops-backup', '--config', BASE_CONFIG, 'list'])
    c.observed['list_text'] = text.strip().splitlines()
    c.check('list (text): both runs as verified with the journal files',
            rc == 0 and all(re.search(r'verified\s+%s\s.*IRISA \(/iris/jrn/irisa/' % r, text)
                            for r in (RUN_FULL, RUN_SECOND)),
            text)


def case_prune_floor(c):
    """Retention with the floor: a policy that would keep 1 of the 2 verified backups, min_keep 3: nothing deleted,
    the one it would remove is protected."""
    pause_load(['IRISA', 'IRISB'])   # nothing here depends on the write load: spare the VM's CPU
    before = repo_snapshots()
    config = case_config('vmrig-prune', {'retention': {'keep_daily': 1}, 'min_keep': 3})
    rc, out = sh(['irisops-backup', '--config', config, 'prune'])
    res = json.loads(out[out.index('{'):]) if rc == 0 and '{' in out else {}
    after = repo_snapshots()
    c.observed['prune'] = res
    c.check('prune ran', rc == 0, out[-600:])
    c.check('fewer verified backups (2) than min_keep (3): nothing forgotten',
            res.get('forgotten') == [] and res.get('verified_kept') == 2, res)
    c.check('the backup the policy alone would remove is protected by the floor', len(res.get('protected') or []) == 1,
            res)
    c.check('repository: the same snapshots before and after',
            sorted(s['id'] for s in before) == sorted(s['id'] for s in after), (before, after))


def case_node_exporter(c):
    """Debian's prometheus-node-exporter with the textfile directory of metrics_file, scraped over loopback: the
    irisops_backup_* values are the last run's."""
    pause_load(['IRISA', 'IRISB'])   # nothing here depends on the write load: spare the VM's CPU
    import urllib.request
    last = read_json(os.path.join(REPORT_DIR, 'last.json')) or {}
    c.check('the last run is the second run and succeeded', last.get('run_id') == RUN_SECOND
            and last.get('status') == 'success', (last.get('run_id'), last.get('status')))
    proc = spawn('node-exporter', ['prometheus-node-exporter', '--web.listen-address=127.0.0.1:9100',
                                   '--collector.disable-defaults', '--collector.textfile',
                                   '--collector.textfile.directory=%s' % TEXTFILE_DIR])
    text = ''
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                text = urllib.request.urlopen('http://127.0.0.1:9100/metrics', timeout=5).read().decode()
                break
            except (IOError, OSError):
                time.sleep(0.3)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    values = {}
    for line in text.splitlines():
        if line.startswith('irisops_backup_') or line.startswith('node_textfile_scrape_error'):
            key, _sep, val = line.rpartition(' ')
            values[key] = float(val)
    c.observed['metrics'] = values
    host = last.get('host')
    c.check('scraped http://127.0.0.1:9100/metrics', bool(text), 'no answer')
    c.check('no textfile scrape error', values.get('node_textfile_scrape_error') == 0.0, values)

    def val(name, **labels):
        lab = dict(host=host, **labels)
        return values.get('%s{%s}' % (name, ','.join('%s="%s"' % (k, lab[k]) for k in sorted(lab))))
    exp = {
        'irisops_backup_last_run_success': 1.0,
        'irisops_backup_last_run_timestamp_seconds': float(int(last.get('finished_epoch') or 0)),
        'irisops_backup_duration_seconds': round(float(last.get('duration_s') or 0), 3),
        'irisops_backup_bytes_added': float(last.get('bytes_added') or 0),
        'irisops_backup_bytes_processed': float(last.get('bytes_processed') or 0),
        'irisops_backup_verified_snapshots': float(last.get('verified_kept') or 0),
    }
    for name, want in sorted(exp.items()):
        got = val(name)
        c.check('%s = %s' % (name, want), got is not None and abs(got - want) < 0.002, got)
    c.check('irisops_backup_verified_snapshots = 2', val('irisops_backup_verified_snapshots') == 2.0)
    for n, e in sorted((last.get('instances') or {}).items()):
        got = val('irisops_backup_freeze_window_seconds', instance=n)
        want = (e.get('frozen_ms') or 0) / 1000.0
        c.check('irisops_backup_freeze_window_seconds{instance=%s} = %s' % (n, want),
                got is not None and want > 0 and abs(got - want) < 0.002, got)
        got = val('irisops_backup_last_success_timestamp_seconds', instance=n)
        started = (last.get('last_success') or {}).get(n)
        c.check('irisops_backup_last_success_timestamp_seconds{instance=%s} = the run\'s start %s' % (n, started),
                got is not None and started and got == float(started), got)


def case_torn(c):
    """Control of the consistency checker (old "Torn copy"): snapshots of IRISA's sys and dba volumes WITHOUT a
    freeze, under a continuous write load, found torn by irisemu-dbcheck at least once in two attempts."""
    import lvm_module
    set_load(['IRISA'], CONTINUOUS_LOAD)
    results = []
    try:
        for attempt in (1, 2):
            res = lvm_module.module({'volumes': ['%s/sys' % VG, '%s/dba' % VG], 'size': '64M',
                                     'run_id': 'torn-%d' % attempt, 'state': 'mounted',
                                     'mount_root': '/run/irisops/torn'})
            c.check('torn attempt %d: snapshots taken and mounted' % attempt, not res.get('failed'), res.get('msg'))
            rc, out = emu_call('irisemu-dbcheck', ['/run/irisops/torn/%s/sys/irisa' % VG,
                                                   '/run/irisops/torn/%s/dba' % VG])
            results.append({'rc': rc, 'out': out.strip().splitlines()[:3]})
            lvm_module.module({'volumes': ['%s/sys' % VG, '%s/dba' % VG], 'state': 'absent'})
    finally:
        set_load(['IRISA'], RIG_LOAD)
    c.observed['torn'] = results
    c.check('each check answered 0 or 1', all(r['rc'] in (0, 1) for r in results), results)
    c.check('irisemu-dbcheck found a torn copy (rc 1, TORN) at least once',
            any(r['rc'] == 1 and r['out'] and r['out'][0].startswith('TORN') for r in results), results)
    c.check('no snapshot left', snapshots() == [], snapshots())


def case_staggered(c):
    """freeze_mode staggered under the continuous load on IRISA (old "Same load, with the freeze (staggered)")."""
    set_load(['IRISA'], CONTINUOUS_LOAD)
    hist_before = history_with('vmrig-staggered')
    rc, rep, err = run_backup('vmrig-staggered', {'freeze_mode': 'staggered', 'set_history': False})
    set_load(['IRISA'], RIG_LOAD)
    seen = c.look(key='after')
    rep = rep or {}
    c.check('run succeeded', rc == 0 and rep.get('status') == 'success', (rc, rep.get('error')))
    c.check('freeze_mode staggered in the report', rep.get('freeze_mode') == 'staggered', rep.get('freeze_mode'))
    want = ['freeze IRISA', 'snapshot vgbk/dba', 'freeze IRISB', 'snapshot vgbk/sys', 'snapshot vgbk/jrn',
            'thaw IRISA', 'snapshot vgbk/dbb', 'thaw IRISB']
    c.check('steps exactly %s' % want, rep.get('steps') == want, rep.get('steps'))
    inst = rep.get('instances') or {}
    c.check('each instance frozen for a positive number of ms',
            all(isinstance((inst.get(n) or {}).get('frozen_ms'), int) and inst[n]['frozen_ms'] > 0
                for n in ('IRISA', 'IRISB')), inst)
    mine = of_run(repo_snapshots(), 'vmrig-staggered')
    vols = []
    if mine:
        rc_ls, out = restic(['ls', '--json', mine[0]['id']])
        for line in out.splitlines():
            try:
                node = json.loads(line)
            except ValueError:
                continue
            p = node.get('path') or ''
            m = re.match(r'^%s/(%s/[^/]+)$' % (re.escape(MOUNT_ROOT), VG), p)
            if m and node.get('type') == 'dir':
                vols.append(m.group(1))
    c.check('the repository snapshot holds the four volumes', sorted(vols) == FOUR_LVS, vols)
    c.check('every check ok', rep.get('checks') and all(x['ok'] for x in rep['checks']), rep.get('checks'))
    dbc = [x for x in rep.get('checks') or [] if x['check'].startswith('restored copy passes `irisemu-dbcheck`')]
    c.check('irisemu-dbcheck of the restored copy: consistent: instance IRISA exactly once',
            len(dbc) == 1 and len(re.findall(r'consistent: instance IRISA\b', dbc[0].get('detail') or '')) == 1, dbc)
    c.check('no snapshot left, nothing frozen', seen['snapshots'] == [] and
            [seen['wd'].get(n) for n in ('IRISA', 'IRISB')] == [3, 3], seen)
    c.check('set_history false: no history entry', history_with('vmrig-staggered') == hist_before)


THIN_POOL, THIN_LV, THIN_MNT = 'tpool', 'thin1', '/iris/thin'


def thin_layout_up():
    """A 96 MiB thin pool with one 256 MiB thin volume (ext4, mounted at THIN_MNT) holding an 8 MiB marker file;
    returns the marker's sha256."""
    if not any(lv['lv_name'] == THIN_POOL for lv in lvs_rows()):
        rc, out = sh(['lvcreate', '-q', '-y', '--type', 'thin-pool', '-L', '96m', '-n', THIN_POOL, VG])
        if rc != 0:
            raise RuntimeError('thin pool: %s' % out)
        rc, out = sh(['lvcreate', '-q', '-y', '-V', '256m', '-T', '%s/%s' % (VG, THIN_POOL), '-n', THIN_LV])
        if rc != 0:
            raise RuntimeError('thin volume: %s' % out)
        sh(['mkfs.ext4', '-q', '/dev/%s/%s' % (VG, THIN_LV)])
    os.makedirs(THIN_MNT, exist_ok=True)
    if not os.path.ismount(THIN_MNT):
        sh(['mount', '/dev/%s/%s' % (VG, THIN_LV), THIN_MNT])
    marker = os.path.join(THIN_MNT, 'thin-marker.bin')
    with open(marker, 'wb') as f:
        f.write(os.urandom(8 * 1024 * 1024))
    sh(['sync'])
    with open(marker, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def thin_layout_down():
    if os.path.ismount(THIN_MNT):
        sh(['umount', THIN_MNT])
    for name in (THIN_LV, THIN_POOL):
        if any(lv['lv_name'] == name for lv in lvs_rows()):
            sh(['lvremove', '-f', '%s/%s' % (VG, name)])


def pool_percent():
    row = [lv for lv in lvs_rows('lv_name,data_percent,metadata_percent') if lv['lv_name'] == THIN_POOL][0]
    return float(row['data_percent'] or 0), float(row['metadata_percent'] or 0)


def case_thin_volume(c):
    """Issue 16 item 3: a thin volume beside the four thick ones in one run (mixed layout): a thin snapshot
    without a size, mounted, copied, removed; then the same run refused before any freeze when the pool is
    above THIN_POOL_MAX_PERCENT."""
    pause_load(['IRISA', 'IRISB'])
    try:
        want = thin_layout_up()
        data0, _meta0 = pool_percent()
        hist_before = history_with('vmrig-thin')
        rc, rep, _err = run_backup('vmrig-thin', {'volumes': ['%s/%s' % (VG, THIN_LV)], 'set_history': False})
        rep = rep or {}
        seen = c.look(key='after')
        c.check('run with the thin volume beside the four thick ones succeeded',
                rc == 0 and rep.get('status') == 'success', (rc, rep.get('error')))
        vols = dict(('%s/%s' % (v.get('vg'), v.get('lv')), v) for v in rep.get('volumes') or [])
        thin = vols.get('%s/%s' % (VG, THIN_LV)) or {}
        c.check('the report lists the thin volume with its pool (%s/%s) and no snapshot size, beside the four thick '
                'ones' % (VG, THIN_POOL), thin.get('thin_pool') == '%s/%s' % (VG, THIN_POOL)
                and thin.get('snapshot_size') is None and sorted(vols) == sorted(FOUR_LVS + ['%s/%s' % (VG, THIN_LV)]),
                thin or sorted(vols))
        auto = rep.get('lvm_autoextend') or {}
        c.observed['lvm_autoextend'] = auto
        c.check('the report gives the host\'s autoextend settings (lvmconfig: thin_pool_autoextend_threshold %s) and, '
                'the pool\'s autoextend being off, warns about %s/%s' % (
                    auto.get('thin_pool_autoextend_threshold'), VG, THIN_POOL),
                isinstance(auto.get('thin_pool_autoextend_threshold'), int) and 'monitoring' in auto
                and 'dmeventd_running' in auto and (auto['thin_pool_autoextend_threshold'] < 100 or any(
                    'thin pool autoextend is off' in w and '%s/%s' % (VG, THIN_POOL) in w
                    for w in rep.get('warnings') or [])), (auto, rep.get('warnings')))
        mine = of_run(repo_snapshots(), 'vmrig-thin')
        got = None
        if mine:
            target = tempfile.mkdtemp(prefix='vmrig-thin-')
            path = '%s/%s/%s/thin-marker.bin' % (MOUNT_ROOT, VG, THIN_LV)
            rc_r, out = restic(['restore', mine[0]['id'], '--target', target, '--include', path])
            try:
                with open(target + path, 'rb') as f:
                    got = hashlib.sha256(f.read()).hexdigest()
            except OSError:
                got = 'not restored (rc %s): %s' % (rc_r, out[-300:])
            shutil.rmtree(target, ignore_errors=True)
        c.check('the marker file of the thin volume is in the repository snapshot, byte for byte (sha256)',
                got == want, (got, want, [m.get('short_id') for m in mine]))
        c.check('no snapshot left, nothing frozen, no history entry', seen['snapshots'] == [] and
                [seen['wd'].get(n) for n in ('IRISA', 'IRISB')] == [3, 3]
                and history_with('vmrig-thin') == hist_before, (seen['snapshots'], seen['wd']))
        # the pool above the limit: fill the thin volume until the pool's data passes 80 %
        filler = os.path.join(THIN_MNT, 'fill.bin')
        with open(filler, 'wb') as f:
            while pool_percent()[0] < 82.0:
                f.write(os.urandom(4 * 1024 * 1024))
                f.flush()
                os.fsync(f.fileno())
        data1, meta1 = pool_percent()
        c.observed['pool_percent'] = {'before': data0, 'filled': [data1, meta1]}
        rc2, rep2, _err = run_backup('vmrig-thin-full', {'volumes': ['%s/%s' % (VG, THIN_LV)], 'set_history': False})
        rep2 = rep2 or {}
        seen2 = c.look(key='refused')
        err = rep2.get('error') or ''
        c.check('pool at %.1f %%: refused before the freeze, naming the pool and the limit' % data1,
                rc2 != 0 and err.startswith('nothing frozen: preflight failed') and
                'thin pool %s/%s of %s/%s is too full for a snapshot (data %.2f%%' % (
                    VG, THIN_POOL, VG, THIN_LV, data1) in err and 'the limit is 80%' in err, (rc2, err))
        c.check('refused: nothing frozen, no snapshot, no repository snapshot of the run',
                seen2['snapshots'] == [] and [seen2['wd'].get(n) for n in ('IRISA', 'IRISB')] == [3, 3]
                and not of_run(repo_snapshots(), 'vmrig-thin-full'), (seen2['snapshots'], seen2['wd']))
    finally:
        thin_layout_down()


def failing_case(c, case, fault, msg_expected, run_overrides, inject=None, after=None, paths=(), insts=None,
                 check_repo=True):
    """The skeleton of a fault case: inject (returns a context), run, undo (after(ctx) returns extra output),
    look, common checks, fault record.  Returns (rc, rep, seen, ctx)."""
    ctx = inject() if inject else {}
    hist_before = history_with(case)
    rc, rep, err = run_backup(case, run_overrides)
    ctx['stderr'] = err[-2000:]
    if after:
        ctx['after'] = after(ctx)
    seen = c.look(insts=insts, paths=list(paths) + LOCK_PATHS, key='after')
    snaps = repo_snapshots() if check_repo else None
    common_failure_checks(c, rc, rep, msg_expected, seen, case, snaps, hist_before)
    fault_record(c, case, fault, rc, rep, msg_expected, seen)
    c.observed['report'] = dict((k, (rep or {}).get(k))
                                for k in ('status', 'failed_step', 'error', 'cleanup', 'freeze_window_ms', 'warnings'))
    return rc, rep or {}, seen, ctx


def case_freeze_lock(c):
    """Two freezers at once (issue 14: "two runs at once (the freeze lock from the freeze-engine issue)"): another
    freezer holds the host freeze lock (the freeze engine's own FreezeLock, held by a helper process as a window of
    iris_lvm_snapshot or a hook would hold it); irisops-backup waits its lock_wait, then refuses, naming the holder,
    and freezes nothing."""
    holder = spawn('freeze-holder', [sys.executable, os.path.join(RIG, 'rig.py'), 'hold-freeze-lock', '120'])
    deadline = time.time() + 60
    while time.time() < deadline and not os.path.exists('/run/irisops-vmrig/freeze-holder.ready'):
        time.sleep(0.05)
    case = 'freeze-lock-held'
    hist_before = history_with(case)
    before = dict((i['name'], messages_count(i, 'ExternalFreeze: Suspending system')) for i in INSTANCES)
    rc, rep, _e = run_backup(case, QUICK_VERIFY)
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait()
    os.unlink('/run/irisops-vmrig/freeze-holder.ready')
    seen = c.look(paths=LOCK_PATHS, key='after')
    snaps = repo_snapshots()
    common_failure_checks(c, rc, rep, 'host freeze lock', seen, case, snaps, hist_before)
    rep = rep or {}
    err = rep.get('error') or ''
    after = dict((i['name'], messages_count(i, 'ExternalFreeze: Suspending system')) for i in INSTANCES)
    c.check('refused naming the holder (caller, run)', 'vmrig-freeze-holder' in err and 'vmrig-hold' in err, err)
    c.check('nothing frozen: "nothing frozen", no ExternalFreeze in the instance logs, no freeze window',
            err.startswith('nothing frozen') and after == before and not rep.get('freeze_window_ms'),
            (err[:200], before, after))
    fault_record(c, case, 'another freezer (caller vmrig-freeze-holder) holds the host freeze lock when irisops-backup '
                 'wants to freeze', rc, rep, 'host freeze lock', seen)


def case_overflow(c):
    case = 'snapshot-overflow-during-copy'
    state = {}

    def inject():
        state['w'] = watcher(case, ['--mounted', '%s/%s/dba' % (MOUNT_ROOT, VG)],
                             ['--run', 'dd', 'if=/dev/zero', 'of=/iris/dba/overflow.bin', 'bs=1M', 'count=48',
                              'oflag=direct'])
        return {}

    def after(ctx):
        res = watcher_result(case, state['w'])
        if os.path.exists('/iris/dba/overflow.bin'):
            os.unlink('/iris/dba/overflow.bin')
        return res

    rc, rep, seen, ctx = failing_case(
        c, case, 'snapshots of 8 MiB; as soon as the snapshot of vgbk/dba is mounted for the copy, a writer rewrites '
        '48 MiB of the origin (dd oflag=direct to /iris/dba), so that snapshot overflows during the copy',
        'dba', {'snapshot_size': '8M'}, inject, after)
    err = rep.get('error') or ''
    c.check('the writer ran during the copy (watcher rc 0)', (ctx.get('after') or {}).get('rc') == 0, ctx.get('after'))
    c.check('failed in the copy: the fill check (overflowed vgbk/dba_irisops_bkp) or restic\'s read errors of the '
            'overflowed snapshot of dba caught it', rep.get('failed_step') == 'copy' and (
                ('overflowed' in err and 'dba_irisops_bkp' in err) or
                ('could not read' in err and '/%s/dba/' % VG in err)), '%s: %s' % (rep.get('failed_step'), err))
    c.check('torn copy: a restic snapshot the run made was forgotten, none is left',
            'NOT forgotten' not in str((rep.get('cleanup') or {}).get('restic_snapshot')), rep.get('cleanup'))
    c.observed['detected_by'] = 'fill check' if 'overflowed' in err else 'restic read errors'


def case_mount_fails(c):
    case = 'mount-fails'
    blocker = '%s/%s/dbb' % (MOUNT_ROOT, VG)

    def inject():
        os.makedirs(os.path.dirname(blocker), exist_ok=True)
        with open(blocker, 'w') as f:
            f.write('not a directory\n')
        return {}

    def after(ctx):
        out = {'untouched': os.path.isfile(blocker) and open(blocker).read() == 'not a directory\n'}
        if os.path.lexists(blocker):
            os.unlink(blocker)
        return out

    rc, rep, seen, ctx = failing_case(
        c, case, 'the mount point of the snapshot of vgbk/dbb (%s) exists as a regular file, so mounting that snapshot '
        'fails after the others were mounted' % blocker, 'mounting snapshot', {}, inject, after)
    c.check('failed at the mount, naming dbb', rep.get('failed_step') == 'mount' and 'dbb' in (rep.get('error') or ''),
            (rep.get('failed_step'), rep.get('error')))
    c.check('the four snapshots were removed (report)',
            len((rep.get('cleanup') or {}).get('snapshots_removed') or []) == 4, rep.get('cleanup'))
    c.check('the file in the way is untouched (the run removes only what it made)',
            (ctx.get('after') or {}).get('untouched'), ctx.get('after'))


def case_repository_full(c):
    """Old copy-target-full: the repository (the copy target) is a local path on a 256 KiB tmpfs of the database host,
    far smaller than the backup, so the copy runs out of space.  (On the sftp repository the same fault reaches restic
    only as sftp's SSH_FX_FAILURE: the sftp protocol carries no "no space" code.)"""
    case = 'repository-full'
    small = '/var/backups/irisops-small'
    repo = small + '/repo'

    def inject():
        os.makedirs(small, exist_ok=True)
        sh(['mount', '-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', small])
        rc0, out0 = sh(['irisops-backup', '--config', case_config('vmrig-small-init', {'repository': repo}), 'init'],
                       timeout=300)
        c.check('the small repository exists (init)', rc0 == 0, out0[-500:])
        return {}

    def after(ctx):
        res = {'snapshots': [s['short_id'] for s in repo_snapshots(repo)]}
        rc, out = sh(['find', repo, '-path', '*/data/*', '-type', 'f'])
        res['packs'] = out.split()
        sh(['umount', small])
        return res

    rc, rep, seen, ctx = failing_case(
        c, case, 'the repository is a local path on a 256 KiB tmpfs (%s), far smaller than the backup, so the copy '
        'runs out of space' % small, 'no space left on device', {'repository': repo}, inject, after,
        check_repo=False)
    a = ctx.get('after') or {}
    c.check('failed in the copy', rep.get('failed_step') == 'copy', (rep.get('failed_step'), rep.get('error')))
    c.check('the next step says the repository is full', 'the repository is full' in (rep.get('error') or ''),
            rep.get('error'))
    c.check('nothing of the run in the small repository (no snapshot)', a.get('snapshots') == [], a)


def case_vg_full(c):
    case = 'vg-full-after-freeze'
    state = {}

    def inject():
        state['w'] = watcher(case, ['--frozen', '/iris/sys/irisa/mgr/irisemu/state.json'],
                             ['--run', 'lvcreate', '--yes', '-l', '100%FREE', '-n', 'filler', VG])
        return {}

    def after(ctx):
        res = watcher_result(case, state['w'])
        sh(['lvremove', '-f', '%s/filler' % VG])
        return res

    rc, rep, seen, ctx = failing_case(
        c, case, 'a watcher takes every free extent of the VG (lvcreate -l 100%FREE) the moment IRISA is frozen, after '
        'the preflight found enough space', 'creating snapshot', {}, inject, after)
    err = rep.get('error') or ''
    c.check('the watcher took the free extents (rc 0)', (ctx.get('after') or {}).get('rc') == 0, ctx.get('after'))
    c.check('failed creating a snapshot, with "failed" and "Thawed: IRISA, IRISB"',
            'creating snapshot' in err and 'failed' in err and 'Thawed: IRISA, IRISB' in err, err)
    c.check('failed in the freeze window', rep.get('failed_step') == 'freeze', rep.get('failed_step'))
    c.check('both instances answered 3 (not frozen)', [seen['wd'].get(n) for n in ('IRISA', 'IRISB')] == [3, 3],
            seen['wd'])


def case_instance_down(c):
    case = 'instance-down-during-freeze'
    state = {}

    def inject():
        state['w'] = watcher(case, ['--acked', '/iris/sys/irisb/mgr/irisemu/state.json'],
                             ['--run', 'iris', 'stop', 'IRISB', 'quietly'])
        return {}

    def after(ctx):
        res = watcher_result(case, state['w'])
        rc, q = sh(['iris', 'qlist', 'IRISB'])
        res = dict(res or {}, irisb_state=(q.split('^')[3] if q.count('^') > 3 else q.strip()),
                   switch_left=os.path.exists(os.path.join(STATE, 'deadman', 'IRISB.json')))
        return res

    rc, rep, seen, ctx = failing_case(
        c, case, 'IRISB is stopped (iris stop IRISB) by a watcher the moment its write daemon has acknowledged the '
        'freeze, i.e. inside the freeze window, before the snapshots; its thaw then cannot run',
        'IRISB went down inside the freeze window', {}, inject, after)
    err = rep.get('error') or ''
    a = ctx.get('after') or {}
    c.check('the watcher stopped IRISB (rc 0)', a.get('rc') == 0, a)
    c.check('IRISB was down after the run', str(a.get('irisb_state')).startswith('down'), a.get('irisb_state'))
    c.check('reported down, not frozen: "the instance is not running" and "IRISB went down inside the freeze window: '
            'not frozen", no "STILL FROZEN"', 'the instance is not running' in err and
            'IRISB went down inside the freeze window: not frozen' in err and 'STILL FROZEN' not in err, err)
    c.check('IRISB\'s dead-man switch disarmed', a.get('switch_left') is False, a)
    c.check('failed in the freeze window', rep.get('failed_step') == 'freeze', rep.get('failed_step'))
    c.check('IRISA thawed by ExternalThaw',
            ((rep.get('instances') or {}).get('IRISA') or {}).get('thawed_by') == 'ExternalThaw', rep.get('instances'))
    sh(['iris', 'start', 'IRISB', 'quietly'])


def case_freeze_fails(c):
    case = 'freeze-fails-second-of-three'
    ctx0 = {}

    def inject():
        if not os.path.exists('/usr/local/etc/irisemu/IRISC.json'):
            os.makedirs(IRISC['dbdir'], exist_ok=True)
            shutil.chown(IRISC['dbdir'], 'irisowner')
            sh(['python3', '/opt/irisemu-src/install.py', '--flavour', 'iris', '--instance', 'IRISC', '--dir',
                IRISC['dir'], '--owner', 'irisowner', '--databases', 'USER', '--database-dir', IRISC['dbdir']])
        sh(['iris', 'start', 'IRISC', 'quietly'])
        ctx0['archives'] = set(os.listdir('/etc/lvm/archive'))
        ctx0['resumed'] = dict((i['name'], messages_count(i, 'ExternalThaw: System resumed'))
                               for i in INSTANCES + [IRISC])
        ctx0['wd'] = wd_pid(INSTANCES[1])
        os.kill(ctx0['wd'], signal.SIGSTOP)
        return {}

    def after(ctx):
        os.kill(ctx0['wd'], signal.SIGCONT)
        deadline = time.time() + 30
        new = []
        while time.time() < deadline:
            resumed = dict((i['name'], messages_count(i, 'ExternalThaw: System resumed')) for i in INSTANCES + [IRISC])
            if all(resumed[n] >= ctx0['resumed'][n] + 1 for n in resumed):
                break
            time.sleep(0.5)
        for f in sorted(set(os.listdir('/etc/lvm/archive')) - ctx0['archives']):
            with open(os.path.join('/etc/lvm/archive', f)) as h:
                desc = next((ln for ln in h if ln.startswith('description')), '')
            new.append('%s: %s' % (f, desc.strip()))
        return {'resumed_before': ctx0['resumed'], 'resumed_after': resumed, 'lvm_archives': new}

    try:
        rc, rep, seen, ctx = failing_case(
            c, case, 'three instances IRISA, IRISB, IRISC (IRISC small, all on the sys LV); IRISB\'s write daemon is '
            'stopped (SIGSTOP), so its ExternalFreeze never completes and is killed after session_timeout=20 s while '
            'IRISA and IRISC are frozen (the freeze is concurrent)', 'freeze failed on IRISB',
            {'instances': ['IRISA', 'IRISB', 'IRISC'], 'session_timeout': 20}, inject, after,
            insts=INSTANCES + [IRISC])
        a = ctx.get('after') or {}
        c.check('no lvcreate ran (no new LVM metadata archive of an lvcreate)',
                [x for x in a.get('lvm_archives', []) if 'lvcreate' in x and '--test' not in x] == [], a)
        c.check('IRISA, IRISB and IRISC each resumed exactly once more ("ExternalThaw: System resumed")',
                all(a['resumed_after'][n] == a['resumed_before'][n] + 1 for n in a.get('resumed_before', {})), a)
        c.check('no snapshot time in the report', rep.get('snapshot_ms') is None, rep.get('snapshot_ms'))
        c.check('the error says "Thawed again: IRISA, IRISC"', 'Thawed again: IRISA, IRISC' in (rep.get('error') or ''),
                rep.get('error'))
    finally:
        sh(['iris', 'stop', 'IRISC', 'quietly'])


def case_thaw_hangs(c):
    """Old thaw-hangs-stat-fallback on the engine: the VG's LVM lock is held from the freeze until it is 15 s old, so
    the first lvcreate outlives the freeze budget (11 s); the engine thaws first, every ExternalThaw hangs
    (irisemu-fault --thaw-hang) and is killed after session_timeout, and irisstat -W thaws both."""
    case = 'thaw-hangs-stat-fallback'
    state = {}

    def inject():
        for n in ('IRISA', 'IRISB'):
            emu_call('irisemu-fault', [n, '--thaw-hang', '1'])
        state['w'] = watcher(case, ['--frozen', '/iris/sys/irisa/mgr/irisemu/state.json'],
                             ['--flock', '/run/lock/lvm/V_%s' % VG, '--hold-until-freeze-age', '15'])
        return {}

    def after(ctx):
        res = watcher_result(case, state['w'])
        for n in ('IRISA', 'IRISB'):
            emu_call('irisemu-fault', [n, '--clear'])
        return res

    rc, rep, seen, ctx = failing_case(
        c, case, 'ExternalFreezeTimeOut 12 s (budget 11 s), no dead-man switch; a watcher holds LVM\'s lock of the VG '
        '(flock on /run/lock/lvm/V_vgbk) from the freeze until it is 15 s old, so the first lvcreate runs past the '
        'budget; every ExternalThaw hangs (irisemu-fault --thaw-hang 1) and is killed after session_timeout=20 s; '
        'the irisstat -W fallback must thaw', 'freeze budget',
        {'external_freeze_timeout': 12, 'max_freeze_seconds': 11, 'session_timeout': 20, 'deadman_timeout': 0},
        inject, after)
    err = rep.get('error') or ''
    c.check('the watcher held the VG lock', 'held flock' in str((ctx.get('after') or {}).get('action')),
            ctx.get('after'))
    c.check('the instances were thawed first (lvcreate past the budget)', 'thawed first' in err or
            'freeze budget exceeded' in err, err)
    c.check('irisstat -W thawed both', [((rep.get('instances') or {}).get(n) or {}).get('thawed_by')
                                        for n in ('IRISA', 'IRISB')] == ['stat -W', 'stat -W'], rep.get('instances'))
    c.check('failed in the freeze window', rep.get('failed_step') == 'freeze', rep.get('failed_step'))


def case_run_as_missing(c):
    """Old run-as-from-local-fact, engine part: run_as names an OS user that does not exist: refused before the
    freeze (the local fact lookup itself is the role's: see the role case)."""
    case = 'run-as-missing-user'
    rc, rep, seen, ctx = failing_case(
        c, case, 'run_as names an OS user that does not exist (irisops-gone); the engine must refuse before the freeze',
        'irisops-gone', {'run_as': 'irisops-gone'})
    c.check('refused in the preflight, nothing frozen', rep.get('failed_step') == 'preflight'
            and rep.get('freeze_window_ms') is None and (rep.get('error') or '').startswith('nothing frozen'),
            (rep.get('failed_step'), rep.get('error')))


def case_wrong_password(c):
    case = 'wrong-repository-password'
    before = dict((i['name'], messages_count(i, 'ExternalFreeze: Suspending system')) for i in INSTANCES)
    rc, rep, seen, ctx = failing_case(
        c, case, 'the repository password file holds a wrong password', 'wrong repository password',
        {'repository_password_file': WRONG_PASSWORD})
    after = dict((i['name'], messages_count(i, 'ExternalFreeze: Suspending system')) for i in INSTANCES)
    c.check('nothing frozen: no ExternalFreeze in the instance logs, refused in the preflight',
            after == before and rep.get('failed_step') == 'preflight' and
            (rep.get('error') or '').startswith('nothing frozen'), (before, after, rep.get('failed_step')))


def case_sshd_down(c):
    case = 'sshd-host-down-at-start'
    before = dict((i['name'], messages_count(i, 'ExternalFreeze: Suspending system')) for i in INSTANCES)
    ctx0 = {}

    def inject():
        ctx0['down'] = ask('sftp-down')
        return {}

    def after(ctx):
        return ask('sftp-up')

    rc, rep, seen, ctx = failing_case(
        c, case, 'the sftp repository host is down (its container stopped) when the run starts',
        'cannot be opened', {}, inject, after)
    after_n = dict((i['name'], messages_count(i, 'ExternalFreeze: Suspending system')) for i in INSTANCES)
    c.check('nothing frozen: no ExternalFreeze in the instance logs, refused in the preflight',
            after_n == before and rep.get('failed_step') == 'preflight', (before, after_n, rep.get('failed_step')))
    c.check('the message says the host cannot be reached', 'cannot be reached' in (rep.get('error') or ''),
            rep.get('error'))


def case_repo_unreachable(c):
    """The sftp host goes down during the copy: restic is paused (SIGSTOP) as soon as it reads the snapshots (an open
    file under the mount root: the repository is open, the copy runs), run.py stops the container, restic goes on."""
    case = 'repository-unreachable-mid-copy'
    hist_before = history_with(case)
    proc = start_backup(case)
    pid, argv = wait_for_process(lambda a: is_restic_backup(a, case), 600, 'restic backup of the run',
                                 stop=lambda: proc.poll() is not None)
    c.observed['restic_was_reading'] = wait_for_copying(pid, 300, stop=lambda: proc.poll() is not None)
    os.kill(pid, signal.SIGSTOP)
    c.observed['sftp_down'] = ask('sftp-down')
    os.kill(pid, signal.SIGCONT)
    rc, rep, err = finish_backup(proc, case)
    seen_down = c.look(paths=LOCK_PATHS, key='after')
    c.observed['sftp_up'] = ask('sftp-up')
    # not a check (the brief's expectations are above): what the cut-off restic left in the repository
    c.observed['repository_locks_left'] = repo_locks()
    snaps = repo_snapshots()
    common_failure_checks(c, rc, rep, 'copy into the repository failed', seen_down, case, snaps, hist_before)
    rep = rep or {}
    c.check('failed in the copy', rep.get('failed_step') == 'copy', (rep.get('failed_step'), rep.get('error')))
    c.check('LVM snapshots removed (report)', len((rep.get('cleanup') or {}).get('snapshots_removed') or []) == 4,
            rep.get('cleanup'))
    c.check('no complete-looking backup of the run in the repository', not list(of_run(snaps, case)), snaps)
    fault_record(c, case, 'the sftp repository host goes down (container stopped) while restic copies', rc, rep,
                 'copy into the repository failed', seen_down)
    c.observed['report'] = dict((k, rep.get(k)) for k in ('status', 'failed_step', 'error', 'cleanup'))


def case_killed_during_copy(c):
    """SIGKILL of irisops-backup during the copy: the next list shows no complete backup of it, the next run cleans up
    its leftovers (LVM snapshots still mounted, an unverified restic snapshot if restic finished on its own)."""
    case = 'killed-during-copy'
    proc = start_backup(case)
    pid, argv = wait_for_process(lambda a: is_restic_backup(a, case), 600, 'restic backup of the run',
                                 stop=lambda: proc.poll() is not None)
    c.observed['restic_was_reading'] = wait_for_copying(pid, 300, stop=lambda: proc.poll() is not None)
    proc.kill()
    rc = proc.wait()
    deadline = time.time() + 120
    while time.time() < deadline and any(p == pid for p, _pp, _a in processes()):
        time.sleep(0.2)
    c.observed['orphan_restic_gone'] = not any(p == pid for p, _pp, _a in processes())
    left = snapshots()
    c.observed['left_by_kill'] = {'snapshots': left, 'mounts': mounts_under()}
    rcl, out = sh(['irisops-backup', '--config', BASE_CONFIG, 'list', '--json'])
    entries = json.loads(out[out.index('['):]) if rcl == 0 and '[' in out else None
    mine = [e for e in entries or [] if e.get('run_id') == case]
    c.observed['list_after_kill'] = mine
    c.check('the run was killed (SIGKILL)', rc == -signal.SIGKILL, rc)
    c.check('list: no complete backup of the killed run', entries is not None and
            not [e for e in mine if e.get('complete') or e.get('verified')], out[-600:])
    rc2, rep2, err2 = run_backup(case + '-next', QUICK_VERIFY)
    seen = c.look(paths=LOCK_PATHS, key='after-next-run')
    rep2 = rep2 or {}
    c.check('the next run succeeded', rc2 == 0 and rep2.get('status') == 'success', (rc2, rep2.get('error')))
    warn = ' | '.join(rep2.get('warnings') or [])
    c.check('the next run removed the killed run\'s snapshots (leftovers)',
            all(('removed leftover snapshot %s' % s) in warn for s in left), warn)
    snaps = repo_snapshots()
    c.check('repository: nothing of the killed run any more (an unverified snapshot was forgotten)',
            of_run(snaps, case) == [], of_run(snaps, case))
    c.check('host: no snapshot, no mount, nothing frozen after the next run',
            seen['snapshots'] == [] and seen['mounts'] == [] and seen['frozen'] == [], seen)
    c.check('host: live databases consistent', seen['live_failed'] == 0, seen['live'])
    c.record('vmrig_faults', case, 'SIGKILL of irisops-backup while restic copies; then irisops-backup list and the '
             'next run', 'fail', rc != 0,
             'killed by SIGKILL during the copy; list: %s; the next run: %s' % (
                 'no complete backup of it' if not [e for e in mine if e.get('complete')] else 'COMPLETE BACKUP LISTED',
                 rep2.get('status')), 'no complete backup', seen['frozen'], seen['snapshots'], seen['live_failed'],
             'killed')


def case_sigkill_in_lvcreate(c):
    """Signal row on real LVM: SIGKILL of irisops-backup while a real lvcreate runs inside the freeze window; the
    dead-man switch (armed before the freeze) thaws; the next run removes the snapshot that lvcreate finished."""
    case = 'sigkill-during-lvcreate'
    deadman = 20   # short, so the switch fires soon; the budget (deadman - freeze time - 2 s) still covers lvcreate 1
    proc = start_backup(case, {'deadman_timeout': deadman})
    pid, argv = wait_for_process(lambda a: 'lvcreate' in ' '.join(a[:2]) and any('_irisops_bkp' in x for x in a), 600,
                                 'lvcreate of the run', stop=lambda: proc.poll() is not None)
    t_kill = time.time()
    proc.kill()
    rc = proc.wait()
    c.observed['killed_during'] = ' '.join(argv)
    thawed_at = None
    deadline = time.time() + 120
    while time.time() < deadline:
        if all(not (state_of(i).get('freeze')) for i in INSTANCES):
            thawed_at = time.time()
            break
        time.sleep(0.2)
    c.observed['thawed_after_s'] = round(thawed_at - t_kill, 1) if thawed_at else None
    frozen = [i['name'] for i in INSTANCES if wd_status(i['name']) == 5]
    try:
        with open('/var/log/irisops-deadman.log') as f:
            dlog = [ln.strip() for ln in f if case in ln or 'IRISA' in ln or 'IRISB' in ln][-6:]
    except IOError:
        dlog = []
    c.observed['deadman_log'] = dlog
    c.check('the run was killed (SIGKILL) during lvcreate', rc == -signal.SIGKILL, rc)
    c.check('the dead-man switch thawed both instances (IsWDSuspendedExt 3)', thawed_at is not None and frozen == [],
            'frozen %s after %s' % (frozen, c.observed['thawed_after_s']))
    c.check('the dead-man switch log names the thaw',
            any('IRISA' in ln for ln in dlog) and any('IRISB' in ln for ln in dlog),
            dlog)
    left = snapshots()
    c.observed['left_by_kill'] = left
    rc2, rep2, _err = run_backup(case + '-next', QUICK_VERIFY)
    seen = c.look(paths=LOCK_PATHS, key='after-next-run')
    rep2 = rep2 or {}
    c.check('the next run succeeded', rc2 == 0 and rep2.get('status') == 'success', (rc2, rep2.get('error')))
    c.check('no snapshot left after the next run\'s cleanup', seen['snapshots'] == [], seen['snapshots'])
    c.check('nothing frozen, live databases consistent', seen['frozen'] == [] and seen['live_failed'] == 0, seen)
    c.record('vmrig_signals', 'SIGKILL-lvcreate', 'SIGKILL of irisops-backup while a real lvcreate runs inside the '
             'freeze window (deadman_timeout %d s); then the next run' % deadman, 'fail', rc != 0,
             'killed by SIGKILL during lvcreate; dead-man switch thawed %s after %s s; next run %s' % (
                 'IRISA, IRISB' if thawed_at else 'NOTHING', c.observed['thawed_after_s'], rep2.get('status')),
             'dead-man switch thawed IRISA, IRISB', frozen, seen['snapshots'], seen['live_failed'], 'killed')


# ---------------------------------------------------------------------------------------------------------------
# Journal shipping, restore drill, real restore (issue 15)
# ---------------------------------------------------------------------------------------------------------------

#: The dedicated drill instance (installed by the first drill case, down between cases; the drill starts and stops
#: it) and the drill directory: both on the root file system, apart from every production directory.
IRISD = {'name': 'IRISD', 'dir': '/srv/irisops-drill/irisd', 'dbdir': '/srv/irisops-drill/irisd-db'}
DRILL_ROOT = '/var/lib/irisops/drill'
RESTORE_STATE = '/var/lib/irisops/restore'
GAP_ASIDE = '/iris/jrn/.vmrig-gap-aside'     # same file system: a rename keeps owner and mode
PACK_ASIDE = '/srv/restic/vmrig-pack-orig'
PACK_MARK = '/run/irisops-vmrig/pack-overwritten'
DRILL_CONFIG = {'drill_instance': IRISD['name'], 'drill_root': DRILL_ROOT,
                'journal_metrics_file': TEXTFILE_DIR + '/irisops_journals.prom',
                'drill_metrics_file': TEXTFILE_DIR + '/irisops_drill.prom'}


def engine(args, config, timeout=900):
    """``irisops-backup --config CONFIG ARGS...`` (stderr, the engine's progress lines, to the case's log):
    (rc, JSON report or None)."""
    log('irisops-backup %s' % ' '.join(args))
    t0 = time.time()
    proc = subprocess.run(['irisops-backup', '--config', config] + list(args), stdout=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, check=False)
    log('irisops-backup %s: rc %s in %.1f s' % (args[0], proc.returncode, time.time() - t0))
    rep = parse_report(proc.stdout)
    if rep is None:
        log('no JSON report; stdout %r' % proc.stdout[-1500:])
    return proc.returncode, rep


def emu_module(name):
    if '/opt/irisemu' not in sys.path:
        sys.path.insert(0, '/opt/irisemu')
    import importlib
    return importlib.import_module('irisemu.%s' % name)


def last_gen_record(path):
    """(generation, offset) of the last ``IRISEMU("gen")`` SET in a journal file (the emulator's own reader)."""
    recs = [r for r in emu_module('journal').read_records(path) if r['type'] == 'SET' and r.get('sub') == 'gen']
    if not recs:
        return None, None
    return int(recs[-1]['value']), recs[-1]['offset']


def instance_generation(name):
    rc, out = emu_call('irisemu-load', [name, '--status'])
    m = re.search(r'generation=(\d+)', out)
    return int(m.group(1)) if m else None


def dbcheck_generation(paths, instance):
    """irisemu-dbcheck of paths: (rc, generation of ``instance`` or None, output)."""
    rc, out = emu_call('irisemu-dbcheck', list(paths))
    m = re.search(r'consistent: instance %s generation (\d+)' % re.escape(instance), out)
    return rc, (int(m.group(1)) if m else None), out.strip()


def journal_switch(name):
    """``Do ^JRNSWTCH`` in a session of the instance (as its owner): the current journal file is completed."""
    rc, out = sh(['runuser', '-u', 'irisowner', '--', 'iris', 'session', name, '-U', '%SYS'],
                 data='Do ^JRNSWTCH\nHalt\n', timeout=120)
    if rc != 0 or 'To:' not in out:
        raise RuntimeError('journal switch of %s failed (rc %s): %s' % (name, rc, out[-400:]))
    return out.strip().splitlines()[-1]


def journal_files(inst):
    key = emu_module('journal').name_key
    return sorted(glob.glob(os.path.join(inst['jrndir'], '[0-9]' * 8 + '.*')), key=key)


def ensure_drill_instance():
    if not os.path.exists('/usr/local/etc/irisemu/%s.json' % IRISD['name']):
        if not os.path.isdir(IRISD['dbdir']):
            os.makedirs(IRISD['dbdir'], 0o755)
        shutil.chown(IRISD['dbdir'], 'irisowner')
        rc, out = sh([sys.executable, '/opt/irisemu-src/install.py', '--flavour', 'iris', '--instance',
                      IRISD['name'], '--dir', IRISD['dir'], '--owner', 'irisowner', '--databases', 'USER',
                      '--database-dir', IRISD['dbdir'], '--load', 'off'], timeout=300)
        if rc != 0:
            raise RuntimeError('installing the drill instance failed: %s' % out[-800:])
        log('drill instance %s installed in %s (down; the drill starts and stops it)' % (IRISD['name'], IRISD['dir']))


def drill_running():
    return is_running(IRISD) if os.path.exists('/usr/local/etc/irisemu/%s.json' % IRISD['name']) else False


def drill_workdirs(instance='IRISA', root=DRILL_ROOT):
    return glob.glob(os.path.join(root, 'drill-%s-*' % instance))


def tree_sums(dirs):
    """path -> sha256 of every regular file (and -> 'dir'/'link:...') under dirs, the restore's own entries (names
    with .irisops-: staging, chain, kept-aside directories) left out."""
    import hashlib
    out = {}
    for top in dirs:
        for dirpath, dirnames, names in os.walk(top):
            dirnames[:] = [d for d in dirnames if '.irisops-' not in d]
            out[dirpath] = 'dir'
            for n in names:
                if '.irisops-' in n:
                    continue
                p = os.path.join(dirpath, n)
                if os.path.islink(p):
                    out[p] = 'link:' + os.readlink(p)
                    continue
                h = hashlib.sha256()
                with open(p, 'rb') as f:
                    for chunk in iter(lambda: f.read(1 << 20), b''):
                        h.update(chunk)
                out[p] = h.hexdigest()
    return out


def own_leftovers(dirs):
    """The restore's own entries (names with .irisops-: staging, chain, kept-aside directories) in dirs, their
    subdirectories and the mount points of the rig's file systems."""
    found = []
    for top in list(dirs) + ['/iris/sys', '/iris/dba', '/iris/dbb', '/iris/jrn']:
        for dirpath, dirnames, names in os.walk(top):
            found += [os.path.join(dirpath, n) for n in dirnames + names if '.irisops-' in n]
            dirnames[:] = [d for d in dirnames if '.irisops-' not in d and dirpath.count('/') < 4]
    return sorted(set(found))


IRISB_DIRS = ['/iris/sys/irisb', '/iris/dbb', '/iris/jrn/irisb']


def restore_leftovers_reset(done):
    """reset(): an interrupted restore of IRISB rolled back, a removed journal file or a corrupted pack put back, a
    drill instance stopped, drill directories removed."""
    if os.path.exists(os.path.join(RESTORE_STATE, 'IRISB.json')):
        rc, _out = sh(['irisops-backup', '--config', BASE_CONFIG, 'restore', '--instance', 'IRISB', '--confirm',
                       'IRISB', '--recover-only'], timeout=900)
        done.append('recovered an interrupted restore of IRISB (rc %s)' % rc)
    if os.path.isdir(GAP_ASIDE):
        for f in glob.glob(os.path.join(GAP_ASIDE, '*', '*')):
            dst = os.path.join('/iris/jrn', os.path.basename(os.path.dirname(f)), os.path.basename(f))
            if not os.path.exists(dst):
                shutil.move(f, dst)
                done.append('put back journal file %s' % dst)
        shutil.rmtree(GAP_ASIDE, ignore_errors=True)
    if os.path.exists(PACK_MARK):
        done.append(put_back_pack())
    if drill_running():
        sh(['iris', 'stop', IRISD['name'], 'quietly'])
        done.append('stopped %s' % IRISD['name'])
    for d in glob.glob(os.path.join(DRILL_ROOT, 'drill-*')) + glob.glob('/iris/sys/irisa/drill'):
        shutil.rmtree(d, ignore_errors=True)
        done.append('removed %s' % d)
    if os.path.isdir(DRILL_ROOT):
        os.rmdir(DRILL_ROOT)         # the engine makes it (with the mode it needs)


def put_back_pack():
    """The pack the drill-negatives case overwrote, back from its copy on the repository host."""
    rc, out = sh(['ssh', '-i', KEY, '-o', 'UserKnownHostsFile=%s' % KNOWN_HOSTS, '-o', 'BatchMode=yes',
                  'root@%s' % REPO_HOST, 'set -e; p=$(cat %s/path); cp -p %s/pack "$p"; rm -rf %s; echo "$p"'
                  % (PACK_ASIDE, PACK_ASIDE, PACK_ASIDE)], timeout=60)
    if rc == 0:
        os.unlink(PACK_MARK)
    return 'put back the overwritten pack %s (rc %s)' % (out.strip()[-200:], rc)


def watch_restored_generation(proc, inst_name, t_limit=900):
    """While a drill (proc) runs: when the drill instance logs the end of its journal restore (the restored
    databases are rolled forward; the integrity check and the clean-up come next), stop the drill process
    (SIGSTOP: the clean-up cannot start), run irisemu-dbcheck on its restored files, continue it (SIGCONT).
    Returns dict(rc, generation, output, workdir, paused_s) or None when the journal restore was not seen."""
    msgs = os.path.join(IRISD['dir'], 'mgr', 'messages.log')
    try:
        start = os.path.getsize(msgs)
    except OSError:
        start = 0
    deadline = time.time() + t_limit
    while proc.poll() is None and time.time() < deadline:
        try:
            with open(msgs, errors='replace') as f:
                f.seek(start)
                text = f.read()
        except (IOError, OSError):
            text = ''
        if 'Journal restore of ' in text:
            os.kill(proc.pid, signal.SIGSTOP)
            t0 = time.time()
            try:
                work = drill_workdirs(inst_name)
                res = {'workdir': work}
                if work:
                    rc, gen, out = dbcheck_generation([os.path.join(work[0], 'backup')], inst_name)
                    res.update(rc=rc, generation=gen, output=out.splitlines()[:6])
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            res['paused_s'] = round(time.time() - t0, 2)
            return res
        time.sleep(0.05)
    return None


def case_journals_and_drill(c):
    """Issue 15 end to end: journals shipped (switch first) under the write load, then a restore drill of IRISA
    from the newest verified backup plus the shipped journals, into its drill root, through the drill instance."""
    ensure_drill_instance()
    cfg = case_config('journals-and-drill', DRILL_CONFIG)
    set_load(['IRISA', 'IRISB'], (200, 2))       # writing on: journal records after the backup, cycles during it
    time.sleep(3)
    snaps = repo_snapshots()
    backups = sorted([s for s in snaps if s['verified'] and s['run']], key=lambda s: s['time'])
    c.check('a verified backup of the earlier cases is in the repository', backups, [s['short_id'] for s in snaps])
    rc, res = engine(['journals', '--switch', '--json'], cfg)
    res = res or {}
    c.observed['journals'] = res
    a = res.get('IRISA') or {}
    c.check('journals --switch: rc 0, both instances shipped without error',
            rc == 0 and all(not (res.get(n) or {}).get('error') and (res.get(n) or {}).get('shipped')
                            for n in ('IRISA', 'IRISB')), (rc, res))
    files = journal_files(INSTANCES[0])
    current = state_of(INSTANCES[0]).get('journal', {}).get('current')
    c.check('the newest shipped file is the one completed by the switch (the file before the current one)',
            a.get('newest') and current and files.index(current) >= 1 and files[files.index(current) - 1] == a['newest']
            if current in files else False, (a.get('newest'), current, files[-3:]))
    want_gen, want_off = last_gen_record(a['newest']) if a.get('newest') else (None, None)
    c.observed['newest_shipped'] = {'file': a.get('newest'), 'last_generation': want_gen, 'offset': want_off}
    c.check('the newest shipped file holds write cycles (a last IRISEMU("gen") record)', want_gen is not None,
            a.get('newest'))
    mine = [s for s in repo_snapshots() if 'irisops-journal' in (s.get('tags') or [])
            and 'instance=IRISA' in (s.get('tags') or [])]
    c.check('repository: a journal snapshot of IRISA (tags irisops-journal, instance=IRISA)',
            any(s['id'] == a.get('snapshot') or s['short_id'] == (a.get('snapshot') or '')[:8] for s in mine),
            (a.get('snapshot'), [s['short_id'] for s in mine]))
    prom = open(DRILL_CONFIG['journal_metrics_file']).read() if os.path.exists(
        DRILL_CONFIG['journal_metrics_file']) else ''
    c.check('journal metrics: ship success 1 and a lag for IRISA',
            re.search(r'irisops_journal_ship_success\{[^}]*IRISA[^}]*\} 1', prom)
            and re.search(r'irisops_journal_lag_seconds\{[^}]*IRISA', prom), prom[-600:])
    # the drill: production keeps writing meanwhile
    gen_before = instance_generation('IRISA')
    msgs_before = messages_count(IRISD, 'Journal restore of')
    log('irisops-backup drill --instance IRISA (IRISA at generation %s)' % gen_before)
    t0 = time.time()
    proc = subprocess.Popen(['irisops-backup', '--config', cfg, 'drill', '--instance', 'IRISA', '--json'],
                            stdout=subprocess.PIPE, universal_newlines=True)
    seen_gen = watch_restored_generation(proc, 'IRISA')
    out, _e = proc.communicate(timeout=900)
    log('irisops-backup drill: rc %s in %.1f s' % (proc.returncode, time.time() - t0))
    rep = parse_report(out) or {}
    c.observed['drill'] = dict((k, rep.get(k)) for k in ('status', 'error', 'backup_id', 'backup_run_id',
                                                         'restore_journal_file', 'journal_chain', 'point_reached',
                                                         'integrity', 'journal_restore', 'rto_s', 'removed',
                                                         'recorded', 'warnings', 'drill_instance_started'))
    c.observed['restored_generation'] = seen_gen
    log('drill of IRISA: %s, backup %s (run %s), chain %s, point reached %s, RTO %s s (restore start to databases '
        'checked; includes %s s the rig held the drill to check the restored files)' % (
            rep.get('status'), (rep.get('backup_id') or '-')[:8], rep.get('backup_run_id'),
            ', '.join(rep.get('journal_chain') or []), rep.get('point_reached'), rep.get('rto_s'),
            (seen_gen or {}).get('paused_s')))
    c.check('drill: rc 0, status success', proc.returncode == 0 and rep.get('status') == 'success',
            (proc.returncode, rep.get('status'), rep.get('error')))
    c.check('drill: the newest verified backup was drilled',
            backups and rep.get('backup_id') == backups[-1]['id'], (rep.get('backup_id'), backups[-1:]))
    point = rep.get('point_reached') or {}
    c.check('drill: the point reached is the newest shipped journal file',
            a.get('newest') and os.path.basename(str(point.get('file'))) == os.path.basename(a['newest']),
            (point, a.get('newest')))
    c.check('drill: the journal restore and the integrity check ok',
            (rep.get('journal_restore') or {}).get('ok') and (rep.get('integrity') or {}).get('ok'),
            (rep.get('journal_restore'), rep.get('integrity')))
    c.check('restored databases (irisemu-dbcheck of the drill\'s files, the drill held before its clean-up): '
            'consistent, at the generation of the last record in the newest shipped journal file',
            seen_gen and seen_gen.get('rc') == 0 and want_gen is not None and seen_gen.get('generation') == want_gen,
            'restored %s, newest shipped file ends at generation %s' % (seen_gen, want_gen))
    c.check('drill: an RTO figure (seconds, > 0)', isinstance(rep.get('rto_s'), (int, float)) and rep['rto_s'] > 0,
            rep.get('rto_s'))
    c.check('drill instance: started by the drill, down again', rep.get('drill_instance_started') and
            not drill_running(), (rep.get('drill_instance_started'), drill_running()))
    c.check('drill instance: one journal restore in its messages.log',
            messages_count(IRISD, 'Journal restore of') == msgs_before + 1, messages_count(IRISD, 'Journal restore of'))
    c.check('drill files gone (nothing left under the drill root)', not drill_workdirs('IRISA')
            and rep.get('removed'), (drill_workdirs('IRISA'), rep.get('removed')))
    c.check('drill result recorded in the catalogue (irisops-drill snapshot)', rep.get('recorded') is True,
            rep.get('recorded'))
    prom = open(DRILL_CONFIG['drill_metrics_file']).read() if os.path.exists(DRILL_CONFIG['drill_metrics_file']) else ''
    c.check('drill metrics: last success 1 and the RTO for IRISA',
            re.search(r'irisops_drill_last_success\{[^}]*IRISA[^}]*\} 1', prom)
            and re.search(r'irisops_drill_rto_seconds\{[^}]*IRISA', prom), prom[-600:])
    gen_after = instance_generation('IRISA')
    set_load(['IRISA', 'IRISB'], RIG_LOAD)
    seen = c.look(key='after')
    c.check('production: IRISA and IRISB still running, their generation kept moving during the drill, '
            'IsWDSuspendedExt 3, live databases consistent',
            all(is_running(i) for i in INSTANCES) and gen_before is not None and gen_after is not None
            and gen_after > gen_before and [seen['wd'].get(n) for n in ('IRISA', 'IRISB')] == [3, 3]
            and seen['live_failed'] == 0, (gen_before, gen_after, seen['wd'], seen['live']))
    c.check('production: the drill\'s generation is not production\'s (the restored copy stopped at the shipped '
            'point while IRISA went on)', want_gen is not None and gen_after is not None and gen_after > want_gen,
            (want_gen, gen_after))


def drill_fault(c, case, fault, msg_expected, rc, rep, seen, extra_lost=0):
    c.record('vmrig_drill', case, fault, 'fail', rc not in (0, None), (rep or {}).get('error') or '',
             msg_expected, seen['frozen'], seen['snapshots'], seen['live_failed'] + extra_lost,
             (rep or {}).get('status'), point_reached=(rep or {}).get('point_reached'))


def find_pack_of(snap_id, suffix):
    """(pack id, blob id, path, offset, length) of the first data blob of the file whose path in snapshot snap_id ends
    with suffix (restic ls, restic cat of the trees down to it, the repository's index)."""
    rc, out = restic(['ls', snap_id])
    paths = [ln.strip() for ln in out.splitlines() if ln.strip().endswith(suffix) and ln.strip().startswith('/')]
    if rc != 0 or not paths:
        raise RuntimeError('no file ending %s in snapshot %s (rc %s): %s' % (suffix, snap_id[:8], rc, out[-300:]))
    rc, out = restic(['cat', 'snapshot', snap_id])
    if rc != 0:
        raise RuntimeError('restic cat snapshot: %s' % out[-300:])
    tree = json.loads(out[out.index('{'):])['tree']
    blob = None
    for part in paths[0].strip('/').split('/'):
        rc, out = restic(['cat', 'blob', tree])
        nodes = json.loads(out[out.index('{'):])['nodes'] if rc == 0 else []
        node = next((n for n in nodes if n['name'] == part), None)
        if node is None:
            raise RuntimeError('%s of %s not in the snapshot (%s)' % (part, paths[0], [n['name'] for n in nodes]))
        if node['type'] == 'dir':
            tree = node['subtree']
        else:
            blob = node['content'][0]
    rc, out = restic(['list', 'index'])
    for index in out.split():
        rc, text = restic(['cat', 'index', index])
        if rc != 0:
            continue
        for pack in json.loads(text[text.index('{'):]).get('packs') or []:
            for b in pack.get('blobs') or []:
                if b['id'] == blob:
                    return pack['id'], blob, paths[0], b['offset'], b['length']
    raise RuntimeError('blob %s of %s in no index of the repository' % (blob, paths[0]))


def case_drill_negatives(c):
    """What a drill must refuse or report: a damaged pack, a gap in the shipped journal chain, a drill root over a
    running instance.  Each writes a fault record (suite vmrig_drill)."""
    ensure_drill_instance()
    pause_load(['IRISB'])
    cfg = case_config('drill-negatives', DRILL_CONFIG)
    # 1. drill_root inside the running IRISA's installation directory: refused before anything is written
    bad_root = '/iris/sys/irisa/drill'
    cfg_bad = case_config('drill-negatives-root', dict(DRILL_CONFIG, drill_root=bad_root))
    drill_logs = messages_count(IRISD, 'Journal restore of')
    rc, rep = engine(['drill', '--instance', 'IRISA', '--json'], cfg_bad)
    rep = rep or {}
    err = rep.get('error') or ''
    msg = 'overlaps the install directory /iris/sys/irisa of instance IRISA'
    c.check('drill root over IRISA: rc 1, failed, "nothing restored", names the overlap',
            rc == 1 and rep.get('status') == 'failed' and err.startswith('nothing restored') and msg in err,
            (rc, err[:400]))
    written = [p for p in (bad_root,) if os.path.lexists(p)]
    c.check('drill root over IRISA: nothing written (no drill directory, no backup picked, drill instance not '
            'started, no journal restore)', not written and not rep.get('backup_id') and not drill_running()
            and not rep.get('drill_instance_started') and messages_count(IRISD, 'Journal restore of') == drill_logs,
            (written, rep.get('backup_id'), rep.get('drill_instance_started')))
    seen = c.look(key='after-root')
    drill_fault(c, 'drill-root-overlaps-instance', 'drill_root %s inside the running IRISA\'s installation directory'
                % bad_root, msg, rc, rep, seen, len(written))
    # 2. a journal file missing from the shipped chain: the drill stops at the gap, claims nothing after it
    resume = ['IRISA']
    set_load(resume, (200, 2))
    names = []
    for _i in range(3):
        time.sleep(1.5)
        names.append(state_of(INSTANCES[0]).get('journal', {}).get('current'))
        journal_switch('IRISA')
    before_gap, gap, after_gap = names
    os.makedirs(os.path.join(GAP_ASIDE, 'irisa'))
    shutil.move(gap, os.path.join(GAP_ASIDE, 'irisa', os.path.basename(gap)))
    log('journal files %s, %s (removed from the host before the shipping), %s' % (before_gap, gap, after_gap))
    rc_s, res = engine(['journals', '--json'], cfg)
    shutil.move(os.path.join(GAP_ASIDE, 'irisa', os.path.basename(gap)), gap)
    shutil.rmtree(GAP_ASIDE)
    shipped = (res or {}).get('IRISA') or {}
    c.check('journals shipped without the removed file (newest %s)' % os.path.basename(after_gap),
            rc_s == 0 and shipped.get('newest') == after_gap, (rc_s, shipped))
    rc, rep = engine(['drill', '--instance', 'IRISA', '--json'], cfg)
    rep = rep or {}
    err = rep.get('error') or ''
    point = rep.get('point_reached') or {}
    c.observed['gap'] = {'files': [before_gap, gap, after_gap], 'chain': rep.get('journal_chain'), 'point': point,
                         'error': err[:600]}
    c.check('gap: rc 1, failed, "the journal restore stopped"', rc == 1 and rep.get('status') == 'failed'
            and 'the journal restore stopped' in err, (rc, err[:500]))
    c.check('gap: the point reached is the last file before the gap (%s), never more' % os.path.basename(before_gap),
            os.path.basename(str(point.get('file'))) == os.path.basename(before_gap)
            and os.path.basename(before_gap) in err and os.path.basename(after_gap) not in str(point),
            (point, err[:500]))
    c.check('gap: drill instance down, drill files gone', not drill_running() and not drill_workdirs('IRISA'),
            (drill_running(), drill_workdirs('IRISA')))
    seen = c.look(key='after-gap')
    drill_fault(c, 'journal-gap', 'journal file %s removed from the shipped chain' % os.path.basename(gap),
                'the journal restore stopped', rc, rep, seen)
    # 3. a damaged pack of the backup being drilled: the drill fails and names the file or the pack
    backups = sorted([s for s in repo_snapshots() if s['verified'] and s['run']], key=lambda s: s['time'])
    if not backups:
        raise RuntimeError('no verified backup in the repository')
    short = backups[-1]['id'][:8]
    pack, blob, dat, offset, length = find_pack_of(backups[-1]['id'], 'dba/user/IRIS.DAT')
    c.observed['corrupted'] = {'backup': short, 'pack': pack, 'blob': blob, 'file': dat, 'offset': offset,
                               'length': length}
    open(PACK_MARK, 'w').close()
    rc_c, out = sh(['ssh', '-i', KEY, '-o', 'UserKnownHostsFile=%s' % KNOWN_HOSTS, '-o', 'BatchMode=yes',
                    'root@%s' % REPO_HOST, 'set -e; p=$(ls /srv/restic/repo/data/%s/%s*); mkdir -p %s; '
                    'cp -p "$p" %s/pack; echo "$p" > %s/path; '
                    'head -c %d /dev/urandom | dd of="$p" bs=%d seek=%d count=1 conv=notrunc iflag=fullblock '
                    'oflag=seek_bytes status=none; echo "$p"; cmp -s "$p" %s/pack && echo UNCHANGED || echo overwritten'
                    % (pack[:2], pack, PACK_ASIDE, PACK_ASIDE, PACK_ASIDE, length, length, offset, PACK_ASIDE)],
                   timeout=60)
    c.check('the bytes of %s\'s first blob (%d at offset %d of pack %s) overwritten with random bytes'
            % (dat, length, offset, pack[:12]),
            rc_c == 0 and out.strip().endswith('overwritten'), out[-300:])
    try:
        rc, rep = engine(['drill', '--instance', 'IRISA', '--json'], cfg)
        running, work = drill_running(), drill_workdirs('IRISA')
    finally:
        log(put_back_pack())
    rep = rep or {}
    err = rep.get('error') or ''
    c.observed['corrupt'] = {'error': err[:800]}
    c.check('damaged pack: rc 1, failed in the restic restore of backup %s' % short,
            rc == 1 and rep.get('status') == 'failed' and 'restic restore of %s failed' % short in err,
            (rc, err[:600]))
    c.check('damaged pack: the message names the damaged file or pack', 'IRIS.DAT' in err or pack[:8] in err,
            err[:800])
    c.check('damaged pack: nothing rolled forward, drill instance down, drill files gone',
            not rep.get('point_reached') and not running and not work, (rep.get('point_reached'), running, work))
    seen = c.look(key='after-corrupt')
    drill_fault(c, 'damaged-pack', 'the blob of %s in pack %s overwritten with random bytes' % (dat, pack[:12]),
                'restic restore of %s failed' % short, rc, rep, seen)
    rc, out = restic(['check'])
    c.check('repository whole again after the pack was put back (restic check)', rc == 0, out[-400:])


def restore_fault(c, case, fault, msg_expected, rc, rep, seen, lost, suite='vmrig_restore'):
    c.record(suite, case, fault, 'fail', rc not in (0, None), (rep or {}).get('error') or '', msg_expected,
             seen['frozen'], seen['snapshots'], seen['live_failed'] + lost, (rep or {}).get('status'))


def iris_control(action, name):
    rc, out = sh(['iris', action, name, 'quietly'], timeout=300)
    return rc, out


def case_real_restore(c):
    """irisops-backup restore of IRISB: refused without the confirmation and while IRISB runs (nothing written);
    then IRISB stopped and restored with --confirm: restored, rolled forward to its last journal file, integrity
    ok, started, its files before the restore kept aside where the report says."""
    insts = INSTANCES
    rc, rep = engine(['restore', '--instance', 'IRISB', '--json'], BASE_CONFIG)
    rep = rep or {}
    msg = 'needs the confirmation IRISB'
    left = own_leftovers(IRISB_DIRS) + glob.glob(os.path.join(RESTORE_STATE, 'IRISB.json'))
    c.check('without --confirm: rc 1, failed, "nothing restored", asks for the confirmation',
            rc == 1 and rep.get('status') == 'failed' and (rep.get('error') or '').startswith('nothing restored')
            and msg in (rep.get('error') or ''), (rc, rep.get('error')))
    c.check('without --confirm: nothing written, IRISB still running', not left and is_running(INSTANCES[1]), left)
    seen = c.look(insts=insts, key='after-no-confirm')
    restore_fault(c, 'refused-without-confirm', 'irisops-backup restore --instance IRISB without --confirm', msg, rc,
                  rep, seen, len(left))
    rc, rep = engine(['restore', '--instance', 'IRISB', '--confirm', 'IRISB', '--json'], BASE_CONFIG)
    rep = rep or {}
    msg = 'instance IRISB is running'
    left = own_leftovers(IRISB_DIRS) + glob.glob(os.path.join(RESTORE_STATE, 'IRISB.json'))
    c.check('IRISB running: rc 1, failed, "nothing restored", says it runs and how to stop it',
            rc == 1 and rep.get('status') == 'failed' and (rep.get('error') or '').startswith('nothing restored')
            and msg in (rep.get('error') or '') and 'iris stop IRISB quietly' in (rep.get('error') or ''),
            (rc, rep.get('error')))
    c.check('IRISB running: nothing written, IRISB still running', not left and is_running(INSTANCES[1]), left)
    seen = c.look(insts=insts, key='after-running')
    restore_fault(c, 'refused-while-running', 'irisops-backup restore --confirm IRISB while IRISB runs', msg, rc, rep,
                  seen, len(left))
    # the real restore
    rc_s, out = iris_control('stop', 'IRISB')
    c.check('IRISB stopped (iris stop)', rc_s == 0 and not is_running(INSTANCES[1]), out[-300:])
    jfiles = journal_files(INSTANCES[1])
    newest = jfiles[-1] if jfiles else None
    want_gen, want_off = last_gen_record(newest) if newest else (None, None)
    c.observed['before'] = {'journal_files': [os.path.basename(f) for f in jfiles[-4:]], 'last_gen': want_gen,
                            'offset': want_off}
    sums = tree_sums(IRISB_DIRS)
    # The emulator's write daemon is its stand-in for application users, and the restored instance's load setting is
    # the backup's (mgr/irisemu/state.json is restored too): an emulated user writing while the journal restore
    # checks its target reads a block in the middle of a cycle ("<DATABASE> ... block N: checksum mismatch"). As an
    # operator keeps users away from an instance being restored, the rig pauses that load as soon as the restore
    # has started the instance (before its journal restore session can start).
    state_file = os.path.join(RESTORE_STATE, 'IRISB.json')
    log('irisops-backup restore --instance IRISB --confirm IRISB (its emulated users paused once it is started)')
    t0 = time.time()
    proc = subprocess.Popen(['irisops-backup', '--config', BASE_CONFIG, 'restore', '--instance', 'IRISB', '--confirm',
                             'IRISB', '--json'], stdout=subprocess.PIPE, universal_newlines=True)
    paused_at = None
    while proc.poll() is None and time.time() < t0 + 1200:
        if paused_at is None and (read_json(state_file) or {}).get('phase') in ('started', 'rollforward') \
                and is_running(INSTANCES[1]):
            emu_call('irisemu-load', ['IRISB', '--pause'])
            paused_at = (read_json(state_file) or {}).get('phase')
        time.sleep(0.05)
    out, _e = proc.communicate()
    rc = proc.returncode
    log('irisops-backup restore: rc %s in %.1f s (emulated users paused in phase %s)'
        % (rc, time.time() - t0, paused_at))
    rep = parse_report(out) or {}
    c.observed['restore'] = dict((k, rep.get(k)) for k in ('status', 'error', 'backup_id', 'backup_run_id',
                                                           'restore_journal_file', 'journal_chain', 'point_reached',
                                                           'integrity', 'journal_restore', 'rto_s', 'aside',
                                                           'warnings', 'report_file', 'steps'))
    log('restore of IRISB: %s, backup %s, point reached %s, RTO %s s' % (
        rep.get('status'), (rep.get('backup_id') or '-')[:8], rep.get('point_reached'), rep.get('rto_s')))
    c.check('restore: rc 0, status success', rc == 0 and rep.get('status') == 'success',
            (rc, rep.get('status'), rep.get('error')))
    point = rep.get('point_reached') or {}
    c.check('restore: rolled forward to IRISB\'s newest journal file (%s)' % os.path.basename(str(newest)),
            newest and os.path.basename(str(point.get('file'))) == os.path.basename(newest)
            and (rep.get('journal_restore') or {}).get('ok'), (point, rep.get('journal_restore')))
    line = [ln for ln in open(os.path.join(INSTANCES[1]['dir'], 'mgr', 'messages.log'), errors='replace')
            if 'Journal restore of' in ln]
    c.check('restored IRISB\'s messages.log: the journal restore completed at the last record of %s (offset %s, '
            'generation %s)' % (os.path.basename(str(newest)), want_off, want_gen),
            line and 'completed' in line[-1] and ('offset %s of' % want_off) in line[-1]
            and os.path.basename(str(newest)) in line[-1].split('offset')[-1], line[-1:])
    c.check('restore: integrity check ok', (rep.get('integrity') or {}).get('ok'), rep.get('integrity'))
    c.check('restore: IRISB running on the restored files', is_running(INSTANCES[1]), state_of(INSTANCES[1]))
    aside = rep.get('aside') or []
    moved = {}
    for a in aside:
        for p, h in sums.items():
            if p == a['dir'] or p.startswith(a['dir'].rstrip('/') + '/'):
                moved[os.path.normpath(os.path.join(a['aside'], os.path.relpath(p, a['dir'])))] = h
    now = tree_sums([a['aside'] for a in aside if os.path.isdir(a['aside'])])
    adirs = [a['dir'] for a in aside]
    c.check('production files kept aside where the report says: IRISB\'s system (mgr), database and journal '
            'directories, each aside copy there',
            any(d == '/iris/sys/irisb' or d.startswith('/iris/sys/irisb/') for d in adirs) and '/iris/jrn/irisb' in adirs
            and any(d.startswith('/iris/dbb/') for d in adirs) and all(os.path.isdir(a['aside']) for a in aside), aside)
    diff = [p for p in moved if now.get(p) != moved[p]]
    c.check('the kept-aside files are production\'s files as they were before the restore (sha256 of %d files)'
            % len(moved), moved and not diff, diff[:10])
    c.check('restore: an RTO figure and the report file', isinstance(rep.get('rto_s'), (int, float))
            and os.path.exists(rep.get('report_file') or '/nonexistent'), (rep.get('rto_s'), rep.get('report_file')))
    c.check('restore: no state file left', not os.path.exists(os.path.join(RESTORE_STATE, 'IRISB.json')),
            RESTORE_STATE)
    # the operator deletes the kept-aside files once the instance is checked (the rig's next cases use IRISB)
    for a in aside:
        shutil.rmtree(a['aside'], ignore_errors=True)
    seen = c.look(key='after')
    c.check('after the restore: IRISA and IRISB running, live databases consistent, nothing frozen',
            all(is_running(i) for i in INSTANCES) and seen['live_failed'] == 0 and not seen['frozen'],
            (seen['live'], seen['frozen']))


def case_restore_killed(c):
    """SIGKILL of a real restore of IRISB after its swap started; the next run (--recover-only) rolls back:
    production files as before (sha256), nothing of the restore left, the instance starts."""
    rc_s, out = iris_control('stop', 'IRISB')
    c.check('IRISB stopped (iris stop)', rc_s == 0 and not is_running(INSTANCES[1]), out[-300:])
    sums = tree_sums(IRISB_DIRS)
    state_file = os.path.join(RESTORE_STATE, 'IRISB.json')
    log('irisops-backup restore --instance IRISB --confirm IRISB (to be killed after its swap started)')
    proc = subprocess.Popen(['irisops-backup', '--config', BASE_CONFIG, 'restore', '--instance', 'IRISB', '--confirm',
                             'IRISB', '--json'], stdout=subprocess.PIPE, universal_newlines=True)
    phase, ops, deadline = None, None, time.time() + 900
    while proc.poll() is None and time.time() < deadline:
        st = read_json(state_file) or {}
        if st.get('phase') in ('swap', 'started', 'rollforward', 'integrity'):
            os.kill(proc.pid, signal.SIGKILL)
            phase, ops = st.get('phase'), len(st.get('ops') or [])
            break
        time.sleep(0.02)
    proc.communicate()
    rc = proc.returncode
    st = read_json(state_file) or {}
    c.observed['killed'] = {'rc': rc, 'phase_seen': phase, 'phase_in_state_file': st.get('phase'), 'ops': ops}
    log('restore killed (rc %s) in phase %s (state file: %s)' % (rc, phase, st.get('phase')))
    c.check('the restore was killed (SIGKILL) after its swap started', rc == -signal.SIGKILL and phase is not None,
            (rc, phase))
    changed = tree_sums(IRISB_DIRS) != sums
    c.observed['production_changed_by_the_kill'] = changed
    c.check('the killed restore left its state file', st.get('instance') == 'IRISB', st)
    rc2, rep = engine(['restore', '--instance', 'IRISB', '--confirm', 'IRISB', '--recover-only', '--json'],
                      BASE_CONFIG)
    rep = rep or {}
    rec = rep.get('recovered') or {}
    c.observed['recovered'] = rec
    c.check('--recover-only: rc 0, the interrupted restore rolled back', rc2 == 0 and rep.get('status') == 'success'
            and rec.get('action') == 'rolled back', (rc2, rep.get('status'), rep.get('error'), rec))
    after = tree_sums(IRISB_DIRS)
    diff = sorted(set(p for p in set(sums) | set(after) if sums.get(p) != after.get(p)))
    c.check('production files of IRISB exactly as before the restore (sha256 of %d files)' % len(sums), not diff,
            diff[:10])
    left = own_leftovers(IRISB_DIRS) + glob.glob(state_file)
    c.check('nothing of the restore left (staging, chain, aside directories, state file)', not left, left)
    c.check('IRISB down after the rollback (as before the restore)', not is_running(INSTANCES[1]), state_of(INSTANCES[1]))
    rc3, out = iris_control('start', 'IRISB')
    seen = c.look(key='after')
    c.check('IRISB starts on its files, live databases consistent', rc3 == 0 and is_running(INSTANCES[1])
            and seen['live_failed'] == 0, (out[-300:], seen['live']))
    lost = len(diff) + len(left) + (0 if rc3 == 0 and is_running(INSTANCES[1]) else 1)
    c.record('vmrig_signals', 'SIGKILL-restore-swap', 'SIGKILL of irisops-backup restore of IRISB after its swap '
             'started (phase %s); then restore --recover-only' % phase, 'fail', rc != 0,
             'killed by SIGKILL in phase %s; --recover-only: %s' % (phase, rec.get('text') or rep.get('error')),
             'rolled back the interrupted restore', seen['frozen'], seen['snapshots'], seen['live_failed'] + lost,
             'killed')


def case_final_live(c):
    """Old "After all cases": the live databases of the three instances are consistent."""
    insts = INSTANCES + ([IRISC] if os.path.exists('/usr/local/etc/irisemu/IRISC.json') else [])
    seen = c.look(insts=insts, key='after')
    c.check('every live database is consistent (%s)' % ', '.join(i['name'] for i in insts), seen['live_failed'] == 0,
            seen['live'])


def case_lvm_module(c):
    pause_load(['IRISA', 'IRISB'])   # nothing here depends on the write load: spare the VM's CPU
    import lvm_module
    lvm_module.run_checks(c)


CASES = [
    ('lvm-module', case_lvm_module),
    ('full-backup', case_full_backup),
    ('restore', case_restore),
    ('second-run-and-lock', case_second_run_and_lock),
    ('list', case_list),
    ('prune-floor', case_prune_floor),
    ('node-exporter', case_node_exporter),
    ('torn-without-freeze', case_torn),
    ('staggered', case_staggered),
    ('thin-volume', case_thin_volume),
    ('freeze-lock-held', case_freeze_lock),
    ('snapshot-overflow-during-copy', case_overflow),
    ('mount-fails', case_mount_fails),
    ('repository-full', case_repository_full),
    ('vg-full-after-freeze', case_vg_full),
    ('instance-down-during-freeze', case_instance_down),
    ('freeze-fails-second-of-three', case_freeze_fails),
    ('thaw-hangs-stat-fallback', case_thaw_hangs),
    ('run-as-missing-user', case_run_as_missing),
    ('wrong-repository-password', case_wrong_password),
    ('sshd-host-down-at-start', case_sshd_down),
    ('repository-unreachable-mid-copy', case_repo_unreachable),
    ('killed-during-copy', case_killed_during_copy),
    ('sigkill-during-lvcreate', case_sigkill_in_lvcreate),
    ('journals-and-drill', case_journals_and_drill),
    ('drill-negatives', case_drill_negatives),
    ('real-restore', case_real_restore),
    ('restore-killed', case_restore_killed),
    ('final-live-check', case_final_live),
]


def main(argv):
    if not os.path.isdir('/run/irisops-vmrig'):
        os.makedirs('/run/irisops-vmrig')
    sys.path.insert(0, RIG)
    if argv[:1] == ['write-config']:
        write_json(argv[1], BASE)
        return 0
    if argv[:1] == ['reset']:
        reset()
        return 0
    if argv[:1] == ['golden-repository']:
        return golden_repository()
    if argv[:1] == ['list']:
        print(' '.join(n for n, _f in CASES))
        return 0
    if argv[:1] == ['hold-freeze-lock']:
        hold_freeze_lock(argv[1])
        return 0
    if argv[:1] == ['case'] and len(argv) == 2:
        funcs = dict(CASES)
        if argv[1] not in funcs:
            sys.stderr.write('rig.py: unknown case %s (known: %s)\n' % (argv[1], ' '.join(funcs)))
            return 2
        c = Case(argv[1])
        error = None
        try:
            c.observed['reset'] = reset()
            funcs[argv[1]](c)
        except Exception as exc:  # pylint: disable=broad-except
            import traceback
            error = '%s: %s\n%s' % (type(exc).__name__, exc, traceback.format_exc()[-2500:])
            log(error)
        sys.stdout.write('RIG-RESULT %s\n' % json.dumps(c.result(error), sort_keys=True, default=str))
        sys.stdout.flush()
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
