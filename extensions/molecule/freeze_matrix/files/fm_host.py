# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""TEST-ONLY row runner of the freeze matrix, inside one test container (freeze_matrix.py copies it to
/usr/local/lib/irisops-fm/fm_host.py and drives it through docker exec).  Standard library only.

    python3 fm_host.py exec '<row spec JSON>'      reset, run the row's actions, observe; prints one JSON line
    python3 fm_host.py prep '<row spec JSON>'      reset and run the actions (no observation): the controller
                                                   part of an ansible-playbook row starts its play afterwards
    python3 fm_host.py act  '<row spec JSON>'      run more actions of the current row (waits for a phase)
    python3 fm_host.py observe '<row spec JSON>'   observe the current row; prints one JSON line
    python3 fm_host.py reset                       only the reset

The row spec: {"id", "actions": [...], "observe": {...}}.  Actions (key "do"):

    fault    inst, args         irisemu-fault INST ARGS...
    lvm      ctl                write the fake LVM's control file (fm_lvm.py)
    start    name, kind, ...    start a freezer process in the background (kind module: module, args, user;
                                kind hook: argv, user, config); its stdout/stderr go to a file
    run      like start, then wait for it to exit (timeout)
    wait     what (phase|lvcreate|snapshot|frozen_mark|exit|lease|switch_gone|thawed), inst, event, name, timeout
    signal   name, sig          os.kill(pid of process NAME, SIGsig); records the time
    kill_lvcreate               SIGKILL the blocked fake lvcreate
    release  what               let the blocked fake lvcreate / snapshot stand-in go on
    sleep    s
    foreign_thaw inst           ExternalThaw of INST by another process (the instance owner's own session)
    rotate   inst               irisemu-ctl INST rotate-log
    fire_switch inst            start the switch's systemd service now (the timer firing early)
    statw    broken             make `iris|ccontrol stat ... -W` fail (a shim checks /run/irisops-fm/statw-broken)
    clear_faults                irisemu-fault --clear for every instance
    shell    argv, user         run a command (and keep its rc/output in the result)

Values may refer to earlier results: {"$ref": "p1", "key": "lease"} is the ``lease`` of process p1's module JSON.

Observation (what the fault record is built from): after every started process has exited (or ``wait_exit`` s),
the instances are polled (IsWDSuspendedExt as the owner) until none is frozen or until the latest switch seen
during the row is due plus ``slack`` s (``settle`` s when no switch was seen); then the fake LVM's snapshots,
backup history (buhistory.json of each instance, compared with the reset), the switches left armed, the lock owner
record, the run records and ``iris_set_history run_id=...`` of each run record, and the texts (process output,
new lines of the dead-man log, the hook log and the instance logs).
"""

from __future__ import absolute_import, division, print_function

import glob
import hashlib
import json
import os
import pwd
import signal
import subprocess
import sys
import time

__metaclass__ = type

FM = '/run/irisops-fm'
ROW = FM + '/row.json'
PROCS = FM + '/procs'
LVM = FM + '/lvm'
STATW_FLAG = FM + '/statw-broken'
STOP_WAIT = FM + '/stop-wait'
PYLIB = '/opt/irisops-fm/pylib'
HOOK = '/usr/local/lib/irisops/irisops_hook.py'
HOOK_LOG = '/var/log/irisops-hook.log'
HOOK_STATE = '/var/lib/irisops-hook'
DEADMAN_LOG = '/var/log/irisops-deadman.log'
STATE_DIRS = ['/run/irisops']
INSTANCES = [
    {'name': 'IRIS', 'flavour': 'iris', 'dir': '/usr/irissys', 'owner': 'irisowner', 'log': 'messages.log',
     'session': ['iris', 'session'], 'control': 'iris'},
    {'name': 'CACHE', 'flavour': 'cache', 'dir': '/usr/cachesys', 'owner': 'cacheusr', 'log': 'cconsole.log',
     'session': ['csession'], 'control': 'ccontrol'},
]
BY_NAME = dict((i['name'], i) for i in INSTANCES)
MODULE_PKG = 'ansible_collections.irisops.backup.plugins.modules.'


# ---------------------------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------------------------

def run(argv, timeout=60, data=None, env=None):
    try:
        p = subprocess.run(argv, input=data.encode() if data else None,
                           stdin=None if data else subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired:
        return None, '', 'timed out after %s s' % timeout
    except OSError as exc:
        return 127, '', str(exc)
    return p.returncode, p.stdout.decode('utf-8', 'replace'), p.stderr.decode('utf-8', 'replace')


def read(path, default=''):
    try:
        with open(path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')
    except (IOError, OSError):
        return default


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (IOError, OSError, ValueError):
        return None


def write_json(path, data, mode=0o644):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def tail_from(path, offset):
    text = read(path)
    return text[offset:] if len(text) >= offset else text


def sha(path):
    try:
        with open(path, 'rb') as f:
            return hashlib.sha256(f.read()).hexdigest()
    except (IOError, OSError):
        return None


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:   # a zombie is gone for our purposes
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (IOError, OSError, IndexError):
        return False


def cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return [a.decode('utf-8', 'replace') for a in f.read().split(b'\0') if a]
    except (IOError, OSError):
        return []


def all_pids():
    return [int(d) for d in os.listdir('/proc') if d.isdigit()]


def state_dirs():
    return STATE_DIRS + sorted(glob.glob('/tmp/irisops-*'))


# ---------------------------------------------------------------------------------------------------------------
# the instances
# ---------------------------------------------------------------------------------------------------------------

def frozen(inst):
    """True / False / None (cannot tell) from IsWDSuspendedExt run as the owner."""
    i = BY_NAME[inst]
    rc, out, err = run(['runuser', '-u', i['owner'], '--'] + i['session'] +
                       [i['name'], '-U', '%SYS', '##class(Backup.General).IsWDSuspendedExt()'], timeout=20)
    return True if rc == 5 else False if rc == 3 else None


def frozen_all():
    return dict((i['name'], frozen(i['name'])) for i in INSTANCES)


def suspended_hint(inst):
    """Whether the emulator's state file shows a freeze (no session: for the reset and for polling only)."""
    st = read_json(os.path.join(mgr(inst), 'irisemu', 'state.json')) or {}
    return bool(st.get('freeze'))


def mgr(inst):
    return os.path.join(BY_NAME[inst]['dir'], 'mgr')


def inst_log(inst):
    return os.path.join(mgr(inst), BY_NAME[inst]['log'])


def phase_log(inst):
    return os.path.join(mgr(inst), 'irisemu', 'phase.log')


def buhistory(inst):
    return os.path.join(mgr(inst), 'irisemu', 'buhistory.json')


# ---------------------------------------------------------------------------------------------------------------
# row state (kept between the exec calls of one row)
# ---------------------------------------------------------------------------------------------------------------

class Row(object):
    def __init__(self, data=None):
        self.d = data or {}

    @classmethod
    def load(cls):
        return cls(read_json(ROW) or {})

    def save(self):
        write_json(ROW, self.d)

    def note(self, event, **kw):
        entry = dict(t=round(time.time() - self.d.get('t0', time.time()), 2), event=event)
        entry.update(kw)
        self.d.setdefault('trace', []).append(entry)

    def sample_switches(self, force=False):
        """Remember every switch seen armed during the row (name -> fires_at_epoch) and whether it recorded a
        freeze; the bound of the row is the latest of them.  At most every 0.2 s unless ``force``."""
        seen = self.d.setdefault('switches', {})
        now = time.time()
        if not force and now - getattr(self, '_sampled', 0) < 0.2:
            return seen
        self._sampled = now
        for base in state_dirs():
            for path in glob.glob(os.path.join(base, 'deadman', '*.json')):
                st = read_json(path)
                if st and st.get('fires_at_epoch'):
                    key = '%s@%s' % (st.get('instance'), st.get('token'))
                    if key not in seen:
                        seen[key] = {'instance': st.get('instance'), 'fires_at': st['fires_at_epoch'],
                                     'armed_by': st.get('armed_by'), 'mechanism': st.get('mechanism'),
                                     'seconds': st.get('seconds')}
                    if st.get('frozen_at'):
                        seen[key]['frozen_at'] = st['frozen_at']
        return seen


# ---------------------------------------------------------------------------------------------------------------
# reset
# ---------------------------------------------------------------------------------------------------------------

def stop_leftovers(row_data):
    """Kill what an earlier row started and left running (by recorded pid / our own command lines only)."""
    killed = []
    for name, p in ((row_data or {}).get('procs') or {}).items():
        pid = p.get('pid')
        if pid and alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append('%s(%d)' % (name, pid))
            except OSError:
                pass
    for pid in all_pids():
        cmd = cmdline(pid)
        if len(cmd) >= 2 and cmd[0].endswith('python3') and cmd[1:2] == ['/usr/local/lib/irisops-fm/fm_lvm.py']:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append('fm_lvm(%d)' % pid)
            except OSError:
                pass
        elif any('AnsiballZ_' in a or a.endswith('irisops_hook.py') or a.startswith(MODULE_PKG) for a in cmd) \
                or any('deadman-sleep' == a for a in cmd):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append('%s(%d)' % (os.path.basename(cmd[-1])[:40], pid))
            except OSError:
                pass
    return killed


def reset(spec):
    old = read_json(ROW) or {}
    out = {'killed': stop_leftovers(old)}
    # switches of earlier rows: stop the timers (a fired one is gone already)
    rc, units, _e = run(['systemctl', 'list-units', '--all', '--plain', '--no-legend', 'irisops-deadman-*'])
    for line in units.splitlines():
        unit = line.split()[0] if line.split() else ''
        if unit:
            run(['systemctl', 'stop', unit])
    run(['systemctl', 'reset-failed', 'irisops-deadman-*'])
    os.makedirs(FM, 0o755, exist_ok=True)
    os.chmod(FM, 0o755)
    for path in (STATW_FLAG, STOP_WAIT):
        if os.path.exists(path):
            os.unlink(path)
    out['frozen_at_reset'] = sorted(i['name'] for i in INSTANCES if suspended_hint(i['name']))
    for name in out['frozen_at_reset']:
        run([BY_NAME[name]['control'], 'stat', name, '-W'])
    for i in INSTANCES:
        run(['irisemu-fault', i['name'], '--clear'])
        path = phase_log(i['name'])
        if os.path.exists(path):
            with open(path, 'r+') as f:
                f.truncate(0)
            os.chmod(path, 0o666)   # the emulator's sessions (instance owner) append to it
    run(['rm', '-rf'] + state_dirs() + [HOOK_STATE, LVM, PROCS, FM + '/args', '/tmp/fm-planted',
                                        '/home/irisowner/irisops-hook-state'] + glob.glob(FM + '/hook-*.conf'))
    for d in (LVM, PROCS, FM + '/args'):
        os.makedirs(d, 0o755, exist_ok=True)
        os.chmod(d, 0o755)
    out['still_frozen_after_reset'] = sorted(i['name'] for i in INSTANCES if suspended_hint(i['name']))
    row = Row({'id': spec.get('id'), 't0': time.time(), 'procs': {}, 'switches': {}, 'trace': [],
               'signals': [], 'shell': {}})
    row.d['baseline'] = {
        'deadman_log': size(DEADMAN_LOG), 'hook_log': size(HOOK_LOG),
        'buhistory': dict((i['name'], sha(buhistory(i['name']))) for i in INSTANCES),
        'inst_log': dict((i['name'], [size(inst_log(i['name'])), os.stat(inst_log(i['name'])).st_ino])
                         for i in INSTANCES),
    }
    row.d['reset'] = out
    row.save()
    return row


# ---------------------------------------------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------------------------------------------

def resolve(value, row):
    if isinstance(value, dict):
        if '$ref' in value:
            res = proc_result(row, value['$ref']) or {}
            return res.get(value.get('key')) if value.get('key') else res
        return dict((k, resolve(v, row)) for k, v in value.items())
    if isinstance(value, list):
        return [resolve(v, row) for v in value]
    return value


def proc_argv(act, row):
    user = act.get('user')
    env = ['env', 'PYTHONPATH=%s' % PYLIB, 'LC_ALL=C.UTF-8', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:'
           '/usr/bin:/sbin:/bin']
    if user:
        home = pwd.getpwnam(user).pw_dir
        env += ['HOME=%s' % home, 'USER=%s' % user, 'LOGNAME=%s' % user]
    else:
        env += ['HOME=/root']
    if act['kind'] == 'module':
        args_path = os.path.join(FM, 'args', '%s.json' % act['name'])
        write_json(args_path, {'ANSIBLE_MODULE_ARGS': resolve(act.get('args') or {}, row)})
        argv = env + ['python3', '-m', MODULE_PKG + act['module'], args_path]
    else:   # hook
        argv = ['python3', '-I', '-B', HOOK]
        if act.get('config'):
            conf = os.path.join(FM, 'hook-%s.conf' % act['name'])
            with open(conf, 'w') as f:
                f.write('[irisops-hook]\n' + ''.join('%s = %s\n' % kv for kv in sorted(act['config'].items())))
            os.chmod(conf, 0o644)
            argv += ['--config', conf]
        argv = env + argv + [str(a) for a in resolve(act.get('argv') or [], row)]
    if user:
        argv = ['runuser', '-u', user, '--'] + argv
    return argv


def start(act, row):
    argv = proc_argv(act, row)
    out = os.path.join(PROCS, act['name'] + '.out')
    err = os.path.join(PROCS, act['name'] + '.err')
    with open(out, 'wb') as fo, open(err, 'wb') as fe:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, cwd='/tmp',
                             start_new_session=True, close_fds=True)
    row.d['procs'][act['name']] = {'pid': p.pid, 'argv': argv[-4:], 'started': time.time(), 'kind': act['kind']}
    row.note('start', name=act['name'], pid=p.pid)
    return p


