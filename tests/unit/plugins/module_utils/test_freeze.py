# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the freeze engine (_freeze.py): the state directory, the host lock and its leases, the dead-man
switch (command building, state, firing decisions), and the engine's state machine (window, hold, thaw_held) against
the fake IRIS host of iris_fakes, including the failure paths: a freeze that fails, a rollback thaw that fails, a
write daemon resumed inside the window, a switch that fired, a signal, a snapshot step that runs over or raises."""

from __future__ import absolute_import, division, print_function

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.irisops.backup.plugins.module_utils import _freeze
from ansible_collections.irisops.backup.plugins.module_utils import _iris
from ansible_collections.irisops.backup.tests.unit.plugins.iris_fakes import FakeHost, FakeInstance

__metaclass__ = type

SUSPENDING = '12/07/26-10:00:00:000 (11) 0 [Utility.Event] Backup.General.ExternalFreeze: Suspending system\n'
SUSPENDED = '12/07/26-10:00:01:000 (11) 0 [Utility.Event] Backup.General.ExternalFreeze: System suspended\n'
RESUMED = '12/07/26-10:00:09:000 (12) 0 [Utility.Event] Backup.General.ExternalThaw: System resumed\n'


class Recorder(object):
    def __init__(self, rc=0):
        self.calls = []
        self.rc = rc

    def __call__(self, argv, data=None, timeout=None):
        self.calls.append(list(argv))
        return self.rc, '', 'boom' if self.rc else ''


def _inst(tmp_path, name='IRIS'):
    log = tmp_path / ('%s-messages.log' % name)
    if not log.exists():
        log.write_text('')
    return {'name': name, 'flavour': 'iris', 'manager_user': 'irisowner', 'messages_log': str(log)}


def log_of(logs):
    def log(msg, prio=_freeze.DEADMAN_PRIORITY):
        logs.append((prio, msg))
    return log


# -- state directory ----------------------------------------------------------------------------------------------

def test_secure_dir_creates_0700_and_tightens_our_own(tmp_path):
    d = str(tmp_path / 'state')
    assert _freeze.secure_dir(d) == d and oct(os.stat(d).st_mode & 0o777) == '0o700'
    os.chmod(d, 0o755)
    _freeze.secure_dir(d)
    assert oct(os.stat(d).st_mode & 0o777) == '0o700'


def test_secure_dir_refuses_a_symlink(tmp_path):
    target = tmp_path / 'elsewhere'
    target.mkdir()
    link = tmp_path / 'state'
    link.symlink_to(target)
    with pytest.raises(_freeze.StateDirError) as exc:
        _freeze.secure_dir(str(link))
    assert 'symbolic link' in str(exc.value) and 'Next:' in str(exc.value)


def test_secure_dir_refuses_a_directory_of_another_user(tmp_path):
    d = tmp_path / 'state'
    d.mkdir(mode=0o700)
    with pytest.raises(_freeze.StateDirError) as exc:
        _freeze.secure_dir(str(d), uid=os.geteuid() + 4242)
    assert 'belongs to uid %d' % os.geteuid() in str(exc.value) and 'plant the code' in str(exc.value)


def test_state_dir_of_a_non_root_user(monkeypatch, tmp_path):
    monkeypatch.setattr(os, 'geteuid', lambda: 4242)
    monkeypatch.setenv('XDG_RUNTIME_DIR', str(tmp_path / 'run'))
    assert _freeze.state_dir(create=False) == str(tmp_path / 'run' / 'irisops')
    monkeypatch.delenv('XDG_RUNTIME_DIR')
    assert _freeze.state_dir(create=False) == _freeze.USER_STATE_DIR % 4242


@pytest.mark.parametrize('run_id,ok', [('20261207T010203Z-x-1', True), ('a/b', False), ('..', False), ('', False),
                                       ('x..y', False), ('job:42', True)])
def test_run_ids_that_cannot_be_file_names_are_refused(run_id, ok):
    assert (_freeze.check_run_id(run_id) is None) == ok


# -- host lock ----------------------------------------------------------------------------------------------------

HOLD_LOCK = r'''
import sys, time
sys.path.insert(0, sys.argv[1])
import _freeze
lock = _freeze.FreezeLock('holder-test', run_id='r1', directory=sys.argv[2])
lock.acquire(wait=0, instances=['IRIS'])
print('held', flush=True)
time.sleep(60)
'''


def _lib(tmp_path):
    """The engine files side by side, as on a host (the on-host import path of _freeze/_iris/_run)."""
    lib = tmp_path / 'lib'
    lib.mkdir()
    for name, text in _freeze.engine_sources().items():
        (lib / name).write_text(text)
    return str(lib)


def test_lock_held_by_a_live_process_names_it_and_is_free_once_it_is_killed(tmp_path):
    state = str(tmp_path / 'state')
    _freeze.secure_dir(state)
    proc = subprocess.Popen([sys.executable, '-c', HOLD_LOCK, _lib(tmp_path), state], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b'held'
        with pytest.raises(_freeze.LockBusy) as exc:
            _freeze.FreezeLock('second', directory=state).acquire(wait=0.5)
        msg = str(exc.value)
        assert 'held by holder-test' in msg and 'pid %d' % proc.pid in msg and 'run r1' in msg and 'Next:' in msg
    finally:
        proc.kill()            # SIGKILL: the kernel drops the flock, the record stays behind, stale
        proc.wait()
    lock = _freeze.FreezeLock('third', directory=state).acquire(wait=0.5)
    assert lock.record()['caller'] == 'third'
    lock.release()
    assert lock.record() is None


def test_a_live_lease_refuses_other_tokens_and_expires(tmp_path):
    state = str(tmp_path)
    first = _freeze.FreezeLock('iris_freeze', run_id='r1', directory=state).acquire(instances=['IRIS'])
    first.lease(time.time() + 30, ['IRIS'])
    with pytest.raises(_freeze.LockBusy) as exc:
        _freeze.FreezeLock('iris_lvm_snapshot', directory=state).acquire(wait=0)
    assert 'leased to iris_freeze' in str(exc.value) and 'IRIS' in str(exc.value)
    # the holder of the token gets in, and a forced one takes over (and says whose it was)
    same = _freeze.FreezeLock('iris_thaw', token=first.token, directory=state).acquire(wait=0, write=False)
    assert same.previous['token'] == first.token
    same._unlock()
    forced = _freeze.FreezeLock('iris_thaw', directory=state).acquire(wait=0, force=True, write=False)
    assert forced.taken_over['caller'] == 'iris_freeze'
    forced._unlock()
    # once the lease is over (its switches were due), it no longer blocks anybody
    rec = json.loads((tmp_path / _freeze.OWNER_NAME).read_text())
    rec['lease_until'] = time.time() - 1
    (tmp_path / _freeze.OWNER_NAME).write_text(json.dumps(rec))
    _freeze.FreezeLock('next', directory=state).acquire(wait=0).release()


# -- dead-man switch ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('eft,expected', [(None, 300), (600, 300), (300, 240), (121, 61), (120, 60), (30, 15), (1, 1)])
def test_default_timeout(eft, expected):
    assert _freeze.default_deadman_timeout(eft) == expected


def test_unit_and_state_names():
    assert _freeze.deadman_unit('IRIS') == 'irisops-deadman-IRIS'
    assert _freeze.deadman_unit('A B/../x') == 'irisops-deadman-A_B____x'
    assert _freeze.deadman_state_path('IRIS', '/d') == '/d/IRIS.json'


def test_systemd_and_sleeper_argv():
    argv = _freeze.build_deadman_systemd_argv('IRIS', 15, '/usr/bin/python3', '/s/lib/_freeze.py', '/d/IRIS.json',
                                              'tok', systemd_run='/usr/bin/systemd-run')
    assert argv[:4] == ['/usr/bin/systemd-run', '--unit', 'irisops-deadman-IRIS', '--on-active=15s']
    assert argv[-6:] == ['/usr/bin/python3', '-I', '/s/lib/_freeze.py', 'deadman-fire', '/d/IRIS.json', 'tok']
    sleeper = _freeze.build_deadman_sleeper_argv('py', 's', 'st', 'tok', 9.7)
    assert sleeper == ['py', '-I', 's', 'deadman-sleep', 'st', 'tok', '9']


def test_engine_sources_are_the_files_and_text():
    sources = _freeze.engine_sources()
    assert sorted(sources) == ['_freeze.py', '_iris.py', '_lvm.py', '_run.py']
    assert all(isinstance(t, str) for t in sources.values())   # the collection loader gives bytes: decoded
    with open(_freeze.__file__.replace('.pyc', '.py')) as f:
        assert sources['_freeze.py'] == f.read()


def test_arm_systemd_writes_state_and_the_engine_copy(tmp_path):
    rec = Recorder()
    res = _freeze.deadman_arm(_inst(tmp_path), 15, runner=rec, base=str(tmp_path), mechanism='systemd', python='py',
                              run_id='r1', lease_token='lt')
    assert res['armed'] and not res['failed'], res
    assert res['mechanism'] == 'systemd' and res['fires_at'].endswith('Z')
    state = json.loads((tmp_path / 'deadman' / 'IRIS.json').read_text())
    assert state['seconds'] == 15 and state['run_as'] == 'irisowner' and state['run_id'] == 'r1'
    assert state['lease_token'] == 'lt' and state['log_position']['offset'] == 0
    run = [c for c in rec.calls if c[0].endswith('systemd-run')][0]
    assert run[-1] == state['token'] and run[-3] == 'deadman-fire' and run[-4] == str(tmp_path / 'lib' / '_freeze.py')
    assert (tmp_path / 'lib' / '_iris.py').read_text() == _freeze.engine_sources()['_iris.py']
    assert oct(os.stat(str(tmp_path / 'deadman' / 'IRIS.json')).st_mode & 0o777) == '0o600'
    assert oct(os.stat(str(tmp_path / 'lib')).st_mode & 0o777) == '0o700'
    assert _freeze.deadman_status('IRIS', str(tmp_path / 'deadman'))['armed'] is True


def test_arm_refuses_a_planted_lib_directory(tmp_path):
    (tmp_path / 'elsewhere').mkdir()
    (tmp_path / 'lib').symlink_to(tmp_path / 'elsewhere')
    res = _freeze.deadman_arm(_inst(tmp_path), 15, runner=Recorder(), base=str(tmp_path), mechanism='systemd')
    assert res['failed'] and 'symbolic link' in res['msg'] and not (tmp_path / 'elsewhere' / '_freeze.py').exists()


def test_arm_systemd_failure_leaves_no_state(tmp_path):
    res = _freeze.deadman_arm(_inst(tmp_path), 15, runner=Recorder(rc=1), base=str(tmp_path), mechanism='systemd')
    assert res['failed'] and not res['armed']
    assert 'IRIS' in res['msg'] and 'systemd-run' in res['msg']
    assert not (tmp_path / 'deadman' / 'IRIS.json').exists()


def test_rearm_replaces_token(tmp_path):
    rec = Recorder()
    _freeze.deadman_arm(_inst(tmp_path), 15, runner=rec, base=str(tmp_path), mechanism='systemd')
    first = json.loads((tmp_path / 'deadman' / 'IRIS.json').read_text())['token']
    _freeze.deadman_arm(_inst(tmp_path), 15, runner=rec, base=str(tmp_path), mechanism='systemd')
    second = json.loads((tmp_path / 'deadman' / 'IRIS.json').read_text())['token']
    assert first != second
    # the old timer's command line carries the old token: it now does nothing
    assert _freeze.deadman_fire(str(tmp_path / 'deadman' / 'IRIS.json'), first,
                                discover=lambda: pytest.fail('no discovery')) == 'disarmed'


def test_process_mechanism_arm_and_disarm(tmp_path):
    res = _freeze.deadman_arm(_inst(tmp_path), 3600, runner=Recorder(), base=str(tmp_path), mechanism='process',
                              python=sys.executable)
    assert res['armed'], res
    pid = res['pid']
    assert os.path.exists('/proc/%d' % pid)
    assert os.getsid(pid) == pid  # its own session: not tied to the freezer's process group
    d = _freeze.deadman_disarm('IRIS', runner=Recorder(), directory=str(tmp_path / 'deadman'))
    assert d['was_armed'] and d['disarmed']
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except OSError:
            pass
        if not os.path.exists('/proc/%d' % pid):
            break
        time.sleep(0.1)
    assert not os.path.exists('/proc/%d' % pid)
    again = _freeze.deadman_disarm('IRIS', runner=Recorder(), directory=str(tmp_path / 'deadman'))
    assert again == {'was_armed': False, 'disarmed': False, 'mechanism': None}


def test_the_copied_engine_runs_standalone(tmp_path):
    _freeze.deadman_arm(_inst(tmp_path), 15, runner=Recorder(), base=str(tmp_path), mechanism='systemd')
    out = subprocess.run([sys.executable, '-I', str(tmp_path / 'lib' / '_freeze.py'), 'deadman-fire',
                          str(tmp_path / 'deadman' / 'IRIS.json'), 'wrong-token'],
                         stdout=subprocess.PIPE, check=True, cwd='/')
    assert out.stdout.strip() == b'disarmed'
    assert (tmp_path / 'deadman' / 'IRIS.json').exists()


def _armed(tmp_path, frozen=True, log_text=''):
    """A switch armed for IRIS on the fake host; the instance log holds ``log_text`` at arm time."""
    host = FakeHost([FakeInstance('IRIS', manager_user='root')])
    host.instances['IRIS'].frozen = frozen
    inst = _inst(tmp_path)
    with open(inst['messages_log'], 'w') as f:
        f.write(log_text)
    _freeze.deadman_arm(inst, 15, runner=Recorder(), base=str(tmp_path), mechanism='systemd')
    token = json.loads((tmp_path / 'deadman' / 'IRIS.json').read_text())['token']

    def discover():
        found, errors = _iris.discover_instances(runner=host, which=host.which, read_file=host.read_file)
        for i in found:
            i['messages_log'] = inst['messages_log']
        return found, errors
    return host, inst, token, discover


def _fire(tmp_path, token, host, discover, logs):
    """What the timer of the switch armed in tmp_path runs (deadman-fire STATE TOKEN), against the fake host."""
    return _freeze.deadman_fire(str(tmp_path / 'deadman' / 'IRIS.json'), token, runner=host, discover=discover,
                                log=log_of(logs))


def _append(inst, text):
    with open(inst['messages_log'], 'a') as f:
        f.write(text)


def test_fire_thaws_the_freeze_it_was_armed_for(tmp_path):
    host, inst, token, discover = _armed(tmp_path, log_text=SUSPENDING + SUSPENDED + RESUMED)
    _append(inst, SUSPENDING + SUSPENDED)      # the one freeze after the arm: this switch's
    logs = []
    assert _fire(tmp_path, token, host, discover, logs) == 'thawed'
    assert host.instances['IRIS'].frozen is False
    assert logs and logs[-1][0] == 'user.crit'
    assert 'instance IRIS was still frozen 15 s after iris_freeze; thawed it' in logs[-1][1]
    assert not (tmp_path / 'deadman' / 'IRIS.json').exists()


def test_fire_after_a_kill_during_the_freeze_call_thaws_that_freeze(tmp_path):
    """Armed, and the freeze was still running when its caller died: the log shows it started, not yet suspended."""
    host, inst, token, discover = _armed(tmp_path)
    _append(inst, SUSPENDING)
    assert _fire(tmp_path, token, host, discover, []) == 'thawed'
    assert host.instances['IRIS'].frozen is False


def test_fire_leaves_a_later_freeze_alone(tmp_path):
    """Two freezes started since the arm: this switch's freeze ended, somebody else's is running."""
    host, inst, token, discover = _armed(tmp_path)
    _append(inst, SUSPENDING + SUSPENDED + RESUMED + SUSPENDING + SUSPENDED)
    logs = []
    assert _fire(tmp_path, token, host, discover, logs) == 'other-freeze'
    assert host.instances['IRIS'].frozen is True
    assert 'by a freeze started after the one' in logs[-1][1]


def test_fire_after_a_log_rotation_thaws_and_says_why(tmp_path):
    host, inst, token, discover = _armed(tmp_path, log_text=SUSPENDING + SUSPENDED + RESUMED)
    os.rename(inst['messages_log'], inst['messages_log'] + '.old_20261207')
    with open(inst['messages_log'], 'w') as f:       # a new file: the position recorded at arm means nothing
        f.write(SUSPENDING + SUSPENDED + RESUMED + SUSPENDING)
    logs = []
    assert _fire(tmp_path, token, host, discover, logs) == 'thawed'
    assert 'rotated or unreadable' in logs[-1][1]


def test_fire_leaves_a_thawed_instance_alone(tmp_path):
    host, _inst_, token, discover = _armed(tmp_path, frozen=False)
    logs = []
    assert _fire(tmp_path, token, host, discover, logs) == 'not-frozen'
    assert not logs
    assert not any('ExternalThaw' in ' '.join(c['argv']) for c in host.calls)
    assert not (tmp_path / 'deadman' / 'IRIS.json').exists()


def test_fire_after_disarm_does_nothing(tmp_path):
    host, _inst_, token, discover = _armed(tmp_path)
    _freeze.deadman_disarm('IRIS', runner=Recorder(), directory=str(tmp_path / 'deadman'))
    assert _fire(tmp_path, token, host, discover, []) == 'disarmed'
    assert host.instances['IRIS'].frozen is True


def test_mark_frozen_without_a_switch_is_false(tmp_path):
    assert _freeze.deadman_mark_frozen({'name': 'IRIS'}, directory=str(tmp_path)) is False


def test_log_events_since_a_position(tmp_path):
    inst = _inst(tmp_path)
    _append(inst, SUSPENDING + SUSPENDED)
    pos = _iris.log_position(inst)
    assert _iris.log_events_since(pos) == []
    _append(inst, RESUMED + 'x\n' + SUSPENDING)
    assert _iris.log_events_since(pos) == ['resumed', 'suspending']
    assert _iris.log_events_since(None) is None
    os.unlink(inst['messages_log'])
    assert _iris.log_events_since(pos) is None


# -- the engine ---------------------------------------------------------------------------------------------------

@pytest.fixture
def rig(tmp_path, monkeypatch):
    """Two instances on the fake host, the engine's state in tmp_path, switches on the (fake) systemd path."""
    iris = FakeInstance('IRIS', manager_user='root')
    cache = FakeInstance('CACHE', flavour='cache', manager_user='root')
    host = FakeHost([iris, cache])
    monkeypatch.setattr(_iris, 'subprocess_runner', host)
    monkeypatch.setattr(_freeze, 'use_systemd', lambda *a, **k: True)
    instances, _errors = _iris.discover_instances(runner=host, which=host.which, read_file=host.read_file)
    for inst in instances:
        inst['messages_log'] = str(tmp_path / ('%s-messages.log' % inst['name']))
        open(inst['messages_log'], 'w').close()
    base = str(tmp_path / 'state')
    _freeze.secure_dir(base)
    return host, iris, cache, instances, base


