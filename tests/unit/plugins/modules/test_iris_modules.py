# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Argument handling and behaviour of the four modules against a fake host command line."""

from __future__ import absolute_import, division, print_function

import os

import pytest

from ansible_collections.irisops.backup.plugins.modules import iris_freeze, iris_instance_info, iris_set_history, \
    iris_thaw
from ansible_collections.irisops.backup.tests.unit.plugins.iris_fakes import FakeInstance

__metaclass__ = type

DOWN = 'down, last used Mon Nov 23 09:00:00 2026'


def _two():
    return FakeInstance('IRIS'), FakeInstance('CACHE', 'cache')


# ---------------------------------------------------------------------------------------------------------------
# iris_freeze
# ---------------------------------------------------------------------------------------------------------------

def test_freeze_one_then_idempotent(fake_host, run_module):
    iris, cache = _two()
    host = fake_host(iris, cache)
    failed, r = run_module(iris_freeze, {'instances': 'iris'})
    assert not failed and r['changed'] and r['frozen'] == ['IRIS'] and r['instances'] == ['IRIS']
    res = r['instance_results']['IRIS']
    assert res['journal_file'].startswith('/usr/irissys/mgr/journal/')
    assert res['marker_offset'] == 262272 and res['frozen_at'] and res['duration_ms'] >= 0
    assert 'System suspended' in res['log']
    assert iris.frozen and not cache.frozen
    assert r['lease']['token'] and r['lease']['run_id'] == r['run_id'] and r['lease']['until']
    # a second freezer while the first one holds its lease is refused, naming the holder; nothing is frozen again
    failed, r2 = run_module(iris_freeze, {'instances': ['IRIS']})
    assert failed and not r2['changed'] and r2['msg'].startswith('nothing frozen: the host freeze lock')
    assert 'leased to iris_freeze' in r2['msg'] and r['run_id'] in r2['msg'] and 'Next:' in r2['msg']
    assert len(host.session_calls('IRIS', 'ExternalFreeze')) == 1


def test_freeze_of_an_instance_frozen_outside_the_collection_is_ok_not_changed(fake_host, run_module):
    iris, cache = _two()
    iris.frozen = True            # frozen by hand (no lease): reported, left alone, not held by this task
    host = fake_host(iris, cache)
    failed, r = run_module(iris_freeze, {'instances': ['IRIS']})
    assert not failed and not r['changed'] and r['instance_results']['IRIS']['already_frozen']
    assert r['frozen'] == [] and 'lease' not in r
    assert host.session_calls('IRIS', 'ExternalFreeze') == []


def test_freeze_all_means_running_ones(fake_host, run_module):
    iris, cache = _two()
    down = FakeInstance('OLD', status=DOWN)
    host = fake_host(iris, cache, down)
    failed, r = run_module(iris_freeze, {'instances': 'all'}, diff=True)
    assert not failed and sorted(r['frozen']) == ['CACHE', 'IRIS']
    assert iris.frozen and cache.frozen and not down.frozen
    assert not host.session_calls('OLD')
    assert r['diff']['before']['IRIS'] == {'frozen': False} and r['diff']['after']['IRIS'] == {'frozen': True}


def test_freeze_check_mode_freezes_nothing(fake_host, run_module):
    iris, cache = _two()
    host = fake_host(iris, cache)
    failed, r = run_module(iris_freeze, {'instances': ['IRIS', 'CACHE']}, check_mode=True)
    assert not failed and r['changed'] and sorted(r['frozen']) == ['CACHE', 'IRIS']
    assert not iris.frozen and not cache.frozen
    assert not host.session_calls(method='ExternalFreeze')
    cache.frozen = True
    failed, r = run_module(iris_freeze, {'instances': ['CACHE']}, check_mode=True)
    assert not failed and not r['changed'] and r['instance_results']['CACHE']['already_frozen']