_POPEN = {}


def wait_exit(row, name, timeout):
    p = _POPEN.get(name)
    info = row.d['procs'].get(name) or {}
    deadline = time.time() + timeout
    while time.time() < deadline:
        if p is not None:
            if p.poll() is not None:
                info['rc'] = p.returncode
                break
        elif not alive(info.get('pid') or 0):
            break
        row.sample_switches()
        time.sleep(0.1)
    else:
        info['timed_out'] = True
    info.setdefault('ended', time.time())
    return 'rc' in info or not alive(info.get('pid') or 0)


def proc_result(row, name):
    """The module's JSON result (last JSON line of stdout), or for the hook {'msg': its output}."""
    info = row.d['procs'].get(name) or {}
    text = read(os.path.join(PROCS, name + '.out'))
    err = read(os.path.join(PROCS, name + '.err'))
    if info.get('kind') == 'module':
        for line in reversed(text.strip().splitlines()):
            line = line.strip()
            if line.startswith('{'):
                try:
                    return json.loads(line)
                except ValueError:
                    break
        return {'msg': None, 'no_result': True, 'stdout': text[-400:], 'stderr': err[-400:]}
    return {'msg': (text + err).strip(), 'stderr': err[-400:]}


# ---------------------------------------------------------------------------------------------------------------
# waits
# ---------------------------------------------------------------------------------------------------------------

