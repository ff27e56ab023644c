# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The module iris_restore: a thin wrapper of the restore engine (_restore.py), against the fake host and the REAL
restic repository of test_restore.py (its world: a verified backup, shipped journals, production written on after
the backup, USER damaged)."""

from __future__ import absolute_import, division, print_function

import json
import os
import signal

import pytest

from ansible_collections.irisops.backup.plugins.module_utils import _restore
from ansible_collections.irisops.backup.plugins.modules import iris_restore
# the world of the engine's tests: its fixtures (template_repo, built, world: pytest finds them here) and helpers
from ansible_collections.irisops.backup.tests.unit.plugins.module_utils.test_restore import (  # pylint: disable=unused-import
    DOWN, HOST, RESTIC, RUNNING, _load, _update, asides, assert_restored, built, drive, leftovers, production,
    template_repo, world)

__metaclass__ = type

pytestmark = pytest.mark.skipif(RESTIC is None, reason='restic is not installed (tests/setup.sh installs it)')


@pytest.fixture
def rig(world, monkeypatch, tmp_path):
    """The world, the engine's state directory in it, and a configuration file as the lvm_backup role writes it."""
    monkeypatch.setattr(_restore, 'STATE_DIR', world.state_dir)
    cfgfile = tmp_path / 'backup.json'
    cfgfile.write_text(json.dumps({'repository': world.repo, 'repository_password_file': world.pw, 'host': HOST,
                                   'restic_cache_dir': world.cache}))
    world.args = {'config_file': str(cfgfile), 'instance': 'IRIS'}
    return world


def state_file(w):
    return os.path.join(w.state_dir, 'IRIS.json')


@pytest.mark.parametrize('confirm', [None, 'IRIS2'])
def test_refused_without_the_confirmation(rig, run_module, confirm):
    before = production(rig)
    args = dict(rig.args)
    if confirm is not None:
        args['confirm'] = confirm
    failed, res = run_module(iris_restore, args)
    assert failed and res['changed'] is False
    assert res['msg'].startswith('restore of instance IRIS failed: nothing restored: a restore replaces the databases '
                                 'and journals of instance IRIS and needs the confirmation IRIS'), res['msg']
    assert 'Next: run it again with --confirm IRIS (iris_restore: confirm: IRIS)' in res['msg']
    assert res['report']['actions'] == [] and 'FAILED: nothing restored' in res['report_text']
    assert production(rig) == before and rig.calls_of() == [] and not os.path.exists(rig.state_dir)


def test_refused_while_the_instance_runs(rig, run_module):
    _update(rig.fakehost, status=RUNNING)
    before = production(rig)
    failed, res = run_module(iris_restore, dict(rig.args, confirm='iris'))
    assert failed and res['changed'] is False
    assert "nothing restored: instance IRIS is running (qlist: 'running, since" in res['msg'], res['msg']
    assert production(rig) == before and rig.calls_of() == [] and not os.path.exists(state_file(rig))


def test_check_mode_reports_the_plan_and_changes_nothing(rig, run_module):
    before = production(rig)
    failed, res = run_module(iris_restore, dict(rig.args, confirm='IRIS', backup='r1'), check_mode=True)
    assert not failed, res['msg']
    assert res['changed'] is True and res['report']['status'] == 'planned'
    assert res['msg'].startswith('check mode: would restore backup %s of IRIS (journals from %s/20261207.002 on)' % (
        res['report']['backup_id'][:8], rig.jrn)), res['msg']
    units = res['report']['units']
    assert sorted(u['dir'] for u in units) == sorted(rig.units)
    assert all(u['aside'].startswith(u['dir'] + _restore.ASIDE_INFIX) for u in units)
    for u in units:
        assert 'plan: %s (' % u['dir'] in res['report_text'] and u['aside'] in res['report_text']
    assert 'nothing was changed on this host' in res['report_text']
    assert res['report']['actions'] == []
    assert production(rig) == before and leftovers(rig) == [] and asides(rig) == {}
    assert rig.calls_of() == [] and not os.path.exists(state_file(rig)) and _load(rig.fakehost)['status'] == DOWN


def test_check_mode_without_the_confirmation_fails_after_the_plan(rig, run_module):
    failed, res = run_module(iris_restore, rig.args, check_mode=True)
    assert failed and res['changed'] is False
    assert res['msg'].startswith('restore of instance IRIS failed (check mode, nothing was changed): nothing '
                                 'restored: a restore replaces'), res['msg']
    assert res['report']['plan'] and rig.calls_of() == []