def _engine(rig, caller='test', **options):
    host, _iris_, _cache, instances, base = rig
    options.setdefault('deadman_timeout', 60)
    return _freeze.FreezeEngine(instances, caller, options, run_id='r1', base=base)


def _events(host):
    out = []
    for c in host.calls:
        a = c['argv']
        prog = a[0].rsplit('/', 1)[-1]
        if prog in ('systemd-run', 'systemctl'):
            out.append(prog)
        elif '-U' in a:
            expr = a[-1]
            for m in ('ExternalFreeze', 'ExternalThaw', 'IsWDSuspendedExt'):
                if m in expr:
                    out.append('%s %s' % (m, a[a.index('-U') - 1]))
        elif prog in ('iris', 'ccontrol') and 'stat' in a:
            out.append('stat -W %s' % a[2])
    return out


def _steps(instances, *snaps):
    return [('freeze', instances)] + [('snap', s) for s in snaps] + [('thaw', instances)]


def test_window_runs_lock_check_arm_freeze_snap_validate_thaw_disarm_record(rig):
    host, iris, cache, instances, base = rig
    eng = _engine(rig)
    seen = []

    def snap(payload, ctl):
        seen.append((payload, sorted(i['name'] for i in ctl._frozen), iris.frozen, cache.frozen))
        assert ctl.time_left() > 0 and ctl.interrupted() is None
        return 'snap-' + payload
    res = eng.window(_steps(instances, 'a', 'b'), snapshot=snap, cleanup=lambda: pytest.fail('no cleanup'))
    assert not res['failed'] and res['valid'] is True, res['msg']
    assert seen == [('a', ['CACHE', 'IRIS'], True, True), ('b', ['CACHE', 'IRIS'], True, True)]
    assert res['created'] == ['snap-a', 'snap-b'] and res['thawed'] == ['CACHE', 'IRIS']
    assert not iris.frozen and not cache.frozen
    events = [t['event'] for t in res['trace']]
    assert events == ['lock', 'checked', 'armed', 'freeze', 'frozen', 'snapshot', 'snapshot done', 'snapshot',
                      'snapshot done', 'validated', 'thaw', 'thawed'], events
    ev = _events(host)
    first_freeze = min(i for i, e in enumerate(ev) if e.startswith('ExternalFreeze'))
    assert max(i for i, e in enumerate(ev) if e == 'systemd-run') < first_freeze
    assert _freeze.run_validity('r1', base)[0] is True
    assert not os.listdir(os.path.join(base, 'deadman'))         # disarmed
    assert not os.path.exists(os.path.join(base, _freeze.OWNER_NAME))   # lock released