def phase_seen(inst, ev, since_lines=0):
    lines = [ln.split() for ln in read(phase_log(inst)).splitlines()]
    hits = [ln for ln in lines if len(ln) >= 3 and ln[2] == ev]
    return len(hits) > since_lines


def sshd_pids():
    """pids of the sshd processes of Ansible's connections (one per connection: sshd -i and its session child)."""
    pids = []
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                with open('/proc/%s/comm' % d) as f:
                    if f.read().strip() == 'sshd':
                        pids.append(int(d))
            except OSError:
                pass
    return pids


def lvm_events():
    return [ln.split() for ln in read(os.path.join(LVM, 'events.log')).splitlines()]


def do_wait(act, row):
    what = act['what']
    timeout = float(act.get('timeout', 60))
    deadline = time.time() + timeout
    poll = float(act.get('poll', 0.02))
    mark_mtime = None
    while time.time() < deadline:
        if os.path.exists(STOP_WAIT):
            row.note('wait stopped by the controller', kind=what)
            row.d.setdefault('wait_timeouts', []).append('%s (stopped: the controller ended first)' % what)
            return False
        if what != 'frozen_mark':
            row.sample_switches()
        if what == 'phase' and phase_seen(act['inst'], act['event'], act.get('count', 1) - 1):
            break
        if what == 'lvcreate' and os.path.exists(os.path.join(LVM, 'lvcreate.ready')):
            break
        if what == 'snapshot' and os.path.exists(os.path.join(LVM, 'snapshot.ready')):
            break
        if what == 'frozen_mark':
            # the switch records the freeze right after ExternalFreeze returned (deadman_mark_frozen)
            found = None
            for base in STATE_DIRS:
                path = os.path.join(base, 'deadman', '%s.json' % act['inst'])
                try:
                    m = os.stat(path).st_mtime_ns
                except OSError:
                    continue
                if m != mark_mtime:
                    mark_mtime = m
                    st = read_json(path)
                    if st and st.get('frozen_at'):
                        found = st
            if found:
                break
            time.sleep(0.002)
            continue
        if what == 'exit':
            if wait_exit(row, act['name'], max(0.0, deadline - time.time())):
                break
        if what == 'lease':
            rec = read_json('/run/irisops/freeze.owner.json')
            if rec and rec.get('lease_until'):
                break
        if what == 'switch_gone':
            if not glob.glob('/run/irisops/deadman/%s.json' % act['inst']):
                break
        if what == 'thawed':
            if frozen(act['inst']) is False:
                break
        if what == 'no_sshd':
            # the cut connection's sshd processes have exited: the module's standard output has no reader
            if not sshd_pids():
                break
        time.sleep(poll)
    else:
        row.note('wait timed out', kind=what, act=act)
        row.d.setdefault('wait_timeouts', []).append(what)
        return False
    row.sample_switches(force=True)
    row.note('reached', kind=what, inst=act.get('inst'), phase=act.get('event'))
    return True


