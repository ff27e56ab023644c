# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the dead-man switch in _iris.py: command building, state handling, firing decisions."""

from __future__ import absolute_import, division, print_function

import json
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.irisops.backup.plugins.module_utils import _iris
from ansible_collections.irisops.backup.tests.unit.plugins.iris_fakes import FakeHost, FakeInstance

__metaclass__ = type


class Recorder(object):
    def __init__(self, rc=0):
        self.calls = []
        self.rc = rc

    def __call__(self, argv, data=None, timeout=None):
        self.calls.append(list(argv))
        return self.rc, '', 'boom' if self.rc else ''


def _inst(name='IRIS'):
    return {'name': name, 'flavour': 'iris', 'manager_user': 'irisowner', 'messages_log': '/nonexistent/messages.log'}


@pytest.mark.parametrize('eft,expected', [(None, 300), (600, 300), (300, 240), (121, 61), (120, 60), (30, 15), (1, 1)])
def test_default_timeout(eft, expected):
    assert _iris.default_deadman_timeout(eft) == expected


def test_unit_and_state_names():
    assert _iris.deadman_unit('IRIS') == 'irisops-deadman-IRIS'
    assert _iris.deadman_unit('A B/../x') == 'irisops-deadman-A_B____x'
    assert _iris.deadman_state_path('IRIS', '/d') == '/d/IRIS.json'


def test_systemd_argv():
    argv = _iris.build_deadman_systemd_argv('IRIS', 15, '/usr/bin/python3', '/d/_iris.py', '/d/IRIS.json', 'tok',
                                            systemd_run='/usr/bin/systemd-run')
    assert argv[:4] == ['/usr/bin/systemd-run', '--unit', 'irisops-deadman-IRIS', '--on-active=15s']
    assert argv[-5:] == ['/usr/bin/python3', '/d/_iris.py', 'deadman-fire', '/d/IRIS.json', 'tok']


def test_sleeper_argv():
    assert _iris.build_deadman_sleeper_argv('py', 's', 'st', 'tok', 9.7) == ['py', 's', 'deadman-sleep', 'st', 'tok', '9']


def test_source_is_this_file():
    with open(_iris.__file__.replace('.pyc', '.py')) as f:
        assert _iris.deadman_source() == f.read()


def test_arm_systemd_writes_state_and_copy(tmp_path):
    rec = Recorder()
    res = _iris.deadman_arm(_inst(), 15, runner=rec, directory=str(tmp_path), mechanism='systemd', python='py')
    assert res['armed'] and not res['failed'], res
    assert res['mechanism'] == 'systemd' and res['fires_at'].endswith('Z')
    state = json.loads((tmp_path / 'IRIS.json').read_text())
    assert state['seconds'] == 15 and state['run_as'] == 'irisowner'
    run = [c for c in rec.calls if c[0].endswith('systemd-run')][0]
    assert run[-1] == state['token'] and run[-3] == 'deadman-fire' and run[-2] == str(tmp_path / 'IRIS.json')
    assert (tmp_path / '_iris.py').read_text() == _iris.deadman_source()
    assert oct(os.stat(str(tmp_path / 'IRIS.json')).st_mode & 0o777) == '0o600'
    assert _iris.deadman_status('IRIS', str(tmp_path))['armed'] is True


def test_arm_systemd_failure_leaves_no_state(tmp_path):
    res = _iris.deadman_arm(_inst(), 15, runner=Recorder(rc=1), directory=str(tmp_path), mechanism='systemd')
    assert res['failed'] and not res['armed']
    assert 'IRIS' in res['msg'] and 'systemd-run' in res['msg']
    assert not (tmp_path / 'IRIS.json').exists()


def test_rearm_replaces_token(tmp_path):
    rec = Recorder()
    _iris.deadman_arm(_inst(), 15, runner=rec, directory=str(tmp_path), mechanism='systemd')
    first = json.loads((tmp_path / 'IRIS.json').read_text())['token']
    _iris.deadman_arm(_inst(), 15, runner=rec, directory=str(tmp_path), mechanism='systemd')
    second = json.loads((tmp_path / 'IRIS.json').read_text())['token']
    assert first != second
    # the old timer's command line carries the old token: it now does nothing
    assert _iris.deadman_fire(str(tmp_path / 'IRIS.json'), first, discover=lambda: pytest.fail('no discovery')) \
        == 'disarmed'