def test_window_refuses_a_frozen_instance_before_arming(rig):
    host, iris, cache, instances, base = rig
    cache.frozen = True
    res = _engine(rig).window(_steps(instances, 'a'), snapshot=lambda p, c: pytest.fail('no snapshot'))
    assert res['failed'] and res['msg'].startswith('nothing frozen: instance CACHE is already frozen')
    assert 'systemd-run' not in _events(host) and not iris.frozen and cache.frozen
    assert _freeze.run_validity('r1', base)[0] is None         # no record: nothing happened


def test_write_daemon_resumed_inside_the_window_is_an_invalid_backup(rig):
    """WDSuspendLimit, a foreign ExternalThaw, irisstat -W: the instance is no longer frozen at the thaw."""
    host, iris, cache, instances, base = rig
    removed = []

    def snap(payload, ctl):
        iris.frozen = False                     # resumed by somebody else while the snapshot is taken
        _append(instances[0], RESUMED)
        return payload
    res = _engine(rig).window(_steps(instances, 'a'), snapshot=snap,
                              cleanup=lambda: (removed.append('a') or ['a'], []))
    assert res['failed'] and res['valid'] is False and list(res['invalid']) == ['IRIS']
    assert 'BACKUP INVALID: IRIS: the write daemon was no longer suspended before the thaw' in res['msg']
    assert 'must not be recorded' in res['msg'] and removed == ['a'] and 'Removed: a' in res['msg']
    assert not cache.frozen and not iris.frozen
    valid, why = _freeze.run_validity('r1', base)
    assert valid is False and 'INVALID' in why and 'IRIS' in why