# ---------------------------------------------------------------------------------------------------------------
# actions
# ---------------------------------------------------------------------------------------------------------------

def act_one(act, row):
    do = act['do']
    if do == 'fault':
        rc, out, err = run(['irisemu-fault', act['inst']] + [str(a) for a in act['args']])
        row.note('fault', inst=act['inst'], args=act['args'], rc=rc)
    elif do == 'lvm':
        write_json(os.path.join(LVM, 'ctl.json'), act['ctl'])
    elif do == 'start':
        _POPEN[act['name']] = start(act, row)
    elif do == 'run':
        _POPEN[act['name']] = start(act, row)
        wait_exit(row, act['name'], float(act.get('timeout', 120)))
    elif do == 'wait':
        do_wait(act, row)
    elif do == 'signal':
        info = row.d['procs'][act['name']]
        sig = getattr(signal, 'SIG' + act['sig'])
        row.sample_switches(force=True)
        lvc = [e for e in lvm_events() if len(e) > 1 and e[1] == 'start']
        try:
            os.kill(info['pid'], sig)
            ok = True
        except OSError:
            ok = False
        row.d['signals'].append({'name': act['name'], 'sig': act['sig'], 'at': time.time(), 'delivered': ok,
                                 'lvcreate_started_before': len(lvc)})
        row.note('signal', name=act['name'], sig=act['sig'], delivered=ok)
    elif do == 'kill_lvcreate':
        ready = read(os.path.join(LVM, 'lvcreate.ready')).split()
        if ready:
            try:
                os.kill(int(ready[1]), signal.SIGKILL)
            except OSError:
                pass
    elif do == 'release':
        open(os.path.join(LVM, '%s.release' % act['what']), 'w').close()
        row.note('release', kind=act['what'])
    elif do == 'sleep':
        end = time.time() + float(act['s'])
        while time.time() < end:
            row.sample_switches()
            time.sleep(0.1)
    elif do == 'foreign_thaw':
        i = BY_NAME[act['inst']]
        rc, out, err = run(['runuser', '-u', i['owner'], '--'] + i['session'] +
                           [i['name'], '-U', '%SYS', '##class(Backup.General).ExternalThaw()'])
        row.note('foreign thaw', inst=act['inst'], rc=rc)
        row.d['shell']['foreign_thaw'] = {'rc': rc, 'out': (out + err)[-300:]}
    elif do == 'rotate':
        rc, out, err = run(['irisemu-ctl', act['inst'], 'rotate-log'])
        row.note('rotate', inst=act['inst'], rc=rc, out=out.strip())
    elif do == 'fire_switch':
        rc, out, err = run(['systemctl', 'start', 'irisops-deadman-%s.service' % act['inst']], timeout=90)
        row.note('fire switch', inst=act['inst'], rc=rc, err=err.strip()[-200:])
    elif do == 'statw':
        if act.get('broken'):
            open(STATW_FLAG, 'w').close()
            os.chmod(STATW_FLAG, 0o644)
        elif os.path.exists(STATW_FLAG):
            os.unlink(STATW_FLAG)
        row.note('statw', broken=bool(act.get('broken')))
    elif do == 'clear_faults':
        for i in INSTANCES:
            run(['irisemu-fault', i['name'], '--clear'])
        row.note('faults cleared')
    elif do == 'remove_run_snapshots':
        # what the backup does with the snapshots of a valid run once it has copied them
        tag = 'irisops_run_%s' % act['run_id']
        st = read_json(os.path.join(LVM, 'state.json')) or {}
        for snap in st.get('snapshots') or []:
            if tag in snap.get('tags', []):
                run(['lvremove', '--yes', '--force', 'vgfm/%s' % snap['name']])
        row.note('removed the snapshots of run', run_id=act['run_id'])
    elif do == 'shell':
        argv = act['argv']
        if act.get('user'):
            argv = ['runuser', '-u', act['user'], '--'] + argv
        rc, out, err = run(argv)
        row.d['shell'][act.get('name') or 'shell'] = {'rc': rc, 'out': (out + err)[-300:]}
        row.note('shell', argv=act['argv'], rc=rc)
    else:
        raise ValueError('unknown action %r' % do)


