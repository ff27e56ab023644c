# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""iris_backup_user: the custom least-privilege role (custom_role) and the planning around it.

The IRIS security settings are faked in memory by FakeSecurity, which executes the ObjectScript lines the module
generates (only the statement shapes the module uses; anything else fails the test), so that idempotence, check
mode, removal and the verification are checked on what the module actually sends.  The end-to-end behaviour
against the emulator is covered by the molecule scenario extensions/molecule/backup_user.
"""

from __future__ import absolute_import, division, print_function

import re

import pytest

from ansible_collections.irisops.backup.plugins.module_utils import _iris
from ansible_collections.irisops.backup.plugins.modules import iris_backup_user as mod
from ansible_collections.irisops.backup.tests.unit.plugins.iris_fakes import FakeInstance

__metaclass__ = type

_S = r'"((?:[^"]|"")*)"'


def _unq(text):
    return text.replace('""', '"')


class FakeSecurity(object):
    """Security.System / Services / Users / Roles of one instance, driven by the module's script lines."""

    def __init__(self, flavour='iris'):
        self.flavour = flavour
        self.system = 48
        self.service = {'Enabled': 1, 'AutheEnabled': 48}
        self.users = {}
        self.roles = {}
        self.change_scripts = []

    def privileges(self, user):
        u = self.users.get(user.lower())
        if not u:
            return None
        if u['Roles'].lower() in ('%all', '%manager'):
            return 'all'
        role = self.roles.get(u['Roles'].lower())
        return mod._norm_resources(role['Resources']) if role else {}

    def read(self, name, role):
        v = {'system.sc': '1|', 'system.AutheEnabled': str(self.system), 'service.sc': '1|',
             'service.Enabled': str(self.service['Enabled']), 'service.AutheEnabled': str(self.service['AutheEnabled']),
             'user.exists': '1' if name.lower() in self.users else '0', 'end': '1'}
        u = self.users.get(name.lower())
        if u:
            v.update({'user.Roles': u['Roles'], 'user.Enabled': str(u['Enabled']), 'user.Comment': u['Comment'],
                      'user.AccountNeverExpires': str(u['AccountNeverExpires']),
                      'user.PasswordNeverExpires': str(u['PasswordNeverExpires'])})
        if role is not None:
            r = self.roles.get(role.lower())
            v['role.exists'] = '1' if r else '0'
            if r:
                v['role.Resources'] = r['Resources']
                v['role.Description'] = r['Description']
        return v

    def apply(self, line):
        """Run one change line; returns the chg.* key and its status."""
        key = re.search(r'IRISOPS\|(chg\.[a-z_]+)\|', line).group(1)
        m = re.match(r'Set sc=##class\(Security\.Roles\)\.Create\(%s,%s,%s,""\) ' % (_S, _S, _S), line)
        if m:
            name = _unq(m.group(1))
            if name.lower() in self.roles:
                return key, '0|ERROR #884: Role %s already exists' % name
            self.roles[name.lower()] = {'Name': name, 'Description': _unq(m.group(2)), 'Resources': _unq(m.group(3))}
            return key, '1|'
        m = re.match(r'Kill r Set r\("Resources"\)=%s Set sc=##class\(Security\.Roles\)\.Modify\(%s,\.r\) ' % (_S, _S),
                     line)
        if m:
            self.roles[_unq(m.group(2)).lower()]['Resources'] = _unq(m.group(1))
            return key, '1|'
        m = re.match(r'Set sc=##class\(Security\.(Roles|Users)\)\.Delete\(%s\) ' % _S, line)
        if m:
            table = self.roles if m.group(1) == 'Roles' else self.users
            del table[_unq(m.group(2)).lower()]
            return key, '1|'
        m = re.match(r'Set sc=##class\(Security\.Users\)\.Create\(%s,%s,%s,%s,"","","",0,1,%s\) ' % ((_S,) * 5), line)
        if m:
            self.users[_unq(m.group(1)).lower()] = {
                'Roles': _unq(m.group(2)), 'Enabled': 1, 'Comment': _unq(m.group(5)), 'AccountNeverExpires': 0,
                'PasswordNeverExpires': 0}
            return key, '1|'
        m = re.match(r'Kill u ((?:Set u\("\w+"\)=(?:%s|\d+) )+)Set sc=##class\(Security\.Users\)\.Modify\(%s,\.u\) '
                     % (_S, _S), line)
        if m:
            user = self.users[_unq(m.group(m.lastindex)).lower()]
            for prop, sval, nval in re.findall(r'Set u\("(\w+)"\)=(?:%s|(\d+))' % _S, m.group(1)):
                user[prop] = int(nval) if nval else _unq(sval)
            return key, '1|'
        m = re.match(r'Kill p Set p\("AutheEnabled"\)=(\d+) Set sc=##class\(Security\.System\)', line)
        if m:
            self.system = int(m.group(1))
            return key, '1|'
        m = re.match(r'Kill s ((?:Set s\("\w+"\)=\d+ )+)Set sc=##class\(Security\.Services\)', line)
        if m:
            for prop, val in re.findall(r'Set s\("(\w+)"\)=(\d+)', m.group(1)):
                self.service[prop] = int(val)
            return key, '1|'
        raise AssertionError('FakeSecurity does not know this line: %s' % line)


