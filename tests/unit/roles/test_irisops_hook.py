# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The hook program of the hooks role (roles/hooks/files/irisops_hook.py) against the fake IRIS host: freeze/thaw
pairs through the freeze engine (lease in the state file, validity at the thaw), VMware nesting, refusal of
another freezer's lease, a thaw after the switch fired, a failed freeze rolled back, configuration errors.  The
molecule scenario `hooks` runs it end to end with the real frameworks' simulators."""

from __future__ import absolute_import, division, print_function

import json
import os
import signal
import sys

import pytest

from ansible_collections.irisops.backup.plugins.module_utils import _freeze
from ansible_collections.irisops.backup.plugins.module_utils import _iris
from ansible_collections.irisops.backup.tests.unit.plugins.iris_fakes import FakeHost, FakeInstance
from ansible_collections.irisops.backup.tests.unit.repo_scripts import load_script

__metaclass__ = type

hook = load_script('irisops_hook_under_test', 'roles/hooks/files/irisops_hook.py')


@pytest.fixture
def rig(monkeypatch, tmp_path):
    """IRIS and CACHE on the fake host; the engine the hook imports is the collection's (patched) one."""
    iris = FakeInstance('IRIS', manager_user='root')
    cache = FakeInstance('CACHE', flavour='cache', manager_user='root')
    host = FakeHost([iris, cache])
    monkeypatch.setattr(_iris, 'subprocess_runner', host)
    monkeypatch.setattr(_iris, 'find_executable', lambda name, which=None, extra_dirs=None: host.which(name))
    monkeypatch.setattr(_iris, '_read_text', host.read_file)
    base = str(tmp_path / 'state')
    monkeypatch.setattr(_freeze, 'state_dir', lambda create=True: _freeze.secure_dir(base) if create else base)
    monkeypatch.setattr(_freeze, 'use_systemd', lambda *a, **k: True)
    # `import _iris` / `import _freeze` in the hook's import_engine get these module objects
    monkeypatch.setitem(sys.modules, '_iris', _iris)
    monkeypatch.setitem(sys.modules, '_freeze', _freeze)
    conf = tmp_path / 'hook.conf'
    conf.write_text('[irisops-hook]\nlog_file = %s\nstate_dir = %s\nsyslog = false\ndeadman_timeout = 60\n'
                    % (tmp_path / 'hook.log', tmp_path / 'hookstate'))
    return host, iris, cache, str(conf), tmp_path, base


def run(rig, caller, action, *extra):
    host, iris, cache, conf, tmp_path, base = rig
    return hook.main(['--config', conf, '--caller', caller, '--quiet'] + list(extra) + [action])


def log(rig):
    return (rig[4] / 'hook.log').read_text()


def state(rig, caller):
    path = rig[4] / 'hookstate' / ('%s.json' % caller)
    return json.loads(path.read_text()) if path.exists() else None


def test_freeze_holds_a_lease_and_the_thaw_checks_and_releases_it(rig):
    host, iris, cache = rig[:3]
    assert run(rig, 'generic', 'freeze') == 0, log(rig)
    st = state(rig, 'generic')
    assert iris.frozen and cache.frozen and sorted(st['frozen']) == ['CACHE', 'IRIS'] and st['lease'] and st['run_id']
    assert 'dead-man switch armed' in log(rig) and 'Freeze finished: frozen' in log(rig)
    assert 'Completed freeze of IRIS' in log(rig) and 'Completed freeze of CACHE' in log(rig)
    assert run(rig, 'generic', 'thaw') == 0, log(rig)
    assert not iris.frozen and not cache.frozen and state(rig, 'generic') is None
    assert _freeze.run_validity(st['run_id'], rig[5])[0] is True
    assert 'Thaw finished: thawed' in log(rig)


def test_a_thaw_under_a_signal_finishes_records_nothing_and_fails(rig, monkeypatch):
    """SIGTERM while ExternalThaw runs (the backup product gave up): both instances are thawed all the same, the
    backup is not recorded (ExternalSetHistory may purge journals) and the hook exits 1, saying why."""
    host, iris, cache = rig[:3]
    assert run(rig, 'generic', 'freeze') == 0, log(rig)
    real = _iris.thaw

    def thaw_then_signal(*args, **kwargs):
        out = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return out
    monkeypatch.setattr(_iris, 'thaw', thaw_then_signal)
    assert run(rig, 'generic', '--set-history', 'thaw') == 1, log(rig)
    assert not iris.frozen and not cache.frozen and state(rig, 'generic') is None
    assert 'interrupted by SIGTERM' in log(rig) and 'the thaw was finished first' in log(rig)
    assert 'backup NOT recorded (ExternalSetHistory): the thaw was interrupted by SIGTERM' in log(rig)
    assert 'Thaw finished: INTERRUPTED by SIGTERM after thawing' in log(rig)
    assert not host.session_calls('IRIS', 'ExternalSetHistory')