def run_actions(spec, row):
    for act in spec.get('actions') or []:
        act_one(act, row)
        row.save()


# ---------------------------------------------------------------------------------------------------------------
# observation
# ---------------------------------------------------------------------------------------------------------------

def freezer_processes():
    """Modules, hooks and engine commands still running.  Under pipelining a module is a bare ``python3`` reading
    its code from stdin, so its wrapper names it: ``/bin/sh -c '/usr/bin/python3 && sleep 0'`` lives until the
    module has ended (a module whose connection was cut still removes its snapshots after its window: the
    observation must wait for it, not only for the freeze lock it has released by then)."""
    out = []
    for pid in all_pids():
        cmd = cmdline(pid)
        if any('AnsiballZ_' in a or a.endswith('irisops_hook.py') or a.startswith(MODULE_PKG) for a in cmd):
            out.append(pid)
        elif cmd[1:2] == ['-c'] and 'python' in cmd[-1] and cmd[-1].rstrip().endswith('&& sleep 0'):
            out.append(pid)
    return out


def lvm_processes():
    return [pid for pid in all_pids() if cmdline(pid)[1:2] == ['/usr/local/lib/irisops-fm/fm_lvm.py']]


def switch_running():
    """Whether a dead-man switch is at work (``_freeze.py deadman-fire``: its thaw, then its clean-up)."""
    return any('deadman-fire' in cmdline(pid) for pid in all_pids())