def test_a_second_freeze_inside_the_window_is_invalid_and_left_to_its_owner(rig):
    host, iris, cache, instances, base = rig

    _append(instances[0], 'before the run\n')

    def snap(payload, ctl):
        # this run's freeze as IRIS logs it (the fake host does not write the log), then thawed and frozen again by
        # another tool while the snapshot was taken
        _append(instances[0], SUSPENDING + SUSPENDED + RESUMED + SUSPENDING + SUSPENDED)
        return payload
    res = _engine(rig).window(_steps(instances, 'a'), snapshot=snap, cleanup=lambda: ([], []))
    assert res['failed'] and 'IRIS' in res['invalid'] and 'another one began' in res['invalid']['IRIS']
    assert iris.frozen is True                  # the other freeze is theirs
    assert not cache.frozen
    assert 'ExternalThaw IRIS' not in _events(host)


def test_switch_fired_inside_the_window_is_invalid(rig):
    host, iris, cache, instances, base = rig

    def snap(payload, ctl):
        os.unlink(os.path.join(base, 'deadman', 'CACHE.json'))   # what a firing switch does, and it thawed CACHE
        cache.frozen = False
        return payload
    res = _engine(rig).window(_steps(instances, 'a'), snapshot=snap, cleanup=lambda: ([], []))
    assert res['failed'] and res['valid'] is False
    assert res['invalid']['CACHE'].startswith('its dead-man switch fired before the thaw')