@pytest.fixture
def fake_iris(fake_host, monkeypatch):
    """Instances IRIS and CACHE (fake qlist) with one FakeSecurity each; the module's sessions go to them."""
    iris, cache = FakeInstance('IRIS'), FakeInstance('CACHE', 'cache')
    fake_host(iris, cache)
    secs = {'IRIS': FakeSecurity('iris'), 'CACHE': FakeSecurity('cache')}

    def run_script(inst, lines, run_as, timeout, creds=None, secrets=()):
        sec = secs[inst['name']]
        if any('user.exists' in x for x in lines):
            m = re.search(r'Security\.Users\)\.Exists\(%s\)' % _S, '\n'.join(lines))
            r = re.search(r'Security\.Roles\)\.Exists\(%s\)' % _S, '\n'.join(lines))
            values = sec.read(_unq(m.group(1)), _unq(r.group(1)) if r else None)
        else:
            sec.change_scripts.append(list(lines))
            values = dict(sec.apply(x) for x in lines)
            values['end'] = '1'
        return {'rc': 0, 'values': values, 'errors': [], 'stdout': '', 'stderr': '', 'command': ['iris', 'session'],
                'denied': False, 'complete': True}

    def login_as_backup_user(inst, p, creds):
        sec = secs[inst['name']]
        held = sec.privileges(p['name'])
        need = mod._norm_resources(_iris.backup_role_resources(inst['flavour']))
        r = {'command': ['runuser', '-u', p['name'], '--', 'iris', 'session'], 'stderr': '', 'frozen': False}
        if held is None or (held != 'all' and 'U' not in held.get('%service_terminal', '')):
            r.update(rc=1, stdout='Access Denied\n', ok=False, denied=True, msg='login refused')
        elif held != 'all' and any(not set(perms) <= set(held.get(res, '')) for res, perms in need.items()):
            r.update(rc=1, stdout='<PROTECT> *IsWDSuspendedExt,Backup.General (user %s lacks %%DB_IRISSYS:RW)\n'
                     % p['name'], ok=False, denied=False, msg='exit status 1 is neither 5 nor 3')
        else:
            r.update(rc=3, stdout='', ok=True, denied=False, msg='not frozen')
        return r

    monkeypatch.setattr(mod, 'run_script', run_script)
    monkeypatch.setattr(mod, 'manager_login', lambda inst, p, run_as, secrets: ('os', None, {}))
    monkeypatch.setattr(mod, 'login_as_backup_user', login_as_backup_user)
    monkeypatch.setattr(mod, 'os_user_exists', lambda name: True)
    return secs


def _names(secs):
    return dict((n, sorted(s.roles)) for n, s in secs.items())


# ---------------------------------------------------------------------------------------------------------------

def test_backup_role_resources_single_source():
    assert _iris.backup_role_resources('iris') == '%Service_Terminal:U,%Admin_Operate:U,%DB_IRISSYS:RW'
    assert _iris.backup_role_resources('cache') == '%Service_Terminal:U,%Admin_Operate:U,%DB_CACHESYS:RW'
    assert all(p in _iris.backup_role_resources('iris').replace('IRISSYS', '{sysdb}')
               for p in _iris.BACKUP_ROLE_PRIVILEGES)


@pytest.mark.parametrize('a,b,same', [
    ('%DB_IRISSYS:RW,%Admin_Operate:U', '%admin_operate:u, %DB_IRISSYS:WR', True),
    ('%DB_IRISSYS:RW', '%DB_IRISSYS:R', False),
    ('%DB_IRISSYS:R,%DB_IRISSYS:W', '%DB_IRISSYS:RW', True),
    ('', None, True),
    ('%Admin_Operate:U', '%Admin_Operate:U,%Service_Terminal:U', False),
])
def test_same_resources(a, b, same):
    assert mod._same_resources(a, b) is same