def owner_running():
    """Whether the process named by the host freeze lock's owner record still runs (a window whose control
    connection was cut removes its snapshots itself, in a process the freezer list cannot name under pipelining)."""
    pid = (read_json('/run/irisops/freeze.owner.json') or {}).get('pid')
    return bool(pid) and os.path.exists('/proc/%d' % int(pid))


def snapshots():
    st = read_json(os.path.join(LVM, 'state.json')) or {}
    return ['vgfm/%s' % s['name'] for s in st.get('snapshots') or []]


def run_records():
    recs = []
    for base in state_dirs():
        for path in sorted(glob.glob(os.path.join(base, 'runs', '*.json'))):
            rec = read_json(path)
            if rec:
                recs.append(rec)
    return recs


def set_history(run_id, user=None):
    act = {'name': 'set_history-%s' % run_id[:40].replace('/', '_'), 'kind': 'module',
           'module': 'iris_set_history', 'user': user,
           'args': {'instances': ['IRIS', 'CACHE'] if not user else ['IRIS'], 'backup_completed': True,
                    'run_id': run_id}}
    row = Row({'procs': {}})
    argv = proc_argv(act, row)
    rc, out, err = run(argv, timeout=120)
    res = {}
    for line in reversed(out.strip().splitlines()):
        if line.strip().startswith('{'):
            try:
                res = json.loads(line)
            except ValueError:
                pass
            break
    return {'run_id': run_id, 'failed': bool(res.get('failed')) or rc != 0, 'msg': res.get('msg') or err[-300:],
            'recorded': res.get('recorded') or []}