def test_another_freezer_is_refused_while_the_lease_lives(rig):
    host, iris, cache = rig[:3]
    assert run(rig, 'generic', 'freeze') == 0
    assert run(rig, 'azure', 'freeze') == 1
    assert 'leased to irisops-hook:generic' in log(rig) and 'Freeze finished: FAILED' in log(rig)
    assert len(host.session_calls('IRIS', 'ExternalFreeze')) == 1
    # azure's thaw has nothing of its own to thaw, and leaves generic's freeze alone
    assert run(rig, 'azure', 'thaw') == 0
    assert iris.frozen and cache.frozen
    assert run(rig, 'generic', 'thaw') == 0 and not iris.frozen


def test_vmware_legacy_and_backupscripts_nest(rig):
    host, iris, cache = rig[:3]
    assert run(rig, 'vmware-legacy', 'freeze') == 0
    assert run(rig, 'vmware-backupscripts', 'freeze') == 0
    assert state(rig, 'vmware-backupscripts')['nested_in'] == 'irisops-hook:vmware-legacy'
    assert 'nested inside the freeze of irisops-hook:vmware-legacy' in log(rig)
    assert run(rig, 'vmware-backupscripts', 'thaw') == 0
    assert iris.frozen and cache.frozen          # the nested thaw thaws nothing
    assert run(rig, 'vmware-legacy', 'thaw') == 0
    assert not iris.frozen and not cache.frozen
    assert len(host.session_calls('IRIS', 'ExternalFreeze')) == 1


def test_a_thaw_after_the_switch_fired_reports_an_invalid_backup(rig):
    host, iris, cache, conf, tmp_path, base = rig
    assert run(rig, 'generic', 'freeze') == 0
    os.unlink(os.path.join(base, 'deadman', 'IRIS.json'))      # the switch fired and thawed IRIS
    iris.frozen = False
    assert run(rig, 'generic', 'thaw') == 1
    assert 'BACKUP INVALID' in log(rig) and 'IRIS' in log(rig) and not cache.frozen


def test_set_history_records_only_an_intact_freeze(rig):
    host, iris, cache, conf, tmp_path, base = rig
    assert run(rig, 'generic', 'freeze') == 0
    assert run(rig, 'generic', 'thaw', '--set-history') == 0
    assert iris.history == [''] and cache.history == ['']
    assert run(rig, 'generic', 'freeze') == 0
    os.unlink(os.path.join(base, 'deadman', 'CACHE.json'))
    cache.frozen = False
    assert run(rig, 'generic', 'thaw', '--set-history') == 1
    assert iris.history == [''] and cache.history == [''], 'nothing recorded for a torn freeze'
    assert 'backup NOT recorded (ExternalSetHistory): the freeze was not intact' in log(rig)


def test_a_failed_freeze_is_rolled_back_and_leaves_nothing(rig):
    host, iris, cache, conf, tmp_path, base = rig
    cache.freeze_rc = 3
    cache.freeze_delay = 0.2
    assert run(rig, 'generic', 'freeze') == 1
    assert not iris.frozen and not cache.frozen
    assert 'no instance is left frozen by this run' in log(rig)
    assert 'Completed freeze of' not in log(rig)       # the legacy scripts' line is only for what was frozen
    assert not [f for f in os.listdir(os.path.join(base, 'deadman')) if f.endswith('.json')]
    assert not os.path.exists(os.path.join(base, _freeze.OWNER_NAME))


def test_a_thaw_without_state_leaves_a_leased_freeze_alone(rig):
    """A hook thaw with no state file used to thaw every frozen instance, another run's freeze included."""
    host, iris, cache, conf, tmp_path, base = rig
    engine = _freeze.FreezeEngine(list(_iris.discover_instances()[0]), 'iris_freeze',
                                  {'deadman_timeout': 60}, run_id='other')
    assert not engine.hold()['failed'] and iris.frozen
    assert run(rig, 'generic', 'thaw', '--warning-rc', '2') == 2
    assert iris.frozen and cache.frozen and 'frozen by another freezer and left to it' in log(rig)
    # --force: the operator knows the other freezer is gone
    assert run(rig, 'manual', 'thaw', '--force') == 0
    assert not iris.frozen and not cache.frozen


def test_a_bad_configuration_freezes_nothing(rig, tmp_path):
    host, iris, cache, conf, tmp_path, base = rig
    bad = tmp_path / 'bad.conf'
    bad.write_text('[irisops-hook]\nsession_timeout = soon\n')
    assert hook.main(['--config', str(bad), '--caller', 'generic', '--quiet', 'freeze']) == 1
    assert host.session_calls() == [] and not iris.frozen