def test_process_mechanism_arm_and_disarm(tmp_path):
    res = _iris.deadman_arm(_inst(), 3600, runner=Recorder(), directory=str(tmp_path), mechanism='process',
                            python=sys.executable)
    assert res['armed'], res
    pid = res['pid']
    assert os.path.exists('/proc/%d' % pid)
    assert os.getsid(pid) == pid  # its own session: not tied to the module's process group
    d = _iris.deadman_disarm('IRIS', runner=Recorder(), directory=str(tmp_path))
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
    again = _iris.deadman_disarm('IRIS', runner=Recorder(), directory=str(tmp_path))
    assert again == {'was_armed': False, 'disarmed': False, 'mechanism': None}


def test_copy_runs_standalone(tmp_path):
    _iris.deadman_arm(_inst(), 15, runner=Recorder(), directory=str(tmp_path), mechanism='systemd')
    out = subprocess.run([sys.executable, str(tmp_path / '_iris.py'), 'deadman-fire', str(tmp_path / 'IRIS.json'),
                          'wrong-token'], stdout=subprocess.PIPE, check=True, cwd=str(tmp_path))
    assert out.stdout.strip() == b'disarmed'
    assert (tmp_path / 'IRIS.json').exists()


def _armed_host(tmp_path, frozen=True):
    host = FakeHost([FakeInstance('IRIS', manager_user='root')])
    host.instances['IRIS'].frozen = frozen
    logs = []
    res = _iris.deadman_arm({'name': 'IRIS', 'manager_user': 'root'}, 15, runner=Recorder(),
                            directory=str(tmp_path), mechanism='systemd')
    token = json.loads((tmp_path / 'IRIS.json').read_text())['token']

    def discover():
        return _iris.discover_instances(runner=host, which=host.which, read_file=host.read_file)
    return host, res, token, discover, logs


def _fire(tmp_path, token, host, discover, logs):
    """What the timer of the switch armed in tmp_path runs (deadman-fire STATE TOKEN), against the fake host."""
    return _iris.deadman_fire(str(tmp_path / 'IRIS.json'), token, runner=host, discover=discover, log=log_of(logs))


def test_fire_thaws_a_frozen_instance(tmp_path):
    host, _res, token, discover, logs = _armed_host(tmp_path)
    assert _fire(tmp_path, token, host, discover, logs) == 'thawed'
    assert host.instances['IRIS'].frozen is False
    assert logs and logs[-1][0] == 'user.crit'
    assert 'instance IRIS was still frozen 15 s after iris_freeze; thawed it' in logs[-1][1]
    assert not (tmp_path / 'IRIS.json').exists()


def log_of(logs):
    def log(msg, prio=_iris.DEADMAN_PRIORITY):
        logs.append((prio, msg))
    return log


def test_fire_leaves_a_thawed_instance_alone(tmp_path):
    host, _res, token, discover, logs = _armed_host(tmp_path, frozen=False)
    assert _fire(tmp_path, token, host, discover, logs) == 'not-frozen'
    assert not logs
    assert not any('ExternalThaw' in ' '.join(c['argv']) for c in host.calls)
    assert not (tmp_path / 'IRIS.json').exists()


def test_fire_leaves_a_later_freeze_alone(tmp_path, monkeypatch):
    host, _res, token, discover, logs = _armed_host(tmp_path)
    state = json.loads((tmp_path / 'IRIS.json').read_text())
    state['suspend_mark'] = '11/23/26-10:00:00:000 (1) 0 [Backup] System suspended'
    (tmp_path / 'IRIS.json').write_text(json.dumps(state))
    monkeypatch.setattr(_iris, 'last_suspend_mark', lambda inst: '11/23/26-10:05:00:000 (2) 0 [Backup] System suspended')
    assert _fire(tmp_path, token, host, discover, logs) == 'other-freeze'
    assert host.instances['IRIS'].frozen is True


def test_fire_after_disarm_does_nothing(tmp_path):
    host, _res, token, discover, logs = _armed_host(tmp_path)
    _iris.deadman_disarm('IRIS', runner=Recorder(), directory=str(tmp_path))
    assert _fire(tmp_path, token, host, discover, logs) == 'disarmed'
    assert host.instances['IRIS'].frozen is True