def test_custom_role_created_per_flavour_then_idempotent(fake_iris, run_module):
    failed, r = run_module(mod, {'name': 'irisbackup', 'custom_role': True})
    assert not failed, r['msg']
    assert r['changed'] and r['role'] == 'IrisOpsBackup'
    for name, db in (('IRIS', 'IRISSYS'), ('CACHE', 'CACHESYS')):
        res = r['instance_results'][name]
        want = '%%Service_Terminal:U,%%Admin_Operate:U,%%DB_%s:RW' % db
        assert res['role_resources'] == want
        assert res['changes'][0] == 'create IRIS role IrisOpsBackup with resources %s' % want
        assert 'create IRIS user irisbackup with role IrisOpsBackup (OS-authenticated, no password login)' in res['changes']
        role = fake_iris[name].roles['irisopsbackup']
        assert role['Resources'] == want
        assert role['Description'] == 'irisops.backup least-privilege external backup role, created for backup ' \
                                      'user irisbackup'
        assert fake_iris[name].users['irisbackup']['Roles'] == 'IrisOpsBackup'
        assert res['verify']['rc'] == 3 and res['after']['role_exists']
        # the role is created before the user that gets it, in the same script
        script = fake_iris[name].change_scripts[0]
        assert 'Security.Roles).Create' in script[0]
        assert [i for i, x in enumerate(script) if 'Security.Users).Create' in x][0] > 0
    failed, r = run_module(mod, {'name': 'irisbackup', 'custom_role': True})
    assert not failed and not r['changed']
    assert all(not x['changes'] for x in r['instance_results'].values())
    assert all(len(s.change_scripts) == 1 for s in fake_iris.values())


def test_custom_role_check_mode_changes_nothing(fake_iris, run_module):
    failed, r = run_module(mod, {'name': 'irisbackup', 'custom_role': True, 'instances': 'IRIS'}, check_mode=True,
                           diff=True)
    assert not failed and r['changed']
    res = r['instance_results']['IRIS']
    assert res['changes'][0].startswith('create IRIS role IrisOpsBackup with resources %Service_Terminal:U')
    assert res['verify'] is None
    assert r['diff']['before']['IRIS']['role_exists'] is False and r['diff']['after']['IRIS']['role_exists'] is True
    assert not fake_iris['IRIS'].roles and not fake_iris['IRIS'].users and not fake_iris['IRIS'].change_scripts


def test_wrong_resources_of_our_role_are_corrected(fake_iris, run_module):
    run_module(mod, {'name': 'irisbackup', 'custom_role': True, 'instances': 'IRIS'})
    fake_iris['IRIS'].roles['irisopsbackup']['Resources'] = '%Admin_Operate:U'
    failed, r = run_module(mod, {'name': 'irisbackup', 'custom_role': True, 'instances': 'IRIS'})
    assert not failed and r['changed']
    assert r['instance_results']['IRIS']['changes'] == [
        'set the resources of IRIS role IrisOpsBackup to %Service_Terminal:U,%Admin_Operate:U,%DB_IRISSYS:RW '
        '(were %Admin_Operate:U)']
    assert mod._same_resources(fake_iris['IRIS'].roles['irisopsbackup']['Resources'],
                               _iris.backup_role_resources('iris'))


def test_foreign_role_is_never_modified(fake_iris, run_module):
    fake_iris['IRIS'].roles['irisopsbackup'] = {'Name': 'IrisOpsBackup', 'Description': 'made by hand',
                                                'Resources': '%Admin_Operate:U'}
    failed, r = run_module(mod, {'name': 'irisbackup', 'custom_role': True, 'instances': 'IRIS'})
    assert failed
    assert 'instance IRIS: role IrisOpsBackup exists but was not created by irisops.backup' in r['msg']
    assert 'Next: choose another role name' in r['msg']
    assert not fake_iris['IRIS'].change_scripts and not fake_iris['IRIS'].users
    # with exactly the needed resources a hand-made role is used as it is (and kept at removal)
    fake_iris['IRIS'].roles['irisopsbackup']['Resources'] = '%DB_IRISSYS:RW,%Service_Terminal:U,%Admin_Operate:U'
    failed, r = run_module(mod, {'name': 'irisbackup', 'custom_role': True, 'instances': 'IRIS'})
    assert not failed and r['instance_results']['IRIS']['changes'] == [
        'create IRIS user irisbackup with role IrisOpsBackup (OS-authenticated, no password login)']
    failed, r = run_module(mod, {'name': 'irisbackup', 'custom_role': True, 'instances': 'IRIS', 'state': 'absent'})
    assert not failed and r['instance_results']['IRIS']['changes'] == ['delete IRIS user irisbackup']
    assert 'irisopsbackup' in fake_iris['IRIS'].roles
    assert any('was left in place' in w for w in r['instance_results']['IRIS']['warnings'])