def test_freeze_unknown_instance_lists_known_and_freezes_nothing(fake_host, run_module):
    iris, cache = _two()
    host = fake_host(iris, cache)
    failed, r = run_module(iris_freeze, {'instances': ['IRIS', 'NOPE']})
    assert failed
    assert "unknown instance 'NOPE'" in r['msg'] and 'IRIS' in r['msg'] and 'CACHE' in r['msg']
    assert 'nothing frozen' in r['msg']
    assert not host.session_calls()
    assert not iris.frozen


def test_freeze_down_instance_fails_before_anything(fake_host, run_module):
    iris = FakeInstance('IRIS')
    down = FakeInstance('CACHE', 'cache', status=DOWN)
    host = fake_host(iris, down)
    failed, r = run_module(iris_freeze, {'instances': ['IRIS', 'CACHE']})
    assert failed and 'CACHE is down' in r['msg'] and 'ccontrol start CACHE' in r['msg']
    assert not host.session_calls()


def test_freeze_one_of_two_fails_leaves_none_frozen(fake_host, run_module):
    iris, cache = _two()
    cache.freeze_rc = 3
    fake_host(iris, cache)
    failed, r = run_module(iris_freeze, {'instances': 'all'})
    assert failed
    assert not iris.frozen and not cache.frozen
    assert 'CACHE' in r['msg'] and 'Thawed again: IRIS' in r['msg']
    assert r['rolled_back']['IRIS']['failed'] is False
    assert r['frozen'] == []


@pytest.mark.parametrize('args, text', [
    ({'external_freeze_timeout': 0}, 'external_freeze_timeout must be a positive'),
    ({'wd_suspend_limit': -5}, 'wd_suspend_limit must be a positive'),
    ({'timeout': 0}, 'timeout must be a positive'),
    ({'username': 'backup'}, 'username and password must be given together'),
    ({'text': 'two\nlines'}, 'control characters'),
    ({'run_as': 'no-such-user-here'}, 'does not exist'),
    ({'log_file': '/nonexistent-dir/freeze.log'}, 'does not exist'),
])
def test_freeze_malformed_options(fake_host, run_module, args, text):
    iris, cache = _two()
    host = fake_host(iris, cache)
    a = {'instances': 'IRIS'}
    a.update(args)
    failed, r = run_module(iris_freeze, a)
    assert failed and text in r['msg'] and 'nothing frozen' in r['msg']
    assert not host.session_calls(method='ExternalFreeze') and not iris.frozen


def test_freeze_type_errors_are_rejected_by_argspec(fake_host, run_module):
    fake_host(*_two())
    failed, r = run_module(iris_freeze, {'instances': 'IRIS', 'external_freeze_timeout': 'ten'})
    assert failed and 'external_freeze_timeout' in r['msg']
    failed, r = run_module(iris_freeze, {})
    assert failed and 'instances' in r['msg']


def test_freeze_password_on_stdin_and_hidden(fake_host, run_module):
    iris, cache = _two()
    iris.require_password = ('backup', 'Top$ecret')
    host = fake_host(iris, cache)
    failed, r = run_module(iris_freeze, {'instances': 'IRIS', 'username': 'backup', 'password': 'Top$ecret'})
    assert not failed and iris.frozen
    freeze_call = host.session_calls('IRIS', 'ExternalFreeze')[0]
    assert freeze_call['data'] == 'backup\nTop$ecret\n'
    assert not any('Top$ecret' in a for a in freeze_call['argv'])
    assert 'Top$ecret' not in repr(r)


def test_freeze_login_refused_message(fake_host, run_module):
    iris, cache = _two()
    iris.login_refused = True
    fake_host(iris, cache)
    failed, r = run_module(iris_freeze, {'instances': 'IRIS'})
    assert failed and 'IRIS' in r['msg'] and 'login refused' in r['msg'] and r['msg'].startswith('nothing frozen')
    assert 'iris session IRIS' in r['msg'] or '/usr/bin/iris session IRIS' in r['msg']


# ---------------------------------------------------------------------------------------------------------------
# iris_thaw
# ---------------------------------------------------------------------------------------------------------------