def test_failing_snapshot_thaws_first_then_cleans_up(rig):
    host, iris, cache, instances, base = rig
    order = []

    def snap(payload, ctl):
        if payload == 'b':
            raise _freeze.SnapshotStepError('creating b failed: no space')
        return payload

    def cleanup():
        order.append(('cleanup', iris.frozen, cache.frozen))
        return ['a'], []
    res = _engine(rig).window(_steps(instances, 'a', 'b', 'c'), snapshot=snap, cleanup=cleanup)
    assert res['failed'] and res['msg'].startswith('creating b failed: no space')
    assert order == [('cleanup', False, False)]                  # thawed before the clean-up
    assert 'Thawed: CACHE, IRIS. Removed: a' in res['msg'] and 'Next:' in res['msg']
    assert _freeze.run_validity('r1', base)[0] is False
    assert not os.listdir(os.path.join(base, 'deadman'))


def test_an_exception_in_a_step_still_thaws(rig):
    host, iris, cache, instances, base = rig

    def snap(payload, ctl):
        raise KeyError('bug')
    res = _engine(rig).window(_steps(instances, 'a'), snapshot=snap, cleanup=lambda: ([], []))
    assert res['failed'] and 'unexpected KeyError' in res['msg'] and not iris.frozen and not cache.frozen


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE])
def test_a_signal_inside_the_window_thaws_at_the_next_step(rig, signum):
    host, iris, cache, instances, base = rig
    taken = []

    def snap(payload, ctl):
        taken.append(payload)
        if payload == 'a':
            os.kill(os.getpid(), signum)
        return payload
    res = _engine(rig).window(_steps(instances, 'a', 'b'), snapshot=snap, cleanup=lambda: (list(taken), []))
    assert res['failed'] and taken == ['a'] and not iris.frozen and not cache.frozen
    assert res['msg'].startswith('interrupted by %s' % _freeze.signal_name(signum))
    assert res['signals'] == [_freeze.signal_name(signum)]
    assert signal.getsignal(signum) is not None                   # handlers restored