def test_a_restore_reports_changed_and_where_the_old_files_are(rig, run_module):
    original = production(rig)
    failed, res = run_module(iris_restore, dict(rig.args, confirm='IRIS'))
    assert not failed, res['msg']
    assert res['changed'] is True and res['report']['status'] == 'success'
    assert_restored(rig, original)
    asides_reported = sorted(a['aside'] for a in res['report']['aside'])
    assert len(asides_reported) == len(rig.units)
    assert res['msg'].startswith('backup %s of IRIS restored, rolled forward to ' % res['report']['backup_id'][:8])
    assert res['msg'].endswith('the previous files are kept in %s' % ', '.join(
        a['aside'] for a in res['report']['aside']))
    assert 'irisops-backup restore of IRIS on %s: SUCCESS' % HOST in res['report_text']
    assert [c['kind'] for c in rig.calls_of()] == ['start', 'journal_restore', 'integrity']
    # one Ansible warning per aside copy (a string, or a dict since ansible-core 2.19)
    warned = [json.dumps(w) for w in res.get('warnings', [])]
    assert len([w for w in warned if 'delete them (rm -rf' in w]) == len(rig.units), warned


def test_a_failed_restore_is_rolled_back_and_fails(rig, run_module):
    before = production(rig)
    _update(rig.fakehost, integrity_fail=True)
    failed, res = run_module(iris_restore, dict(rig.args, confirm='IRIS'))
    assert failed and res['changed'] is True          # it renamed and renamed back: said in report.actions
    assert res['msg'].startswith('restore of instance IRIS failed: the integrity check of the restored databases '
                                 'failed'), res['msg']
    assert 'production directories of IRIS are as they were before restore' in res['report_text']
    assert production(rig) == before and leftovers(rig) == [] and asides(rig) == {}
    assert _load(rig.fakehost)['status'] == DOWN


def test_recover_only_without_an_interrupted_restore_changes_nothing(rig, run_module):
    before = production(rig)
    for check_mode in (True, False):
        failed, res = run_module(iris_restore, dict(rig.args, confirm='IRIS', recover_only=True),
                                 check_mode=check_mode)
        assert not failed and res['changed'] is False, res
        assert res['msg'] == ('check mode: no unfinished restore of IRIS' if check_mode
                              else 'no unfinished restore of IRIS'), res['msg']
    assert production(rig) == before and rig.calls_of() == []


def test_recover_only_rolls_back_a_killed_restore(rig, run_module):
    """A restore SIGKILLed in the middle of the swap (a subprocess, as in the engine's kill test): check mode says it
    would roll it back and changes nothing; recover_only rolls it back, production as before, byte for byte."""
    original = production(rig)
    rc, _rep = drive(rig.base, kill_at='swap:3')
    assert rc == -signal.SIGKILL and os.path.exists(state_file(rig))
    killed = production(rig)
    assert killed != original                         # half swapped
    failed, res = run_module(iris_restore, dict(rig.args, confirm='IRIS', recover_only=True), check_mode=True)
    assert not failed and res['changed'] is True, res
    assert res['msg'].startswith('check mode: would roll back the interrupted restore '), res['msg']
    assert res['report']['unfinished']['phase'] == 'swap'
    assert production(rig) == killed and os.path.exists(state_file(rig))
    failed, res = run_module(iris_restore, dict(rig.args, confirm='IRIS', recover_only=True))
    assert not failed and res['changed'] is True, res
    assert res['report']['recovered']['action'] == 'rolled back'
    assert res['msg'].startswith('rolled back the interrupted restore '), res['msg']
    assert production(rig) == original and leftovers(rig) == [] and asides(rig) == {}
    assert not os.path.exists(state_file(rig)) and rig.calls_of('start') == []


def test_an_unreadable_config_file_is_refused(rig, run_module, tmp_path):
    failed, res = run_module(iris_restore, dict(rig.args, confirm='IRIS', config_file=str(tmp_path / 'none.json')))
    assert failed and res['msg'].startswith('nothing restored: cannot read config_file %s' % (tmp_path / 'none.json'))
    assert 'Next: apply the role irisops.backup.lvm_backup' in res['msg'] and rig.calls_of() == []