def test_thaw_frozen_then_idempotent(fake_host, run_module):
    iris, cache = _two()
    iris.frozen = True
    host = fake_host(iris, cache)
    failed, r = run_module(iris_thaw, {'instances': 'all'}, diff=True)
    assert not failed and r['changed'] and r['thawed'] == ['IRIS']
    assert r['instance_results']['IRIS']['thawed_by'] == 'ExternalThaw'
    assert r['instance_results']['CACHE']['changed'] is False
    assert r['diff']['before']['IRIS'] == {'frozen': True} and r['diff']['after']['IRIS'] == {'frozen': False}
    assert not iris.frozen
    failed, r = run_module(iris_thaw, {'instances': 'all'})
    assert not failed and not r['changed']
    assert len(host.session_calls(method='ExternalThaw')) == 1


def test_thaw_check_mode(fake_host, run_module):
    iris, cache = _two()
    iris.frozen = True
    host = fake_host(iris, cache)
    failed, r = run_module(iris_thaw, {'instances': 'IRIS'}, check_mode=True)
    assert not failed and r['changed'] and r['thawed'] == ['IRIS'] and iris.frozen
    assert not host.session_calls(method='ExternalThaw')


def test_thaw_hang_then_stat_fallback(fake_host, run_module):
    iris, cache = _two()
    cache.frozen = True
    cache.thaw_hang = True
    fake_host(iris, cache)
    # stat_fallback off: the hung ExternalThaw leaves it frozen, and the message says how to get out
    failed, r = run_module(iris_thaw, {'instances': 'CACHE', 'timeout': 2, 'stat_fallback': False})
    assert failed and cache.frozen and 'stat_fallback=true' in r['msg'] and r['still_frozen'] == ['CACHE']
    # the default (true, from the IRIS rule that a session cannot sign on past ExternalFreezeTimeOut)
    failed, r = run_module(iris_thaw, {'instances': 'CACHE', 'timeout': 2})
    assert not failed and not cache.frozen
    assert r['instance_results']['CACHE']['thawed_by'] == 'stat -W'


def test_thaw_with_a_log_file_in_a_missing_directory_warns_and_thaws(fake_host, run_module, tmp_path):
    iris, cache = _two()
    iris.frozen = True
    fake_host(iris, cache)
    missing = str(tmp_path / 'nope' / 'thaw.log')
    failed, r = run_module(iris_thaw, {'instances': 'IRIS', 'log_file': missing})
    assert not failed and r['changed'] and not iris.frozen
    texts = [w if isinstance(w, str) else w.get('event', w).get('msg', '') for w in r.get('warnings', [])]
    assert any('log_file: directory %s does not exist; thawing without it' % (tmp_path / 'nope') in t for t in texts)


# ---------------------------------------------------------------------------------------------------------------
# iris_set_history
# ---------------------------------------------------------------------------------------------------------------

def test_set_history_refuses_a_log_file_in_a_missing_directory(fake_host, run_module, tmp_path):
    inst, files = _journal_instance(tmp_path)
    host = fake_host(inst)
    failed, r = run_module(iris_set_history, {'instances': 'IRIS', 'backup_completed': True,
                                              'log_file': str(tmp_path / 'nope' / 'h.log')})
    assert failed and r['msg'] == 'nothing recorded: log_file: directory %s does not exist' % (tmp_path / 'nope')
    assert host.calls == [] and inst.history == []


def _journal_instance(tmp_path):
    inst = FakeInstance('IRIS', install_dir=str(tmp_path / 'irissys'))
    jdir = tmp_path / 'irissys' / 'mgr' / 'journal'
    jdir.mkdir(parents=True)
    files = []
    for n in (1, 2, 3):
        p = jdir / ('20261123.%03d' % n)
        p.write_text('j')
        files.append(str(p))
    (jdir / 'not-a-journal.txt').write_text('x')
    return inst, files


def test_set_history_requires_backup_completed(fake_host, run_module, tmp_path):
    inst, files = _journal_instance(tmp_path)
    host = fake_host(inst)
    failed, r = run_module(iris_set_history, {'instances': 'IRIS'})
    assert failed and 'backup_completed' in r['msg'] and 'purge' in r['msg']
    assert host.calls == [] and inst.history == []