def test_removal_deletes_the_role_only_for_the_user_it_was_created_for(fake_iris, run_module):
    base = {'custom_role': True, 'instances': 'IRIS'}
    run_module(mod, dict(base, name='irisbackup'))
    failed, r = run_module(mod, dict(base, name='otherbk'))   # shares the role, does not own it
    assert not failed and r['instance_results']['IRIS']['changes'] == [
        'create IRIS user otherbk with role IrisOpsBackup (OS-authenticated, no password login)']
    failed, r = run_module(mod, dict(base, name='otherbk', state='absent'))
    assert not failed and r['instance_results']['IRIS']['changes'] == ['delete IRIS user otherbk']
    assert 'irisopsbackup' in fake_iris['IRIS'].roles
    failed, r = run_module(mod, dict(base, name='irisbackup', state='absent'))
    assert not failed and r['instance_results']['IRIS']['changes'] == [
        'delete IRIS user irisbackup', 'delete IRIS role IrisOpsBackup (created for irisbackup)']
    assert not fake_iris['IRIS'].roles and not fake_iris['IRIS'].users
    failed, r = run_module(mod, dict(base, name='irisbackup', state='absent'))
    assert not failed and not r['changed']


def test_without_custom_role_the_role_is_not_touched_at_removal(fake_iris, run_module):
    run_module(mod, {'name': 'irisbackup', 'custom_role': True, 'instances': 'IRIS'})
    failed, r = run_module(mod, {'name': 'irisbackup', 'role': 'IrisOpsBackup', 'instances': 'IRIS',
                                 'state': 'absent'})
    assert not failed and r['instance_results']['IRIS']['changes'] == ['delete IRIS user irisbackup']
    assert 'irisopsbackup' in fake_iris['IRIS'].roles


def test_role_lacking_privileges_fails_verification_with_a_clear_message(fake_iris, run_module):
    fake_iris['IRIS'].roles['bknodb'] = {'Name': 'BkNoDb', 'Description': 'by hand',
                                         'Resources': '%Service_Terminal:U,%Admin_Operate:U'}
    failed, r = run_module(mod, {'name': 'irisbackup', 'role': 'BkNoDb', 'instances': 'IRIS'})
    assert failed
    msg = r['msg']
    assert msg.startswith('instance IRIS: verification failed: IsWDSuspendedExt as OS user irisbackup')
    assert '<PROTECT> *IsWDSuspendedExt,Backup.General (user irisbackup lacks %DB_IRISSYS:RW)' in msg
    assert 'Next: role BkNoDb lacks privileges Backup.General needs: give the user %Manager, or set custom_role=true' \
        in msg and _iris.backup_role_resources('iris') in msg
    # a role without the login privilege: refused at login, and the hint names %Service_Terminal:U
    fake_iris['IRIS'].roles['bknodb']['Resources'] = '%Admin_Operate:U,%DB_IRISSYS:RW'
    failed, r = run_module(mod, {'name': 'irisbackup', 'role': 'BkNoDb', 'instances': 'IRIS'})
    assert failed and 'role BkNoDb holds %Service_Terminal:U' in r['msg']


def test_override_lacking_a_privilege_names_role_resources(fake_iris, run_module):
    failed, r = run_module(mod, {'name': 'irisbackup', 'role_resources': '%Service_Terminal:U,%Admin_Operate:U',
                                 'instances': 'IRIS'})
    assert failed and r['role'] == 'IrisOpsBackup'
    assert 'the custom role IrisOpsBackup does not hold what Backup.General needs' in r['msg']
    assert 'add the missing privilege named above to role_resources' in r['msg']


@pytest.mark.parametrize('args,err', [
    ({'custom_role': True, 'role': '%Manager'}, 'roles starting with % are reserved by InterSystems'),
    ({'role_resources': '%Admin_Operate:U', 'role': '%MyRole'}, 'custom_role is set (or role_resources)'),
    ({'role': 'a,b'}, 'role must be one role name'),
])
def test_argument_errors_change_nothing(fake_iris, run_module, args, err):
    failed, r = run_module(mod, dict(args, name='irisbackup'))
    assert failed and r['msg'].startswith('nothing changed: ') and err in r['msg']
    assert not any(s.change_scripts for s in fake_iris.values())


def test_default_role_is_manager_and_no_role_is_read(fake_iris, run_module):
    failed, r = run_module(mod, {'name': 'irisbackup', 'instances': 'IRIS'})
    assert not failed and r['role'] == '%Manager'
    assert fake_iris['IRIS'].users['irisbackup']['Roles'] == '%Manager'
    assert r['instance_results']['IRIS']['role_resources'] is None
    assert 'role_exists' not in r['instance_results']['IRIS']['before']