def test_an_overdue_snapshot_step_thaws_now_and_the_window_fails(rig):
    host, iris, cache, instances, base = rig
    seen = {}

    def snap(payload, ctl):
        ctl.thaw_now('lvcreate did not finish in time')           # what create_snapshot_bounded does
        seen['thawed'] = (iris.frozen, cache.frozen)
        raise _freeze.SnapshotStepError('creating a failed: lvcreate did not finish in time')
    res = _engine(rig).window(_steps(instances, 'a', 'b'), snapshot=snap, cleanup=lambda: ([], []))
    assert seen['thawed'] == (False, False) and res['failed'] and res['thawed'] == ['CACHE', 'IRIS']


def test_freeze_failure_rolls_back_with_the_stat_fallback(rig):
    host, iris, cache, instances, base = rig
    cache.freeze_rc = 3
    cache.freeze_delay = 0.2          # IRIS is frozen before CACHE fails
    iris.thaw_rc = 3                  # and its ExternalThaw fails: the rollback resumes it with stat -W
    res = _engine(rig).window(_steps(instances, 'a'), snapshot=lambda p, c: pytest.fail('no snapshot'),
                              cleanup=lambda: ([], []))
    assert res['failed'] and 'freeze failed on CACHE' in res['msg'] and not iris.frozen
    assert 'stat -W IRIS' in _events(host)
    assert not os.listdir(os.path.join(base, 'deadman'))


def test_a_rollback_that_cannot_thaw_keeps_the_switch_and_a_lease(rig):
    host, iris, cache, instances, base = rig
    cache.freeze_rc = 3
    cache.freeze_delay = 0.2
    iris.thaw_rc = 3
    host.stat_fails = True

    real = host.__call__

    def no_stat(argv, data=None, timeout=None):
        if 'stat' in argv and '-W' in argv:
            return 1, '', 'irisstat: cannot attach'
        return real(argv, data, timeout)
    eng = _engine(rig)
    eng.runner = no_stat
    res = eng.window(_steps(instances, 'a'), snapshot=lambda p, c: pytest.fail('no snapshot'),
                     cleanup=lambda: ([], []))
    assert res['failed'] and iris.frozen and res['still_frozen'] == ['IRIS']
    assert 'THAW FAILED, STILL FROZEN: IRIS' in res['msg'] and 'stays armed and tries again at' in res['msg']
    assert os.path.exists(os.path.join(base, 'deadman', 'IRIS.json'))          # the switch will try again
    assert not os.path.exists(os.path.join(base, 'deadman', 'CACHE.json'))
    rec = json.loads(open(os.path.join(base, _freeze.OWNER_NAME)).read())
    assert rec['lease_until'] > time.time() and rec['instances'] == ['IRIS']   # nobody else freezes meanwhile


def test_budget_stops_before_a_snapshot_that_could_overrun(rig):
    host, iris, cache, instances, base = rig
    clock = [1000.0]
    eng = _freeze.FreezeEngine(instances, 'test', dict(deadman_timeout=60, max_freeze_seconds=10), run_id='r1',
                               base=base, clock=lambda: clock[0])

    def snap(payload, ctl):
        clock[0] += 6
        return payload
    res = eng.window(_steps(instances, 'a', 'b', 'c'), snapshot=snap, cleanup=lambda: ([], []))
    assert res['failed'] and res['created'] == ['a']
    assert 'freeze budget exceeded' in res['msg'] and 'stopped before snapshot b' in res['msg']