def test_last_suspend_mark(tmp_path):
    log = tmp_path / 'messages.log'
    log.write_text('11/23/26-10:00:00:000 (1) 0 [Backup] System suspended\nx\n'
                   '11/23/26-10:05:00:000 (2) 0 [Backup] System suspended\n11/23/26-10:06:00:000 (2) 0 [B] resumed\n')
    assert _iris.last_suspend_mark({'messages_log': str(log)}).startswith('11/23/26-10:05')
    assert _iris.last_suspend_mark({'messages_log': str(tmp_path / 'none')}) is None


OLD_MARK = '11/23/26-10:00:00:000 (1) 0 [Backup] System suspended'
NEW_MARK = '11/23/26-10:05:00:000 (2) 0 [Backup] System suspended'


def _armed_before_freeze(tmp_path, monkeypatch, mark_at_arm):
    """A switch armed before its freeze (iris_lvm_snapshot) while the log's last suspend line was ``mark_at_arm``."""
    host = FakeHost([FakeInstance('IRIS', manager_user='root')])
    host.instances['IRIS'].frozen = True
    marks = [mark_at_arm]
    monkeypatch.setattr(_iris, 'last_suspend_mark', lambda inst: marks[-1])
    inst = {'name': 'IRIS', 'manager_user': 'root'}
    _iris.deadman_arm(inst, 15, runner=Recorder(), directory=str(tmp_path), mechanism='systemd',
                      before_freeze=True, armed_by='iris_lvm_snapshot')
    token = json.loads((tmp_path / 'IRIS.json').read_text())['token']

    def discover():
        return _iris.discover_instances(runner=host, which=host.which, read_file=host.read_file)
    return host, inst, token, discover, marks


def test_armed_before_freeze_records_the_mark_before_and_none_yet(tmp_path, monkeypatch):
    _host, _inst, _token, _discover, _marks = _armed_before_freeze(tmp_path, monkeypatch, OLD_MARK)
    state = json.loads((tmp_path / 'IRIS.json').read_text())
    assert state['suspend_mark'] is None and state['mark_before_freeze'] == OLD_MARK


def test_mark_frozen_records_the_new_freeze_and_then_only_that_one_is_thawed(tmp_path, monkeypatch):
    host, inst, token, discover, marks = _armed_before_freeze(tmp_path, monkeypatch, OLD_MARK)
    marks.append(NEW_MARK)  # the freeze wrote its line
    assert _iris.deadman_mark_frozen(inst, directory=str(tmp_path)) is True
    state = json.loads((tmp_path / 'IRIS.json').read_text())
    assert state['suspend_mark'] == NEW_MARK and state['token'] == token
    logs = []
    assert _fire(tmp_path, token, host, discover, logs) == 'thawed'
    assert host.instances['IRIS'].frozen is False
    assert 'after iris_lvm_snapshot; thawed it' in logs[-1][1]


def test_killed_during_the_freeze_call_still_thaws_that_freeze(tmp_path, monkeypatch):
    """Armed, frozen, never recorded (module killed in the freeze call): the log shows a freeze after arming."""
    host, _inst, token, discover, marks = _armed_before_freeze(tmp_path, monkeypatch, OLD_MARK)
    marks.append(NEW_MARK)
    logs = []
    assert _fire(tmp_path, token, host, discover, logs) == 'thawed'
    assert host.instances['IRIS'].frozen is False


def test_armed_before_freeze_leaves_an_older_freeze_alone(tmp_path, monkeypatch):
    """Frozen, but the log's last suspend line is the one from before arming: not this switch's freeze."""
    host, _inst, token, discover, _marks = _armed_before_freeze(tmp_path, monkeypatch, OLD_MARK)
    logs = []
    assert _fire(tmp_path, token, host, discover, logs) == 'other-freeze'
    assert host.instances['IRIS'].frozen is True
    assert 'by a freeze older than this switch' in logs[-1][1]


def test_armed_before_the_first_freeze_ever_thaws(tmp_path, monkeypatch):
    """No suspend line at all before arming (first backup of the instance): any freeze is this switch's."""
    host, _inst, token, discover, marks = _armed_before_freeze(tmp_path, monkeypatch, None)
    marks.append(NEW_MARK)
    assert _fire(tmp_path, token, host, discover, []) == 'thawed'


def test_mark_frozen_without_a_switch_is_false(tmp_path):
    assert _iris.deadman_mark_frozen({'name': 'IRIS'}, directory=str(tmp_path)) is False
