# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""iris_freeze arms, iris_thaw disarms, iris_instance_info reports the dead-man switch (fake host, fake systemd)."""

from __future__ import absolute_import, division, print_function

import json
import os

from ansible_collections.irisops.backup.plugins.modules import iris_freeze, iris_instance_info, iris_thaw
from ansible_collections.irisops.backup.tests.unit.plugins.iris_fakes import FakeInstance

__metaclass__ = type


def _runs(host, prog):
    return [c['argv'] for c in host.calls if c['argv'][0].rsplit('/', 1)[-1] == prog]


def _iris_only():
    return FakeInstance('IRIS', manager_user='root')


def test_freeze_arms_and_thaw_disarms(fake_host, run_module, deadman_sandbox):
    iris = _iris_only()
    host = fake_host(iris)
    failed, r = run_module(iris_freeze, {'instances': 'IRIS', 'deadman_timeout': 15})
    assert not failed, r
    dm = r['instance_results']['IRIS']['deadman']
    assert dm['armed'] and dm['mechanism'] == 'systemd' and dm['fires_at'] and dm['seconds'] == 15
    run = _runs(host, 'systemd-run')
    assert len(run) == 1 and '--on-active=15s' in run[0] and 'irisops-deadman-IRIS' in run[0]
    state = json.load(open(os.path.join(deadman_sandbox, 'IRIS.json')))
    assert run[0][-1] == state['token']

    failed, info = run_module(iris_instance_info, {'name': 'IRIS'})
    assert info['instances'][0]['deadman']['armed'] and info['instances'][0]['frozen']

    # a thaw without the lease does not touch another owner's freeze
    failed, t = run_module(iris_thaw, {'instances': 'IRIS'})
    assert failed and iris.frozen and sorted(t['refused']) == ['IRIS'] and 'leased to iris_freeze' in t['msg']
    assert os.path.exists(os.path.join(deadman_sandbox, 'IRIS.json'))
    # with it: checked (still frozen by that freeze, its switch not fired), thawed, disarmed, the run valid
    failed, t = run_module(iris_thaw, {'instances': 'IRIS', 'lease': r['lease']})
    assert not failed and not iris.frozen and t['thawed'] == ['IRIS'], t['msg']
    assert t['valid'] is True and t['run_id'] == r['run_id']
    assert t['instance_results']['IRIS']['deadman']['disarmed'] is True
    assert not os.path.exists(os.path.join(deadman_sandbox, 'IRIS.json'))
    # idempotent: a second thaw finds it not frozen and nothing armed
    failed, t = run_module(iris_thaw, {'instances': 'IRIS', 'lease': r['lease']['token']})
    assert not failed and not t['changed'] and t['instance_results']['IRIS']['deadman']['was_armed'] is False
    failed, info = run_module(iris_instance_info, {'name': 'IRIS'})
    assert info['instances'][0]['deadman']['armed'] is False


def test_default_timeout_follows_external_freeze_timeout(fake_host, run_module):
    host = fake_host(_iris_only())
    failed, r = run_module(iris_freeze, {'instances': 'IRIS', 'external_freeze_timeout': 200})
    assert not failed and r['instance_results']['IRIS']['deadman']['seconds'] == 140
    assert '--on-active=140s' in _runs(host, 'systemd-run')[0]


def test_deadman_zero_disables_with_warning(fake_host, run_module, deadman_sandbox):
    host = fake_host(_iris_only())
    failed, r = run_module(iris_freeze, {'instances': 'IRIS', 'deadman_timeout': 0})
    assert not failed and r['frozen'] == ['IRIS']
    assert not _runs(host, 'systemd-run') and 'deadman' not in r['instance_results']['IRIS']
    assert any('deadman_timeout=0' in str(w) for w in r.get('warnings', [])), sorted(r)
    assert not os.path.exists(os.path.join(deadman_sandbox, 'IRIS.json'))


def test_arm_failure_freezes_nothing(fake_host, run_module, deadman_sandbox):
    iris = _iris_only()
    host = fake_host(iris)
    host.systemd_run_rc = 1
    failed, r = run_module(iris_freeze, {'instances': 'IRIS', 'deadman_timeout': 15})
    assert failed and not iris.frozen
    assert r['msg'].startswith('nothing frozen: could not arm the dead-man switch for instance IRIS')
    assert 'systemd-run' in r['msg'] and 'Next:' in r['msg']
    assert host.session_calls('IRIS', 'ExternalFreeze') == [], 'the switch is armed before the freeze'
    assert not os.path.exists(os.path.join(deadman_sandbox, 'IRIS.json'))


def test_check_mode_arms_nothing(fake_host, run_module, deadman_sandbox):
    host = fake_host(_iris_only())
    failed, r = run_module(iris_freeze, {'instances': 'IRIS', 'deadman_timeout': 15}, check_mode=True)
    assert not failed and r['changed']
    expected = {'armed': False, 'mechanism': None, 'fires_at': None, 'would_arm': True, 'seconds': 15}
    assert r['instance_results']['IRIS']['deadman'] == expected
    assert not _runs(host, 'systemd-run') and not os.path.exists(deadman_sandbox)


def test_negative_deadman_timeout_rejected(fake_host, run_module):
    fake_host(_iris_only())
    failed, r = run_module(iris_freeze, {'instances': 'IRIS', 'deadman_timeout': -1})
    assert failed and 'deadman_timeout' in r['msg']


def test_already_frozen_is_not_armed(fake_host, run_module):
    iris = _iris_only()
    iris.frozen = True
    host = fake_host(iris)
    failed, r = run_module(iris_freeze, {'instances': 'IRIS'})
    assert not failed and not r['changed'] and not _runs(host, 'systemd-run')