def test_hold_leases_and_thaw_held_checks_and_releases(rig):
    host, iris, cache, instances, base = rig
    res = _engine(rig, 'iris_freeze').hold()
    assert not res['failed'] and res['frozen'] == ['CACHE', 'IRIS'] and iris.frozen and cache.frozen
    token = res['lease']['token']
    # another freezer is refused while the lease lives
    other = _engine(rig, 'iris_lvm_snapshot').window(_steps(instances, 'a'), snapshot=lambda p, c: p)
    assert other['failed'] and 'leased to iris_freeze' in other['msg'] and iris.frozen
    # a thaw without the token touches nothing of it
    out = _freeze.thaw_held(instances, 'iris_thaw', {}, base=base)
    assert out['failed'] and sorted(out['refused']) == ['CACHE', 'IRIS'] and iris.frozen
    out = _freeze.thaw_held(instances, 'iris_thaw', {}, token=token, base=base)
    assert not out['failed'] and out['valid'] is True and out['thawed'] == ['CACHE', 'IRIS'], out['msg']
    assert _freeze.run_validity('r1', base)[0] is True
    assert not os.path.exists(os.path.join(base, _freeze.OWNER_NAME))
    assert not os.listdir(os.path.join(base, 'deadman'))


def test_thaw_held_after_the_switch_fired_is_not_ok(rig):
    host, iris, cache, instances, base = rig
    res = _engine(rig, 'iris_freeze').hold()
    os.unlink(os.path.join(base, 'deadman', 'IRIS.json'))     # it fired and thawed IRIS
    iris.frozen = False
    out = _freeze.thaw_held(instances, 'iris_thaw', {}, token=res['lease']['token'], base=base)
    assert out['failed'] and out['valid'] is False and 'IRIS' in out['invalid']
    assert 'BACKUP INVALID' in out['msg'] and 'do not record it' in out['msg']
    assert out['thawed'] == ['CACHE'] and not cache.frozen
    assert _freeze.run_validity('r1', base)[0] is False


def test_thaw_held_is_best_effort_and_reports_down(rig):
    host, iris, cache, instances, base = rig
    res = _engine(rig, 'iris_freeze').hold()
    cache.status = 'down, last used Mon Dec  7 10:00:00 2026'
    cache.frozen = False
    out = _freeze.thaw_held(instances, 'iris_thaw', {}, token=res['lease']['token'], base=base)
    assert out['thawed'] == ['IRIS'] and not iris.frozen and out['went_down'] == ['CACHE'], out['msg']
    assert 'down (not frozen' in out['msg']


def test_hold_interrupted_by_a_signal_thaws_again(rig, monkeypatch):
    host, iris, cache, instances, base = rig
    real = _iris.freeze_many

    def freeze_then_signal(*args, **kwargs):
        res = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGHUP)      # the SSH connection dropped during ExternalFreeze
        return res
    monkeypatch.setattr(_iris, 'freeze_many', freeze_then_signal)
    res = _engine(rig, 'iris_freeze').hold()
    assert res['failed'] and 'SIGHUP' in res['msg'] and not iris.frozen and not cache.frozen
    assert 'Nothing of this run is left frozen' in res['msg']
    assert not os.path.exists(os.path.join(base, _freeze.OWNER_NAME))


def test_thaw_held_under_a_signal_finishes_the_thaw_and_fails(rig, monkeypatch):
    """SIGTERM during ExternalThaw (the job was cancelled): the thaw, the verdict and the lease release still
    happen, and the result is a failure that says so (the rest of the job did not run)."""
    host, iris, cache, instances, base = rig
    res = _engine(rig, 'iris_freeze').hold()
    real = _iris.thaw

    def thaw_then_signal(*args, **kwargs):
        out = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)       # the job was cancelled while ExternalThaw ran
        return out
    monkeypatch.setattr(_iris, 'thaw', thaw_then_signal)
    out = _freeze.thaw_held(instances, 'iris_thaw', {}, token=res['lease']['token'], base=base)
    assert not iris.frozen and not cache.frozen
    assert out['failed'] and out['signals'] == ['SIGTERM'] and out['valid'] is True
    assert out['msg'].startswith('interrupted by SIGTERM') and 'the thaw was finished first' in out['msg']
    assert not os.path.exists(os.path.join(base, _freeze.OWNER_NAME))


def test_hold_leaves_an_instance_frozen_outside_the_collection_alone(rig):
    host, iris, cache, instances, base = rig
    iris.frozen = True
    res = _engine(rig, 'iris_freeze').hold()
    assert res['already_frozen'] == ['IRIS'] and res['frozen'] == ['CACHE']
    assert not os.path.exists(os.path.join(base, 'deadman', 'IRIS.json'))    # no switch for a freeze not ours


def test_a_window_switch_that_fires_removes_the_snapshots_of_its_run(rig, monkeypatch):
    """SIGKILL of the window's process: the switch thaws, then removes the run's LVM snapshots (tagged)."""
    host, iris, cache, instances, base = rig
    removed = []

    class FakeLvm(object):
        def lvs(self):
            def mk(name, tags):
                return type('LV', (), dict(is_snapshot=True, is_any_snapshot=True, tags=tags, vg='vg', name=name, full_name='vg/' + name))()
            return [mk('a_snap', ['irisops_snapshot', 'irisops_run_r1']), mk('b_snap', ['irisops_run_other'])]

        def mountinfo(self):
            return []

        def mountpoints(self, lv, mounts):
            return []

        def remove_lv(self, vg, name, mountpoints=()):
            removed.append('%s/%s' % (vg, name))

    eng = _freeze.FreezeEngine(instances, 'iris_lvm_snapshot', {'deadman_timeout': 60}, run_id='r1', base=base,
                               switch_cleanup={'lvm_run_tag': 'irisops_run_r1'})
    eng.take_lock()
    assert eng.arm(instances) is None
    eng.freeze(instances)                          # ... and the process is killed here
    monkeypatch.setattr(_freeze, '_lvm_module', lambda: type('M', (), dict(Lvm=FakeLvm, LvmError=Exception)))
    state = json.loads(open(os.path.join(base, 'deadman', 'IRIS.json')).read())
    assert state['cleanup'] == {'lvm_run_tag': 'irisops_run_r1'}
    logs = []
    assert _freeze.deadman_fire(os.path.join(base, 'deadman', 'IRIS.json'), state['token'], runner=host,
                                discover=lambda: (instances, []), log=log_of(logs)) == 'thawed'
    assert not iris.frozen and removed == ['vg/a_snap']
    assert 'removed the snapshots of the dead window irisops_run_r1: vg/a_snap' in logs[-1][1]


