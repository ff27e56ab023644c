# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""irisops.backup.vmware_stun_info: options, verdicts, warnings, failures, QoS from an instance's CPF."""

from __future__ import absolute_import, division, print_function

import os

import pytest

from ansible_collections.irisops.backup.plugins.modules import vmware_stun_info
from ansible_collections.irisops.backup.tests.unit.plugins.iris_fakes import FakeInstance

__metaclass__ = type

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'module_utils', 'fixtures', 'vmware')
SEED = os.path.join(FIXTURES, 'vmware-seed.log')
ESXI7 = os.path.join(FIXTURES, 'vmware-esxi7.log')


class MirrorInstance(FakeInstance):
    """A FakeInstance whose CPF has a [Mirrors] entry (QOSTimeout is the 5th field)."""

    def __init__(self, name, qos_ms, member=('Failover', 'Backup')):
        super(MirrorInstance, self).__init__(name, mirror=member)
        self.qos_ms = qos_ms

    def cpf(self):
        text = super(MirrorInstance, self).cpf()
        if self.qos_ms is None:
            return text
        return text + '\n[Mirrors]\nIRISMIRROR=0A1B2C3D-GUID,2,1,Defined Primary,%d,0,0,,0,,,,1\n' % self.qos_ms


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Module warnings are collected process-wide by ansible-core; start every test of this file with none."""
    try:
        from ansible.module_utils.common import warnings
    except ImportError:
        return
    for name in ('_global_warnings', '_global_deprecations'):
        if isinstance(getattr(warnings, name, None), (dict, list)):
            monkeypatch.setattr(warnings, name, type(getattr(warnings, name))())


def _warnings(result):
    """All warning texts in one string (ansible-core 2.19 returns structured warnings, older versions strings)."""
    texts = []
    for w in result.get('warnings') or []:
        texts.append(w if isinstance(w, str) else (w.get('event') or w).get('msg', str(w)))
    return ' | '.join(texts)


def test_seed_log_default_qos_ok(run_module):
    failed, r = run_module(vmware_stun_info, {'paths': [SEED]})
    assert not failed and not r['changed']
    assert r['verdict'] == 'ok' and not r['risk'] and r['risk_message'] is None
    assert r['count'] == 7 and r['max_us'] == 1091706 and r['p95_us'] == 1091706
    assert r['qos_timeout_ms'] == 8000 and r['qos_timeout_source'].startswith('default')
    assert r['risk_threshold_ms'] == 4000 and r['instance'] is None
    assert r['stuns'][1] == {'timestamp': '2017-01-04T22:15:58.846Z', 'us': 38123, 'seconds': 0.038123,
                             'thread': 'vcpu-0', 'level': 'I125', 'format': 'pipe', 'file': SEED, 'line': 6}
    assert not r.get('warnings')


def test_risk_warns_and_sets_the_field(run_module):
    failed, r = run_module(vmware_stun_info, {'paths': [ESXI7], 'qos_timeout_ms': 8000})
    assert not failed and r['verdict'] == 'risk' and r['risk'] and r['qos_timeout_source'] == 'option'
    assert r['at_risk_count'] == 1 and r['at_risk'][0]['us'] == 4500000
    assert r['risk_message'].startswith('VM stun at risk of a mirror failover: 1 of 3 stun(s) at or above half')
    assert '4.500 s at 2023-04-15T09:31:02.017Z' in r['risk_message']
    assert r['risk_message'] in _warnings(r)


def test_fail_on_risk_fails_with_next_steps_and_keeps_the_data(run_module):
    failed, r = run_module(vmware_stun_info, {'paths': [ESXI7], 'fail_on_risk': True})
    assert failed
    assert r['msg'].startswith('VM stun at risk of a mirror failover') and 'Next:' in r['msg']
    assert r['verdict'] == 'risk' and r['count'] == 3 and r['max_us'] == 4500000


def test_fail_on_risk_passes_when_ok(run_module):
    failed, r = run_module(vmware_stun_info, {'paths': [SEED], 'fail_on_risk': True})
    assert not failed and r['verdict'] == 'ok'


def test_exceeds_qos(run_module):
    failed, r = run_module(vmware_stun_info, {'paths': [ESXI7], 'qos_timeout_ms': 4000})
    assert not failed and r['verdict'] == 'exceeds_qos'
    assert 'a mirror failover is to be expected' in r['risk_message']
    assert r['at_risk_count'] == 1


def test_several_paths_and_check_mode(run_module):
    failed, r = run_module(vmware_stun_info, {'path': [SEED, ESXI7], 'qos_timeout_ms': 2000}, check_mode=True)
    assert not failed and not r['changed']
    assert r['count'] == 10 and [f['count'] for f in r['files']] == [7, 3]
    # 2017 stuns first, then 2023
    assert r['stuns'][0]['timestamp'].startswith('2017') and r['stuns'][-1]['timestamp'].startswith('2023')
    # half of 2000 ms: the 1.09 s seed stun and the 4.5 s stun
    assert sorted(s['us'] for s in r['at_risk']) == [1091706, 4500000] and r['verdict'] == 'exceeds_qos'


def test_no_stuns_warns(run_module, tmp_path):
    f = tmp_path / 'vmware.log'
    f.write_text(u'2023-04-15T08:52:34.879Z In(05) vmx - nothing to see\n')
    failed, r = run_module(vmware_stun_info, {'paths': [str(f)], 'fail_on_risk': True})
    assert not failed and r['verdict'] == 'no_stuns' and r['count'] == 0 and r['max_seconds'] is None
    assert 'no "Checkpoint_Unstun: vm stopped for N us" line in %s' % f in _warnings(r)


def test_missing_file_fails_naming_it(run_module, tmp_path):
    path = str(tmp_path / 'nope' / 'vmware.log')
    failed, r = run_module(vmware_stun_info, {'paths': [SEED, path]})
    assert failed and r['msg'].startswith('cannot read the VMware logs: %s does not exist' % path)
    assert 'download the vmware.log files' in r['msg']


@pytest.mark.parametrize('qos', [0, -5])
def test_bad_qos(run_module, qos):
    failed, r = run_module(vmware_stun_info, {'paths': [SEED], 'qos_timeout_ms': qos})
    assert failed and r['msg'].startswith('qos_timeout_ms must be a positive number of milliseconds')


def test_qos_and_instance_are_exclusive(run_module):
    failed, r = run_module(vmware_stun_info, {'paths': [SEED], 'qos_timeout_ms': 8000, 'instance': 'IRIS'})
    assert failed and 'mutually exclusive' in r['msg']


def test_qos_from_mirrored_instance(fake_host, run_module):
    host = fake_host(MirrorInstance('IRIS', 2000), FakeInstance('CACHE', 'cache'))
    failed, r = run_module(vmware_stun_info, {'paths': [SEED], 'instance': 'iris'})
    assert not failed
    assert r['qos_timeout_ms'] == 2000 and r['qos_timeout_source'] == 'instance IRIS (CPF [Mirrors])'
    assert r['instance'] == {'name': 'IRIS', 'mirror_member': True, 'mirror_member_type': 'Failover',
                             'mirror_status': 'Backup', 'mirror_qos_timeout_ms': 2000}
    assert r['verdict'] == 'risk' and r['at_risk'][0]['us'] == 1091706
    # discovery only: no IRIS session was opened
    assert not host.session_calls()


def test_instance_not_mirrored_uses_default(fake_host, run_module):
    fake_host(FakeInstance('IRIS'))
    failed, r = run_module(vmware_stun_info, {'paths': [SEED], 'instance': 'IRIS'})
    assert not failed and r['qos_timeout_ms'] == 8000
    assert r['qos_timeout_source'] == 'default (instance IRIS is not a mirror member)'
    assert r['instance']['mirror_member'] is False and r['verdict'] == 'ok'


def test_mirror_member_without_qos_in_cpf_warns(fake_host, run_module):
    fake_host(MirrorInstance('IRIS', None))
    failed, r = run_module(vmware_stun_info, {'paths': [SEED], 'instance': 'IRIS'})
    assert not failed and r['qos_timeout_ms'] == 8000
    assert r['qos_timeout_source'] == 'default (no QoS timeout in the CPF of instance IRIS)'
    assert 'is a mirror member but its CPF (/usr/irissys/iris.cpf) gives no QoS timeout' in _warnings(r)


def test_unknown_instance_lists_known(fake_host, run_module):
    fake_host(FakeInstance('IRIS'), FakeInstance('CACHE', 'cache'))
    failed, r = run_module(vmware_stun_info, {'paths': [SEED], 'instance': 'PROD'})
    assert failed and r['msg'] == "unknown instance 'PROD' (known: IRIS, CACHE)"