def observe(spec, row):
    ob = spec.get('observe') or {}
    t_obs = time.time()
    # 1. the freezer processes (ours, or the ones ansible started) end
    deadline = time.time() + float(ob.get('wait_exit', 60))
    for name in list(row.d['procs']):
        wait_exit(row, name, max(0.1, deadline - time.time()))
    while freezer_processes() and time.time() < deadline:
        row.sample_switches()
        time.sleep(0.1)
    left_running = freezer_processes()
    # 2. a fake lvcreate / snapshot stand-in a killed run left behind finishes by itself (or is killed)
    lvm_deadline = time.time() + float(ob.get('lvm_wait', 15))
    while lvm_processes() and time.time() < lvm_deadline:
        time.sleep(0.1)
    row.sample_switches()
    # 3. every instance thawed, at the latest when the last switch seen in this row is due (+ slack)
    switches = row.sample_switches(force=True)
    bound = max([s['fires_at'] for s in switches.values()] or [0]) or None
    slack = float(ob.get('slack', 15))
    settle = float(ob.get('settle', 6))
    poll_deadline = max((bound + slack) if bound else 0, time.time() + settle)
    thawed_at = {}
    state = {}
    while True:
        hint = dict((i['name'], suspended_hint(i['name'])) for i in INSTANCES)
        now = time.time()
        for n, v in hint.items():
            if not v and n not in thawed_at:
                thawed_at[n] = now
        if not any(hint.values()) or not ob.get('poll', True) or now >= poll_deadline:
            state = frozen_all()          # the verdict: IsWDSuspendedExt as the owner
            # thawed is not the end while a switch is still armed and snapshots are there: a killed window's switch
            # removes its run's snapshots when it fires (after the thaw of the ExternalThaw session left running)
            switch_files = any(glob.glob(os.path.join(b, 'deadman', '*.json')) for b in state_dirs())
            cleanup_due = bool(snapshots()) and (switch_files or switch_running() or owner_running())
            if (all(v is False for v in state.values()) and not cleanup_due) or not ob.get('poll', True) \
                    or now >= poll_deadline:
                break
        row.sample_switches()
        time.sleep(0.25)
    frozen_after = ['%s%s' % (n, '' if v else ' (state unknown)') for n, v in sorted(state.items()) if v is not False]
    # 4. the rest
    sw_left = []
    for base in state_dirs():
        sw_left += [os.path.basename(p)[:-5] for p in glob.glob(os.path.join(base, 'deadman', '*.json'))]
    base = row.d.get('baseline') or {}
    recorded = [i['name'] for i in INSTANCES if sha(buhistory(i['name'])) != (base.get('buhistory') or {}).get(
        i['name'])]
    records = run_records()
    history = []
    if ob.get('set_history', True):
        for rec in records:
            if rec.get('valid') is not True:    # only a valid window may be recorded: every other one is refused
                history.append(set_history(rec['run_id'], user=ob.get('user')))
        if history:
            recorded = [i['name'] for i in INSTANCES if sha(buhistory(i['name'])) != (
                base.get('buhistory') or {}).get(i['name'])]
    texts = {}
    for name in row.d['procs']:
        r = proc_result(row, name)
        texts[name] = r.get('msg') if r.get('msg') is not None else ('(no result: %s)' % (
            (r.get('stderr') or r.get('stdout') or 'killed before it printed anything').strip()[-300:]))
    deadman_new = tail_from(DEADMAN_LOG, base.get('deadman_log', 0))
    hook_new = tail_from(HOOK_LOG, base.get('hook_log', 0))
    inst_lines = {}
    for i in INSTANCES:
        off, ino = (base.get('inst_log') or {}).get(i['name'], [0, None])
        path = inst_log(i['name'])
        text = tail_from(path, off) if os.stat(path).st_ino == ino else read(path)
        keep = [ln for ln in text.splitlines() if 'Backup.General' in ln or 'irisemu' in ln or 'irisstat' in ln
                or 'resumed' in ln.lower()]
        inst_lines[i['name']] = keep[-12:]
    owner = read_json('/run/irisops/freeze.owner.json')
    return {
        'id': row.d.get('id'), 'seconds': round(time.time() - row.d.get('t0', time.time()), 1),
        'observe_seconds': round(time.time() - t_obs, 1),
        'frozen_after': frozen_after, 'snapshots_after': snapshots(), 'recorded': recorded,
        'switches': switches, 'bound': bound,
        'thawed_after_bound_s': dict((n, round(t - bound, 1)) for n, t in thawed_at.items()) if bound else {},
        'switches_left': sorted(sw_left), 'freezers_left_running': left_running, 'owner_record': owner,
        'run_records': [dict((k, r.get(k)) for k in ('run_id', 'caller', 'state', 'valid', 'invalid', 'msg'))
                        for r in records],
        'set_history': history, 'texts': texts, 'deadman_log': deadman_new[-1500:], 'hook_log': hook_new[-3000:],
        'inst_log': inst_lines, 'signals': row.d.get('signals'), 'procs': row.d.get('procs'),
        'shell': row.d.get('shell'), 'lvm_events': [' '.join(e[1:]) for e in lvm_events()][-20:],
        'trace': row.d.get('trace')[-40:], 'wait_timeouts': row.d.get('wait_timeouts') or [],
        'reset': row.d.get('reset'),
    }


