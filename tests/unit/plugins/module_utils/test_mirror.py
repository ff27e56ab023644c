# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The choice of the member of each mirror set a fleet backup freezes (_mirror.plan) and its filter."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.irisops.backup.plugins.module_utils import _mirror

ROLES = {'primary': ('Failover', 'Primary'), 'backup': ('Failover', 'Backup'),
         'async': ('Disaster Recovery', 'Connected'), 'reporting': ('Read-Only Reporting', 'Connected'),
         'catchup': ('Failover', 'Synchronizing')}


def member(name, role, running=True, distance=1, mirror='PRODSET'):
    mtype, status = ROLES[role]
    return {'name': name, 'mirror_member_type': mtype, 'mirror_status': status, 'mirror_name': mirror,
            'ready': running, 'status_raw': 'running, since today' if running else 'down, last used today',
            'mirror_journal_distance': distance if running else None}


def fleet(a='primary', b='backup', c='async', **kw):
    return {'h1': [member('IRIS', a, **kw.get('h1', {}))], 'h2': [member('IRIS', b, **kw.get('h2', {}))],
            'h3': [member('IRIS', c, **kw.get('h3', {}))]}


def chosen_hosts(res):
    return sorted(h for h, names in res['instances'].items() if names)


def test_the_backup_member_is_chosen_and_the_others_skipped():
    res = _mirror.plan(fleet())
    assert res['errors'] == []
    assert res['instances'] == {'h1': [], 'h2': ['IRIS'], 'h3': []}
    assert [s['instance'] for s in res['skipped']['h1']] == ['IRIS']
    assert 'backed up from IRIS on h2' in res['skipped']['h3'][0]['why']
    assert res['mirrors'][0]['chosen']['role'] == 'backup'
    assert any('back up IRIS on h2 (the backup failover member, caught up)' in ln for ln in res['report'])


def test_after_a_failover_the_new_backup_member_is_chosen():
    assert chosen_hosts(_mirror.plan(fleet(a='backup', b='primary'))) == ['h1']


@pytest.mark.parametrize('fallback', _mirror.FALLBACKS)
@pytest.mark.parametrize('backup_state', ['ok', 'down', 'lagging', 'lag_unknown', 'catching_up'])
@pytest.mark.parametrize('async_state', ['ok', 'down', 'lagging', 'absent'])
def test_every_fallback_and_member_state(fallback, backup_state, async_state):
    """The generated matrix: the primary is never chosen unless fallback=primary and nothing else is usable; a set
    with no usable member is an error and backs up nothing anywhere."""
    h2 = {'ok': {}, 'down': {'running': False}, 'lagging': {'distance': 4}, 'lag_unknown': {'distance': None},
          'catching_up': {}}[backup_state]
    hosts = fleet(b='catchup' if backup_state == 'catching_up' else 'backup', h2=h2,
                  h3={'ok': {}, 'down': {'running': False}, 'lagging': {'distance': 2}, 'absent': {}}[async_state])
    if async_state == 'absent':
        del hosts['h3']
    res = _mirror.plan(hosts, fallback=fallback)
    backup_ok = backup_state == 'ok'
    async_ok = async_state == 'ok'
    if backup_ok:
        want = 'h2'
    elif async_ok and fallback in ('async', 'primary'):
        want = 'h3'
    elif fallback == 'primary':
        want = 'h1'
    else:
        want = None
    assert chosen_hosts(res) == ([want] if want else [])
    assert bool(res['errors']) == (want is None)
    if want is None:
        assert 'no member to back up with mirror fallback=%s' % fallback in res['errors'][0]
        assert 'Next:' in res['errors'][0]
        assert sum(len(v) for v in res['skipped'].values()) == len(hosts)
    if backup_state == 'lagging':
        assert 'not caught up (DistanceFromPrimaryJournalFiles 4, more than 1)' in ' '.join(res['report'])


def test_reporting_members_are_never_chosen():
    res = _mirror.plan({'h1': [member('IRIS', 'primary')], 'h4': [member('IRIS', 'reporting')]}, fallback='async')
    assert res['errors'] and chosen_hosts(res) == []


def test_instances_outside_mirrors_are_always_backed_up_and_sets_are_independent():
    hosts = fleet()
    hosts['h1'].append({'name': 'PLAIN', 'mirror_member_type': '', 'mirror_status': '', 'ready': True})
    hosts['h1'].append(member('OTHER', 'backup', mirror='SECOND'))
    hosts['h3'].append(member('OTHER', 'primary', mirror='SECOND'))
    res = _mirror.plan(hosts)
    assert res['instances'] == {'h1': ['PLAIN', 'OTHER'], 'h2': ['IRIS'], 'h3': []}
    assert [m['mirror'] for m in res['mirrors']] == ['PRODSET', 'SECOND']
    assert 'h1: PLAIN (not mirrored)' in res['report']


def test_one_unusable_set_is_an_error_but_the_other_is_still_planned():
    hosts = fleet(h2={'running': False})
    hosts['h1'].append(member('OTHER', 'backup', mirror='SECOND'))
    res = _mirror.plan(hosts, fallback='fail')
    assert len(res['errors']) == 1 and res['errors'][0].startswith('mirror set PRODSET:')
    assert res['instances']['h1'] == ['OTHER']


def run_filter(hostvars, hosts, **kw):
    """The filter in a child interpreter: importing controller code (ansible.errors) into this one changes how the
    module tests of the same pytest run see their warnings."""
    code = ('import json, sys\n'
            'from ansible.errors import AnsibleFilterError\n'
            'from ansible_collections.irisops.backup.plugins.filter.mirror_backup_plan import FilterModule\n'
            'a = json.load(sys.stdin)\n'
            'try:\n'
            '    print(json.dumps(FilterModule().filters()["mirror_backup_plan"](a["hv"], a["hosts"], **a["kw"])))\n'
            'except AnsibleFilterError as exc:\n'
            '    print(json.dumps({"filter_error": str(exc)}))\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, '-c', code], input=json.dumps({'hv': hostvars, 'hosts': hosts, 'kw': kw}),
                         stdout=subprocess.PIPE, universal_newlines=True, env=env, check=True, timeout=120).stdout
    return json.loads(out)


def test_a_bad_fallback_is_refused():
    with pytest.raises(ValueError):
        _mirror.plan({}, fallback='any')
    assert 'fallback must be one of fail, async, primary' in run_filter({}, [], fallback='any')['filter_error']


def test_the_filter_reads_hostvars_and_reports_hosts_without_a_result():
    hv = {'h1': {'iris_info': {'instances': fleet()['h1']}}, 'h2': {'iris_info': {'instances': fleet()['h2']}},
          'h3': {'iris_info': {'failed': True, 'msg': 'unreachable'}}, 'h4': {}}
    res = run_filter(hv, ['h1', 'h2', 'h3', 'h4'])
    assert res['instances'] == {'h1': [], 'h2': ['IRIS'], 'h3': [], 'h4': []}
    assert [e.split(':')[0] for e in res['errors']] == ['host h3', 'host h4']


def test_members_in_any_order_give_the_same_choice():
    for order in itertools.permutations(['primary', 'backup', 'async']):
        res = _mirror.plan(fleet(*order))
        assert chosen_hosts(res) == ['h%d' % (order.index('backup') + 1)]