# --exit-codes aws-dlm: the codes of AWS's DLM sample SSM documents (201 pre failed, 202 post failed, 203 auto
# thaw before the post, 205 post without pre, 206 not ready); the log keeps the usual line and says which code.

def test_aws_dlm_codes_of_a_normal_pair_are_zero(rig):
    host, iris, cache = rig[:3]
    assert run(rig, 'aws-dlm', 'freeze', '--exit-codes', 'aws-dlm') == 0
    assert iris.frozen and cache.frozen
    assert run(rig, 'aws-dlm', 'thaw', '--exit-codes', 'aws-dlm') == 0
    assert not iris.frozen and not cache.frozen and 'exit status' not in log(rig)


def test_aws_dlm_a_freeze_that_was_attempted_and_failed_is_201(rig):
    host, iris, cache = rig[:3]
    cache.freeze_rc = 3
    assert run(rig, 'aws-dlm', 'freeze', '--exit-codes', 'aws-dlm') == 201
    assert not iris.frozen and not cache.frozen
    assert 'exit status 201 for aws-dlm (outcome freeze_failed)' in log(rig)


def test_aws_dlm_nothing_attempted_is_206(rig):
    host, iris, cache = rig[:3]
    # another freezer holds the host freeze lock: refused before any ExternalFreeze
    assert run(rig, 'generic', 'freeze') == 0
    assert run(rig, 'aws-dlm', 'freeze', '--exit-codes', 'aws-dlm') == 206
    assert len(host.session_calls('IRIS', 'ExternalFreeze')) == 1
    assert run(rig, 'generic', 'thaw') == 0
    # a named instance that does not exist
    assert run(rig, 'aws-dlm', 'freeze', '--exit-codes', 'aws-dlm', '--instances', 'NOSUCH') == 206
    assert 'outcome not_ready' in log(rig) and not iris.frozen


def test_aws_dlm_a_bad_configuration_is_206_for_the_pre_and_202_for_the_post(rig, tmp_path):
    bad = tmp_path / 'bad.conf'
    bad.write_text('[irisops-hook]\nsession_timeout = soon\n')
    args = ['--config', str(bad), '--caller', 'aws-dlm', '--quiet', '--exit-codes', 'aws-dlm']
    assert hook.main(args + ['freeze']) == 206
    assert hook.main(args + ['thaw']) == 202


def test_aws_dlm_a_post_without_pre_is_205(rig):
    host, iris, cache = rig[:3]
    assert run(rig, 'aws-dlm', 'thaw', '--exit-codes', 'aws-dlm') == 205
    assert 'exit status 205 for aws-dlm (outcome no_freeze)' in log(rig)
    # without the table the same thaw is a success with a warning
    assert run(rig, 'aws-dlm', 'thaw', '--warning-rc', '2') == 2


def test_aws_dlm_a_post_after_the_switch_was_due_is_203_else_202(rig):
    host, iris, cache, conf, tmp_path, base = rig
    assert run(rig, 'aws-dlm', 'freeze', '--exit-codes', 'aws-dlm') == 0
    path = tmp_path / 'hookstate' / 'aws-dlm.json'
    st = json.loads(path.read_text())
    st['deadman'] = dict((n, '2001-01-01T00:00:00Z') for n in st['deadman'])   # due long ago
    path.write_text(json.dumps(st))
    os.unlink(os.path.join(base, 'deadman', 'IRIS.json'))      # the switch fired and thawed IRIS
    iris.frozen = False
    assert run(rig, 'aws-dlm', 'thaw', '--exit-codes', 'aws-dlm') == 203
    assert 'BACKUP INVALID' in log(rig) and 'outcome switch_fired' in log(rig) and not cache.frozen
    # the same torn freeze with its switches not due yet (the write daemon resumed by someone else): 202
    assert run(rig, 'aws-dlm', 'freeze', '--exit-codes', 'aws-dlm') == 0
    iris.frozen = False
    assert run(rig, 'aws-dlm', 'thaw', '--exit-codes', 'aws-dlm') == 202


def test_switch_was_due_reads_the_fires_at_of_the_state():
    due = hook.Hook._switch_was_due
    assert due({'deadman': {'IRIS': '2026-01-01T00:00:10Z'}}, now=1767225610) is True
    assert due({'deadman': {'IRIS': '2026-01-01T00:00:11Z'}}, now=1767225610) is False
    assert due({'deadman': {'IRIS': 'garbage'}}) is False and due(None) is False and due({}) is False