FINDMNT = '''#!/bin/sh
# TEST-ONLY stand-in (extensions/molecule/freeze_matrix/files/fm_lvm.py: the same answers as its findmnt, without
# a Python start: findmnt is called once per instance directory)
t=/
while [ $# -gt 0 ]; do [ "$1" = --target ] && { t=$2; shift; }; shift; done
case "$t" in
  /usr/irissys|/usr/irissys/*) echo 'SOURCE="/dev/mapper/vgfm-iris" TARGET="/usr/irissys" FSTYPE="ext4" MAJ:MIN="253:1"' ;;
  /usr/cachesys|/usr/cachesys/*) echo 'SOURCE="/dev/mapper/vgfm-cache" TARGET="/usr/cachesys" FSTYPE="ext4" MAJ:MIN="253:2"' ;;
  *) echo 'SOURCE="/dev/mapper/vgfm-root" TARGET="/" FSTYPE="ext4" MAJ:MIN="253:0"' ;;
esac
'''
LVM_WRAPPER = '''#!/bin/sh
# TEST-ONLY stand-in (extensions/molecule/freeze_matrix/files/fm_lvm.py)
exec /usr/bin/python3 %s/fm_lvm.py %s "$@"
'''
STAT_SHIM = '''#!/bin/sh
# TEST-ONLY shim (freeze matrix): `stat ... -W` fails while %s exists
if [ -e %s ] && [ "$1" = stat ]; then
  case " $* " in *" -W "*) echo "irisops-fm: stat -W made to fail by the test" >&2; exit 1 ;; esac
fi
exec /usr/bin/%s "$@"
'''
HOOK_WRAPPER = '''#!/bin/sh
exec /usr/bin/python3 -I -B /usr/local/lib/irisops/irisops_hook.py "$@"
'''


def write_exec(path, text):
    with open(path, 'w') as f:
        f.write(text)
    os.chmod(path, 0o755)


def install():
    """The test commands (fake LVM, findmnt, the stat -W shim, irisops-hook), file ownership, the instances up
    and a lighter write-daemon load."""
    here = os.path.dirname(os.path.abspath(__file__))
    write_exec('/usr/local/sbin/findmnt', FINDMNT)
    for c in ('lvs', 'vgs', 'lvcreate', 'lvremove', 'fm-snapshot'):
        write_exec('/usr/local/sbin/' + c, LVM_WRAPPER % (here, c))
    for c in ('iris', 'ccontrol'):
        write_exec('/usr/local/bin/' + c, STAT_SHIM % (STATW_FLAG, STATW_FLAG, c))
    write_exec('/usr/local/sbin/irisops-hook', HOOK_WRAPPER)
    run(['chown', '-R', 'root:root', '/usr/local/lib/irisops', here, '/opt/irisops-fm'])
    for d in ('/usr/local/lib/irisops', here):
        os.chmod(d, 0o755)
        for f in glob.glob(os.path.join(d, '*.py')):
            os.chmod(f, 0o644)
    run(['systemctl', 'is-system-running', '--wait'], timeout=120)
    deadline = time.time() + 60
    while time.time() < deadline:
        up = [run([i['control'], 'qlist', i['name']])[1].split('^') for i in INSTANCES]
        if all(len(u) > 3 and u[3].startswith('running') for u in up):
            break
        time.sleep(1)
    # less write-daemon load on a shared 2-core machine (a freeze waits for one cycle at most)
    for i in INSTANCES:
        run(['irisemu-load', i['name'], '--interval-ms', '400'])


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ''
    spec = json.loads(argv[2]) if len(argv) > 2 else {}
    if cmd == 'install':
        install()
        print(json.dumps({'ok': True}))
        return 0
    if cmd == 'reset':
        reset(spec)
        print(json.dumps({'ok': True}))
        return 0
    if cmd in ('exec', 'prep'):
        row = reset(spec)
        run_actions(spec, row)
        row.save()
        if cmd == 'exec':
            print(json.dumps(observe(spec, row), sort_keys=True))
        else:
            print(json.dumps({'ok': True, 'trace': row.d.get('trace')}))
        row.save()
        return 0
    if cmd == 'stop-wait':
        open(STOP_WAIT, 'w').close()
        print(json.dumps({'ok': True}))
        return 0
    if cmd == 'act':
        row = Row.load()
        if os.path.exists(STOP_WAIT):
            os.unlink(STOP_WAIT)
        run_actions(spec, row)
        row.save()
        print(json.dumps({'ok': True, 'wait_timeouts': row.d.get('wait_timeouts') or []}))
        return 0
    if cmd == 'observe':
        row = Row.load()
        res = observe(spec, row)
        row.save()
        print(json.dumps(res, sort_keys=True))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv))