def test_set_history_refuses_while_frozen(fake_host, run_module, tmp_path):
    inst, files = _journal_instance(tmp_path)
    inst.frozen = True
    fake_host(inst)
    failed, r = run_module(iris_set_history, {'instances': 'IRIS', 'backup_completed': True})
    assert failed and 'still frozen' in r['msg'] and inst.history == []


def test_set_history_records_and_reports_purge(fake_host, run_module, tmp_path):
    inst, files = _journal_instance(tmp_path)
    inst.purge_files = files[:1]
    fake_host(inst)
    failed, r = run_module(iris_set_history, {'instances': 'IRIS', 'backup_completed': True, 'text': 'snap-1'},
                           diff=True)
    assert not failed and r['changed'] and r['recorded'] == ['IRIS'] and inst.history == ['snap-1']
    res = r['instance_results']['IRIS']
    assert res['backups_before_purge'] == 2
    assert res['journal_files_before'] == files
    assert res['journal_files_after'] == files[1:]
    assert res['journal_files_purged'] == files[:1]
    assert 'purged' in res['msg']
    assert r['diff']['before']['IRIS']['journal_files'] == files
    assert not os.path.exists(files[0])


def test_set_history_check_mode_records_nothing(fake_host, run_module, tmp_path):
    inst, files = _journal_instance(tmp_path)
    host = fake_host(inst)
    failed, r = run_module(iris_set_history, {'instances': 'IRIS', 'backup_completed': True}, check_mode=True)
    assert not failed and r['changed'] and inst.history == []
    assert not host.session_calls(method='ExternalSetHistory')


# ---------------------------------------------------------------------------------------------------------------
# iris_instance_info
# ---------------------------------------------------------------------------------------------------------------

def test_instance_info_all(fake_host, run_module):
    iris, cache = _two()
    down = FakeInstance('OLD', status=DOWN)
    cache.frozen = True
    host = fake_host(iris, cache, down)
    failed, r = run_module(iris_instance_info, {}, check_mode=True)
    assert not failed and not r['changed']
    by = dict((i['name'], i) for i in r['instances'])
    assert set(by) == {'IRIS', 'CACHE', 'OLD'}
    assert by['IRIS']['frozen'] is False and by['CACHE']['frozen'] is True and by['OLD']['frozen'] is None
    assert by['CACHE']['flavour'] == 'cache' and by['IRIS']['flavour'] == 'iris'
    assert by['IRIS']['manager_user'] == 'root' and by['IRIS']['owner_user'] == 'irisusr'
    assert by['IRIS']['journal_dirs'] and by['IRIS']['database_dirs']
    for field in ('name', 'install_dir', 'version', 'status_raw', 'cpf_file', 'superserver_port', 'webserver_port',
                  'jdbc_port', 'state', 'product', 'mirror_member_type', 'mirror_status', 'data_dir'):
        assert field in by['IRIS']
    assert not host.session_calls('OLD')
    assert not host.session_calls(method='External')  # read only


def test_instance_info_name_and_no_session(fake_host, run_module):
    host = fake_host(*_two())
    failed, r = run_module(iris_instance_info, {'name': 'cache', 'check_frozen': False})
    assert not failed and [i['name'] for i in r['instances']] == ['CACHE']
    assert r['instances'][0]['frozen'] is None
    assert not host.session_calls()
    failed, r = run_module(iris_instance_info, {'name': 'NOPE'})
    assert failed and 'IRIS' in r['msg'] and 'CACHE' in r['msg']


def test_instance_info_login_refused_reported_not_fatal(fake_host, run_module):
    iris, cache = _two()
    iris.login_refused = True
    fake_host(iris, cache)
    failed, r = run_module(iris_instance_info, {})
    assert not failed
    by = dict((i['name'], i) for i in r['instances'])
    assert by['IRIS']['frozen'] is None and 'login refused' in by['IRIS']['frozen_error']
    assert by['CACHE']['frozen'] is False