def test_a_lease_ends_with_its_switches_when_its_holder_is_gone(rig):
    host, iris, cache, instances, base = rig
    res = _engine(rig, 'iris_freeze').hold()
    rec = json.loads(open(os.path.join(base, _freeze.OWNER_NAME)).read())
    rec['pid'] = 999999999                        # the module that holds it is long gone (it always is)
    open(os.path.join(base, _freeze.OWNER_NAME), 'w').write(json.dumps(rec))
    assert _freeze.lease_live(rec, directory=base)            # its switches are armed
    for name in ('IRIS', 'CACHE'):                            # ... and fire (they remove their state)
        os.unlink(os.path.join(base, 'deadman', '%s.json' % name))
    assert not _freeze.lease_live(rec, directory=base)
    iris.frozen = cache.frozen = False
    again = _engine(rig, 'iris_lvm_snapshot').window(_steps(instances, 'a'), snapshot=lambda p, c: p,
                                                     cleanup=lambda: ([], []))
    assert not again['failed'], again['msg']
    assert res['lease']['token'] != again['token']


def test_a_partial_thaw_keeps_the_rest_of_the_lease_and_the_run_record(rig):
    host, iris, cache, instances, base = rig
    res = _engine(rig, 'iris_freeze').hold()
    token = res['lease']['token']
    iris_only = [i for i in instances if i['name'] == 'IRIS']
    out = _freeze.thaw_held(iris_only, 'iris_thaw', {}, token=token, base=base)
    assert not out['failed'] and out['thawed'] == ['IRIS'] and out['valid'] is None and cache.frozen
    rec = json.loads(open(os.path.join(base, _freeze.OWNER_NAME)).read())
    assert rec['token'] == token and rec['instances'] == ['CACHE'] and rec['lease_until']
    run = _freeze.read_run_record('r1', base)
    assert run['caller'] == 'iris_freeze' and sorted(run['instances']) == ['CACHE', 'IRIS']
    assert run['state'] == 'partly thawed' and run['valid'] is None and run['thawed'] == ['IRIS']
    # another freezer is still refused: CACHE is held
    again = _engine(rig, 'iris_lvm_snapshot').window(_steps(instances, 'a'), snapshot=lambda p, c: p)
    assert again['failed'] and 'leased to iris_freeze' in again['msg']
    out = _freeze.thaw_held(instances, 'iris_thaw', {}, token=token, base=base)
    assert not out['failed'] and out['thawed'] == ['CACHE'] and out['valid'] is True
    assert _freeze.run_validity('r1', base)[0] is True
    assert not os.path.exists(os.path.join(base, _freeze.OWNER_NAME))


def test_a_thaw_that_cannot_log_in_says_it_cannot_tell_not_still_frozen(rig):
    host, iris, cache, instances, base = rig
    iris.login_refused = True
    out = _freeze.thaw_held(instances, 'iris_thaw', {}, base=base)
    assert out['failed'] and out['still_frozen'] == [] and list(out['unknown']) == ['IRIS']
    assert 'cannot tell whether these are frozen' in out['msg'] and 'STILL FROZEN' not in out['msg']
    assert 'ExternalThaw IRIS' not in _events(host)


def test_an_instance_that_went_down_inside_the_window_is_reported_down_not_unknown(rig):
    """Stopped between the freeze and the thaw: its state query fails ("not running"); the verdict says it went
    down (not frozen, not backed up), not that its state is unknown, and nothing is reported still frozen."""
    host, iris, cache, instances, base = rig
    removed = []

    def snap(payload, ctl):
        cache.status = 'down, last used Mon Dec  7 10:00:00 2026'
        cache.frozen = False
        return payload
    res = _engine(rig).window(_steps(instances, 'a'), snapshot=snap,
                              cleanup=lambda: (removed.append('a') or ['a'], []))
    assert res['failed'] and res['valid'] is False and res['went_down'] == ['CACHE'], res['msg']
    assert 'CACHE went down inside the freeze window: not frozen' in res['msg']
    assert 'BACKUP INVALID' not in res['msg'] and 'STILL FROZEN' not in res['msg'], res['msg']
    assert res['still_frozen'] == [] and not iris.frozen and removed == ['a']
    assert _freeze.run_validity('r1', base)[0] is False
