#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iris_backup_user
short_description: Manage the IRIS/Cache external-backup user
version_added: 0.1.0
description:
  - Makes sure that an OS user can call C(Backup.General) (C(ExternalFreeze), C(ExternalThaw), C(IsWDSuspendedExt))
    on one or more InterSystems IRIS or Cache instances without a password on any command line.
  - With O(auth=os) (the reference setup) it creates an IRIS user named like the OS user with the role O(role),
    enables operating-system authentication system-wide (C(Security.System) C(AutheEnabled) bit 16) and on
    C(%Service_Terminal).
  - With O(auth=password) (for sites that forbid OS authentication) it creates the IRIS user with O(user_password) and
    makes sure password authentication is enabled; the caller feeds the credentials on standard input (the
    C(irisops.backup.backup_user) role writes them to a 0600 file owned by the OS user).
  - Reads the current state first (C(Security.System.Get), C(Security.Services.Get), C(Security.Users.Get)) and changes
    only what differs, in an C(iris session) / C(csession) script fed on standard input and run as the instance
    manager. Every change is read back afterwards; a change that did not take effect fails the task.
  - Finally, unless O(verify=false), runs C(IsWDSuspendedExt) as the OS user O(name) (with no credentials for
    O(auth=os), with the credentials on standard input for O(auth=password)) and expects exit status 3 or 5.
  - Does not create or remove the OS user; the C(irisops.backup.backup_user) role does that.
author:
  - irisops.backup maintainers (@irisops)
extends_documentation_fragment:
  - irisops.backup.iris
  - irisops.backup.iris.attributes
  - irisops.backup.iris.action_group
options:
  name:
    description:
      - Name of the backup user. The same name is used for the OS user and the IRIS user (OS authentication maps an
        OS user to the IRIS user of the same name).
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the IRIS user and the authentication settings.
      - V(absent) deletes the IRIS user. With O(custom_role=true) it also deletes the role O(role), but only when
        this module created it for this user (its description says so); a role created by hand, or for another
        backup user, is left in place. System-wide settings are left alone unless O(disable_os_auth=true).
    type: str
    choices: [present, absent]
    default: present
  instances:
    description:
      - Instance name, list of instance names, or V(all) for every running instance on the host (IRIS and Cache alike,
        as listed by C(iris qlist) and C(ccontrol qlist)). Instances that are not running are skipped in V(all) mode
        and reported in RV(skipped).
    type: list
    elements: str
    default: [all]
    aliases: [instance]
  role:
    description:
      - IRIS role given to the user. The user gets exactly this role (other roles are removed).
      - Default V(%Manager), or V(IrisOpsBackup) with O(custom_role=true).
      - V(%Manager) is what InterSystems' documentation and community examples use for backup scripts; the minimum
        privilege needed by C(Backup.General) is not documented (see the collection's C(docs/backup-user.md)).
    type: str
  custom_role:
    description:
      - Create and maintain O(role) as a custom least-privilege role (C(Security.Roles)) holding exactly the
        privileges a backup user needs, from the collection's single list in C(plugins/module_utils/_iris.py)
        (C(BACKUP_ROLE_PRIVILEGES)) - C(%Service_Terminal:U,%Admin_Operate:U,%DB_IRISSYS:RW) on IRIS,
        C(%DB_CACHESYS:RW) instead of C(%DB_IRISSYS:RW) on Cache.
      - That list is UNCONFIRMED against a real instance (InterSystems documents no minimum privilege for
        C(Backup.General); C(docs/unconfirmed.md) row 13); the final verification (O(verify)) tells whether it is
        enough.
      - O(role) must then not start with C(%) (names starting with C(%) are reserved by InterSystems). A role of that
        name that this module did not create is used only if it already holds exactly these privileges; it is
        never changed.
    type: bool
    default: false
  role_resources:
    description:
      - Expert override of the privileges of the custom role (C(Security.Roles) resource string, for example
        C(%Service_Terminal:U,%Admin_Operate:U,%DB_IRISSYS:RW)) instead of the built-in list. Implies
        O(custom_role=true). The same string is used on every selected instance (mind C(%DB_IRISSYS) vs
        C(%DB_CACHESYS)).
    type: str
  auth:
    description:
      - How the backup user logs in. V(os) uses operating-system authentication (no secret anywhere). V(password) gives
        the IRIS user O(user_password).
    type: str
    choices: [os, password]
    default: os
  user_password:
    description:
      - Password of the IRIS user, required with O(auth=password). Sent to the session on standard input only.
    type: str
  update_password:
    description:
      - With O(auth=password), V(always) checks that O(user_password) works by logging in as O(name) and sets it when
        the login is refused; V(on_create) sets it only when the user is created.
      - When OS authentication would log O(name) in anyway, the password cannot be checked by a login; it is then left
        alone and a warning is returned.
    type: str
    choices: [always, on_create]
    default: always
  full_name:
    description:
      - Full name stored on a newly created IRIS user (not updated on an existing one).
    type: str
    default: irisops.backup external backup user
  enable_os_auth:
    description:
      - With O(auth=os) and O(state=present), enable OS authentication system-wide and on C(%Service_Terminal) (and
        the service itself) when they are not. Set to V(false) to leave these settings alone; the final verification
        then fails if they are off.
    type: bool
    default: true
  disable_os_auth:
    description:
      - With O(state=absent), also clear the OS authentication bit system-wide and on C(%Service_Terminal).
      - Other OS-authenticated users (for example the instance owner in InterSystems container images) then need a
        password too; only use it if OS authentication was enabled for the backup user alone.
    type: bool
    default: false
  verify:
    description:
      - After O(state=present), run C(IsWDSuspendedExt) as the OS user O(name) and require exit status 3 or 5.
      - The OS user must exist. Skipped in check mode.
    type: bool
    default: true
notes:
  - O(run_as) defaults to each instance's manager user. The manager session first tries OS authentication with no
    input on standard input; only when that login is refused are O(username)/O(password) (an IRIS administrator) fed
    on standard input.
  - In check mode the module only runs read-only sessions and reports what it would change.
  - The ObjectScript method names and signatures used are collected in constants at the top of the module
    (C(Security.Users.Create) and C(Security.Roles.Create) positional signatures, the C(Security.System) object name
    C(SYSTEM)), so they can be corrected in one place.
seealso:
  - module: irisops.backup.iris_freeze
  - module: irisops.backup.iris_instance_info
"""

EXAMPLES = r"""
- name: OS-authenticated backup user with %Manager on every running instance
  irisops.backup.iris_backup_user:
    name: irisbackup

- name: Password login on a Cache instance where the manager cannot use OS authentication
  irisops.backup.iris_backup_user:
    name: irisbackup
    instances: CACHE
    auth: password
    user_password: "{{ vault_irisbackup_password }}"
    username: _SYSTEM
    password: "{{ vault_iris_admin_password }}"
  no_log: true

- name: OS-authenticated backup user with a custom least-privilege role IrisOpsBackup instead of %Manager
  irisops.backup.iris_backup_user:
    name: irisbackup
    custom_role: true

- name: Remove the IRIS user again (system-wide settings are kept)
  irisops.backup.iris_backup_user:
    name: irisbackup
    state: absent
"""

RETURN = r"""
instances:
  description: Names of the instances acted on (after resolving V(all)).
  returned: always
  type: list
  elements: str
  sample: [IRIS, CACHE]
skipped:
  description: Instances that are not running and were left out of V(all).
  returned: always
  type: list
  elements: str
user:
  description: The backup user name.
  returned: always
  type: str
  sample: irisbackup
role:
  description: The IRIS role given to the user (after applying the default).
  returned: always
  type: str
  sample: IrisOpsBackup
instance_results:
  description: One entry per instance, keyed by instance name.
  returned: always
  type: dict
  contains:
    changed:
      description: Whether something was (would be, in check mode) changed on this instance.
      type: bool
    changes:
      description: Human-readable list of the changes made (or planned in check mode).
      type: list
      elements: str
      sample: ["create IRIS user irisbackup with role %Manager", "enable OS authentication on %Service_Terminal"]
    before:
      description: State read before any change.
      type: dict
    after:
      description: State read back after the changes (the planned state in check mode).
      type: dict
    manager_auth:
      description: How the manager session logged in, V(os) or V(password) (O(username)/O(password) on stdin).
      type: str
    run_as:
      description: OS user the manager sessions ran as.
      type: str
    role_resources:
      description: With O(custom_role=true), the privileges the custom role is meant to hold on this instance.
      type: str
      sample: '%Service_Terminal:U,%Admin_Operate:U,%DB_IRISSYS:RW'
    verify:
      description: Result of the final C(IsWDSuspendedExt) as the backup user (rc, outcome, command, msg).
      type: dict
    warnings:
      description: Warnings for this instance.
      type: list
      elements: str
    msg:
      description: What happened on this instance.
      type: str
"""

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.irisops.backup.plugins.module_utils import _iris

# ---------------------------------------------------------------------------------------------------------------
# What IRIS understands (the Security.* classes, their ObjectScript, the script sessions) is in module_utils/_iris.py,
# section "Security.* and script sessions (iris_backup_user)"; this module decides what to change.
# ---------------------------------------------------------------------------------------------------------------

AUTHE_OS = _iris.AUTHE_OS
AUTHE_PASSWORD = _iris.AUTHE_PASSWORD
TERMINAL_SERVICE = _iris.TERMINAL_SERVICE
USER_FLAGS = _iris.USER_FLAGS
#: Comment stored on users created by this module.
MANAGED_COMMENT = 'managed by irisops.backup (backup_user)'
#: Name of the custom role when custom_role=true and no role is given.
DEFAULT_CUSTOM_ROLE = 'IrisOpsBackup'
#: Description of a custom role created by this module: the prefix marks it as ours (its resources may be
#: corrected), the user name says for whom it was created (only that user's removal deletes it).
ROLE_DESCRIPTION_PREFIX = 'irisops.backup least-privilege external backup role'
ROLE_DESCRIPTION = ROLE_DESCRIPTION_PREFIX + ', created for backup user %s'

# Module-level names of the session and the comparisons (the unit tests replace run_script with a fake instance).
run_script = _iris.run_script
_same_roles = _iris.same_roles
_norm_resources = _iris.role_resources_map
_same_resources = _iris.same_role_resources


def _q(value):
    return _iris.objectscript_string(value)


def role_is_ours(state, name=None):
    """Was the role created by this module (for backup user ``name``, when given)?"""
    desc = (state.get('role_description') or '').strip()
    if name is None:
        return desc.startswith(ROLE_DESCRIPTION_PREFIX)
    return desc.lower() == (ROLE_DESCRIPTION % name).lower()


# ---------------------------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------------------------

def plan(state, p, password_wrong=False):
    """Return (changes, lines, desired): descriptions, the ObjectScript change lines, and the expected state."""
    name = p['name']
    changes = []
    lines = []
    desired = dict(state)
    role_managed = bool(p['role_resources'])

    if p['state'] == 'absent':
        if state['user_exists']:
            changes.append('delete IRIS user %s' % name)
            lines.append(_iris.user_delete_line(name))
            desired.update(user_exists=False, user_roles=[], user_enabled=None, user_comment=None)
            for f in USER_FLAGS:
                desired['user_' + f] = None
        if role_managed and state.get('role_exists') and role_is_ours(state, name):
            changes.append('delete IRIS role %s (created for %s)' % (p['role'], name))
            lines.append(_iris.role_delete_line(p['role']))
            desired.update(role_exists=False, role_resources=None, role_description=None)
        if p['disable_os_auth']:
            if state['system_authe'] & AUTHE_OS:
                new = state['system_authe'] & ~AUTHE_OS
                changes.append('disable OS authentication system-wide (AutheEnabled %d -> %d)'
                               % (state['system_authe'], new))
                lines.append(_iris.system_authe_line(new))
                desired['system_authe'] = new
            if state['service_authe'] & AUTHE_OS:
                new = state['service_authe'] & ~AUTHE_OS
                changes.append('disable OS authentication on %s (AutheEnabled %d -> %d)'
                               % (TERMINAL_SERVICE, state['service_authe'], new))
                lines.append(_iris.terminal_service_line(None, new))
                desired['service_authe'] = new
        return changes, lines, desired

    # present
    if role_managed:
        if not state['role_exists']:
            changes.append('create IRIS role %s with resources %s' % (p['role'], p['role_resources']))
            lines.append(_iris.role_create_line(p['role'], ROLE_DESCRIPTION % name, p['role_resources']))
            desired['role_description'] = ROLE_DESCRIPTION % name
        elif not _same_resources(state['role_resources'], p['role_resources']):
            changes.append('set the resources of IRIS role %s to %s (were %s)' % (
                p['role'], p['role_resources'], state['role_resources']))
            lines.append(_iris.role_resources_line(p['role'], p['role_resources']))
        desired.update(role_exists=True, role_resources=p['role_resources'])

    need = AUTHE_OS if p['auth'] == 'os' else AUTHE_PASSWORD
    manage_auth = p['auth'] == 'password' or p['enable_os_auth']
    if manage_auth:
        if not state['system_authe'] & need:
            new = state['system_authe'] | need
            changes.append('enable %s authentication system-wide (AutheEnabled %d -> %d)'
                           % (_authe_word(need), state['system_authe'], new))
            lines.append(_iris.system_authe_line(new))
            desired['system_authe'] = new
        svc_new = state['service_authe'] | need
        svc_enable = state['service_enabled'] != 1
        if svc_new != state['service_authe'] or svc_enable:
            what = []
            if svc_enable:
                what.append('enable the service')
            if svc_new != state['service_authe']:
                what.append('enable %s authentication (AutheEnabled %d -> %d)' % (
                    _authe_word(need), state['service_authe'], svc_new))
            changes.append('%s: %s' % (TERMINAL_SERVICE, ', '.join(what)))
            lines.append(_iris.terminal_service_line(1 if svc_enable else None,
                                                     svc_new if svc_new != state['service_authe'] else None))
            desired['service_authe'] = svc_new
            desired['service_enabled'] = 1

    password = p['user_password'] if p['auth'] == 'password' else ''
    if not state['user_exists']:
        changes.append('create IRIS user %s with role %s (%s login)' % (
            name, p['role'], 'password' if p['auth'] == 'password' else 'OS-authenticated, no password'))
        lines.append(_iris.user_create_line(name, p['role'], password, p['full_name'], MANAGED_COMMENT))
        lines.append(_iris.user_flags_line(name))
        desired.update(user_exists=True, user_roles=[p['role']], user_enabled=1, user_comment=MANAGED_COMMENT)
        for f in USER_FLAGS:
            desired['user_' + f] = 1
        return changes, lines, desired

    props = []
    if not _same_roles(state['user_roles'], [p['role']]):
        changes.append('set the roles of IRIS user %s to %s (were %s)' % (
            name, p['role'], ','.join(state['user_roles']) or 'none'))
        props.append(('Roles', _q(p['role'])))
        desired['user_roles'] = [p['role']]
    if state['user_enabled'] != 1:
        changes.append('enable IRIS user %s' % name)
        props.append(('Enabled', '1'))
        desired['user_enabled'] = 1
    for f in USER_FLAGS:
        # Only when the instance reports the property at all (older versions may not have it).
        if state['user_' + f] is not None and state['user_' + f] != 1:
            changes.append('set %s=1 on IRIS user %s' % (f, name))
            props.append((f, '1'))
            desired['user_' + f] = 1
    if password_wrong:
        changes.append('set the password of IRIS user %s (the login with the configured password was refused)' % name)
        props.append(_iris.user_password_property(password))
    if props:
        lines.append(_iris.user_modify_line(name, props))
    return changes, lines, desired


def _authe_word(bit):
    return 'OS' if bit == AUTHE_OS else 'password'


def compare(desired, actual):
    """Keys whose read-back value differs from the desired one."""
    diffs = []
    for key, want in sorted(desired.items()):
        have = actual.get(key)
        if key == 'user_roles':
            if not _same_roles(want or [], have or []):
                diffs.append('%s: want %s, read %s' % (key, ','.join(want or []), ','.join(have or [])))
        elif key == 'role_resources':
            if want is not None and not _same_resources(want, have):
                diffs.append('%s: want %s, read %s' % (key, want, have))
        elif key in ('user_comment', 'role_description'):
            continue
        elif key.startswith('user_') and key[5:] in USER_FLAGS and have is None:
            # This version does not report the property (older Cache); nothing to compare.
            continue
        elif want != have:
            diffs.append('%s: want %r, read %r' % (key, want, have))
    return diffs


def public_state(state):
    return dict(state)


# ---------------------------------------------------------------------------------------------------------------
# Per instance
# ---------------------------------------------------------------------------------------------------------------

class InstanceError(Exception):
    pass


def manager_login(inst, p, run_as, secrets):
    """Find how the manager session logs in: 'os' (nothing on stdin) or 'password' (username/password on stdin)."""
    probe = _iris.is_frozen(None, inst, run_as=run_as, timeout=p['timeout'])
    if not probe['failed']:
        return 'os', None, probe
    if p['username']:
        probe2 = _iris.is_frozen(None, inst, run_as=run_as, username=p['username'], password=p['password'],
                                 timeout=p['timeout'])
        if not probe2['failed']:
            return 'password', (p['username'], p['password']), probe2
        raise InstanceError(
            'instance %s: the manager session as OS user %s was refused both with OS authentication and with the '
            'given username %s (%s). Command: %s. Next: pass the credentials of an IRIS user with %%All or %%Manager '
            '(username/password), or set run_as to an OS user that OS authentication accepts'
            % (inst['name'], run_as, p['username'], _iris.scrub_secrets(probe2['msg'], [p['password']]),
               ' '.join(probe2['command'])))
    raise InstanceError(
        'instance %s: cannot open a manager session as OS user %s without a password (%s). Command: %s. Next: pass '
        'username/password of an IRIS administrator (%%All or %%Manager; fed on stdin only), or set run_as to an OS '
        'user that OS authentication logs in' % (inst['name'], run_as, probe['msg'], ' '.join(probe['command'])))


def read_state(inst, p, run_as, creds, secrets, what):
    role = p['role'] if p['custom_role'] else None
    res = run_script(inst, _iris.security_read_lines(p['name'], role), run_as, p['timeout'], creds=creds,
                     secrets=secrets)
    if res['complete'] and res['errors']:
        raise InstanceError(
            'instance %s: the %s script hit ObjectScript errors (%s); nothing was changed by it. Command: %s. Next: %s'
            % (inst['name'], what, '; '.join(res['errors']), ' '.join(res['command']),
               'this version may lack Security.Roles: set custom_role=false and create the role by hand' if role and
               any('Security.Roles' in e for e in res['errors']) else
               'check that the manager session has %Manager or %All'))
    if not res['complete']:
        raise InstanceError(
            'instance %s: the %s script did not complete (rc=%s%s%s). Command: %s. Next: check that OS user %s can '
            'open a %%SYS session and look at %s' % (
                inst['name'], what, res['rc'], ', access denied' if res['denied'] else '',
                (', errors: ' + '; '.join(res['errors'])) if res['errors'] else '', ' '.join(res['command']), run_as,
                inst.get('messages_log') or 'the instance log'))
    try:
        return _iris.parse_security_state(res['values'], bool(role)), res
    except ValueError as exc:
        raise InstanceError('instance %s: cannot read the security settings (%s%s). Command: %s. Next: check that the '
                            'manager session has %%Manager or %%All%s' % (
                                inst['name'], exc, (': ' + '; '.join(res['errors'])) if res['errors'] else '',
                                ' '.join(res['command']),
                                ' and that this version has Security.Roles (or set custom_role=false)' if role else ''))


def os_user_exists(name):
    return _iris.check_run_as(name) is None


def os_auth_would_login(state):
    return bool(state['system_authe'] & AUTHE_OS and state['service_authe'] & AUTHE_OS and state['user_exists']
                and state['user_enabled'] == 1)


def login_as_backup_user(inst, p, creds):
    """IsWDSuspendedExt as the backup OS user; returns the _iris.is_frozen result plus 'ok'."""
    r = _iris.is_frozen(None, inst, run_as=p['name'], username=creds[0] if creds else None,
                        password=creds[1] if creds else None, timeout=p['timeout'])
    r['ok'] = not r['failed']
    r['denied'] = 'access denied' in ((r.get('stdout') or '') + (r.get('stderr') or '')).lower()
    return r


def new_result(inst):
    return {'instance': inst['name'], 'flavour': inst.get('flavour'), 'changed': False, 'changes': [], 'before': {},
            'after': {}, 'manager_auth': None, 'run_as': None, 'role_resources': None, 'verify': None, 'warnings': [],
            'msg': ''}


def process_instance(module, inst, p, res):
    """Fill ``res`` (see new_result) in place, so that a failure half-way still reports what was changed."""
    secrets = [s for s in (p['password'], p['user_password']) if s]
    # The custom role's privileges depend on the flavour (%DB_IRISSYS / %DB_CACHESYS): a per-instance copy of p.
    p = dict(p, role_resources=(p['role_resources'] or _iris.backup_role_resources(inst.get('flavour')))
             if p['custom_role'] else None)
    res['role_resources'] = p['role_resources']
    run_as = p['run_as'] or _iris.default_run_as(inst)
    res['run_as'] = run_as
    err = _iris.check_run_as(run_as) if run_as else 'no manager or owner user in parameters.isc'
    if err:
        raise InstanceError('instance %s: cannot run the manager session as %s (%s). Next: set run_as to the OS user '
                            'that manages the instance' % (inst['name'], run_as, err))
    res['manager_auth'], creds, _probe = manager_login(inst, p, run_as, secrets)
    before, _r = read_state(inst, p, run_as, creds, secrets, 'read')
    res['before'] = public_state(before)
    if p['custom_role'] and before.get('role_exists'):
        if p['state'] == 'present' and not role_is_ours(before) and \
                not _same_resources(before['role_resources'], p['role_resources']):
            raise InstanceError(
                'instance %s: role %s exists but was not created by irisops.backup (description %r), and its resources '
                '%s differ from the ones a backup user needs (%s); nothing was changed, a role this module did not '
                'create is never modified. Next: choose another role name, give the role these resources yourself, '
                'or set custom_role=false to use it as it is' % (
                    inst['name'], p['role'], before.get('role_description'), before['role_resources'] or '(none)',
                    p['role_resources']))
        if p['state'] == 'absent' and not role_is_ours(before, p['name']):
            res['warnings'].append(
                'instance %s: role %s was left in place: it was not created by this module for backup user %s '
                '(description %r)' % (inst['name'], p['role'], p['name'], before.get('role_description')))

    password_wrong = False
    if p['state'] == 'present' and p['auth'] == 'password' and before['user_exists'] and \
            p['update_password'] == 'always':
        if os_auth_would_login(before):
            res['warnings'].append(
                'instance %s: OS authentication logs %s in without a password, so the configured password cannot be '
                'checked by a login; it was left unchanged' % (inst['name'], p['name']))
        elif not os_user_exists(p['name']):
            if module.check_mode:
                res['warnings'].append('instance %s: OS user %s does not exist yet; the password could not be checked'
                                       % (inst['name'], p['name']))
            else:
                raise InstanceError('instance %s: OS user %s does not exist, so the password cannot be checked by a '
                                    'login. Next: create the OS user first (the backup_user role does)'
                                    % (inst['name'], p['name']))
        else:
            probe = login_as_backup_user(inst, p, (p['name'], p['user_password']))
            password_wrong = probe['denied']

    changes, lines, desired = plan(before, p, password_wrong=password_wrong)
    res['changes'] = changes
    res['changed'] = bool(changes) and module.check_mode

    loses_os_auth = any(before[k] & AUTHE_OS and not desired[k] & AUTHE_OS for k in ('system_authe', 'service_authe'))
    if res['manager_auth'] == 'os' and loses_os_auth:
        if not p['username']:
            raise InstanceError(
                'instance %s: disable_os_auth would switch off the OS authentication that the manager session (OS '
                'user %s) uses, and no username/password was given to log in afterwards; nothing was changed. Next: '
                'pass username/password of an IRIS administrator' % (inst['name'], run_as))

    if module.check_mode:
        res['after'] = public_state(desired)
        res['msg'] = ('instance %s: would %s' % (inst['name'], '; '.join(changes))) if changes else \
            'instance %s: nothing to change' % inst['name']
        return res

    if lines:
        applied = run_script(inst, lines, run_as, p['timeout'], creds=creds, secrets=secrets)
        failed_calls = ['%s: %s' % (k[4:], v.split('|', 1)[1] if '|' in v else v)
                        for k, v in sorted(applied['values'].items()) if k.startswith('chg.') and not v.startswith('1')]
        res['changed'] = any(k.startswith('chg.') and v.startswith('1') for k, v in applied['values'].items())
        if not applied['complete'] or failed_calls or applied['errors']:
            raise InstanceError(
                'instance %s: changing the security settings failed (%s). Planned: %s. Command: %s. Next: fix the cause '
                'and run again; the state is read before every change, so a rerun only does what is still missing' % (
                    inst['name'], '; '.join(failed_calls + applied['errors']) or 'rc=%s, script incomplete'
                    % applied['rc'], '; '.join(changes), ' '.join(applied['command'])))
        res['changed'] = True
        # iris session (like iris merge) reporting success is not proof: read everything back.  Log in again: the
        # changes may have switched off the OS authentication the manager session used.
        _auth, creds, _probe = manager_login(inst, p, run_as, secrets)
        after, _r = read_state(inst, p, run_as, creds, secrets, 'read-back')
        res['after'] = public_state(after)
        diffs = compare(desired, after)
        if diffs:
            raise InstanceError('instance %s: the changes did not take effect (%s). Command: %s. Next: look at %s and at '
                                'the security settings in the management portal' % (
                                    inst['name'], '; '.join(diffs), ' '.join(applied['command']),
                                    inst.get('messages_log') or 'the instance log'))
    else:
        res['after'] = public_state(before)

    if p['state'] == 'present' and p['verify']:
        if not os_user_exists(p['name']):
            raise InstanceError('instance %s: OS user %s does not exist, so the login cannot be verified. Next: create '
                                'it (the irisops.backup.backup_user role does) or set verify=false'
                                % (inst['name'], p['name']))
        creds_user = (p['name'], p['user_password']) if p['auth'] == 'password' else None
        v = login_as_backup_user(inst, p, creds_user)
        res['verify'] = {'rc': v['rc'], 'ok': v['ok'], 'frozen': v.get('frozen'), 'command': v['command'],
                         'msg': v['msg'], 'stdout': _scrub_all(v.get('stdout'), secrets),
                         'stderr': _scrub_all(v.get('stderr'), secrets)}
        if not v['ok']:
            raise InstanceError(
                'instance %s: verification failed: IsWDSuspendedExt as OS user %s %s returned %s (expected 3 or 5)%s: '
                '%s. Command: %s. Next: %s' % (
                    inst['name'], p['name'], 'with the password on stdin' if creds_user else 'without credentials',
                    v['rc'], _error_lines(v, secrets), _scrub_all(v['msg'], secrets), ' '.join(v['command']),
                    verify_hint(p, inst, v)))
    res['msg'] = ('instance %s: %s' % (inst['name'], '; '.join(changes))) if changes else \
        'instance %s: nothing to change' % inst['name']
    if res['verify']:
        res['msg'] += '; IsWDSuspendedExt as %s returned %s' % (p['name'], res['verify']['rc'])
    return res


def _error_lines(v, secrets):
    """The ObjectScript error lines of a session (``<PROTECT> ...``), as ' (<...>; <...>)' or ''."""
    found = _iris.objectscript_errors(_scrub_all((v.get('stdout') or '') + '\n' + (v.get('stderr') or ''), secrets))
    return (' (%s)' % '; '.join(x.strip() for x in found[:3])) if found else ''


def verify_hint(p, inst, v):
    out = v.get('stdout') or ''
    needed = _iris.backup_role_resources(inst.get('flavour'))
    if 'PROTECT' in out:
        if p['custom_role']:
            return ('the custom role %s does not hold what Backup.General needs on this instance; the built-in list (%s) '
                    'is UNCONFIRMED: add the missing privilege named above to role_resources, or use %%Manager'
                    % (p['role'], p['role_resources']))
        return ('role %s lacks privileges Backup.General needs: give the user %%Manager, or set custom_role=true to '
                'create a least-privilege role with %s' % (p['role'], needed))
    hint = 'check the authentication settings of %s and the IRIS user' % TERMINAL_SERVICE
    if 'access denied' in out.lower() and p['role'].lower() not in ('%all', '%manager'):
        hint += ', and that role %s holds %s:U (the right to log in through it; see %s)' % (
            p['role'], TERMINAL_SERVICE, inst.get('messages_log') or 'the instance log')
    return hint


def _scrub_all(text, secrets):
    return _iris.scrub_secrets(text, secrets)


# ---------------------------------------------------------------------------------------------------------------

def main():
    argument_spec = _iris.common_argument_spec()
    argument_spec.update(
        name=dict(type='str', required=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        instances=dict(type='list', elements='str', default=['all'], aliases=['instance']),
        role=dict(type='str'),
        custom_role=dict(type='bool', default=False),
        role_resources=dict(type='str'),
        auth=dict(type='str', default='os', choices=['os', 'password']),
        user_password=dict(type='str', no_log=True),
        update_password=dict(type='str', default='always', choices=['always', 'on_create'], no_log=False),
        full_name=dict(type='str', default='irisops.backup external backup user'),
        enable_os_auth=dict(type='bool', default=True),
        disable_os_auth=dict(type='bool', default=False),
        verify=dict(type='bool', default=True),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[('auth', 'password', ('user_password',))],
    )
    p = module.params
    if p['role_resources'] is not None and not p['role_resources'].strip():
        p['role_resources'] = None
    if p['role_resources']:
        p['custom_role'] = True
    if not p['role']:
        p['role'] = DEFAULT_CUSTOM_ROLE if p['custom_role'] else '%Manager'
    result = dict(changed=False, instances=[], skipped=[], user=p['name'], role=p['role'], instance_results={})

    errors = _iris.validate_common(p)
    if not re.match(r'^[a-z_][a-z0-9_.-]*$', p['name'] or '', re.I) or len(p['name']) > 32:
        errors.append('name %r is not a valid OS user name (letters, digits, _ . -, at most 32 characters)' % p['name'])
    if not (p['role'] or '').strip() or ',' in p['role']:
        errors.append('role must be one role name (got %r)' % p['role'])
    if p['custom_role'] and p['role'].startswith('%'):
        errors.append('custom_role is set (or role_resources), so role %s would be created/changed; roles starting '
                      'with %% are reserved by InterSystems - choose another name (for example %s)'
                      % (p['role'], DEFAULT_CUSTOM_ROLE))
    for key in ('name', 'role', 'role_resources', 'full_name', 'user_password'):
        if p[key] is not None:
            try:
                _q(p[key])
            except ValueError:
                errors.append('%s must not contain control characters (newline, tab, ...)' % key)
    if errors:
        module.fail_json(msg='nothing changed: ' + '; '.join(errors), **result)

    sel = _iris.prepare_selection(p['instances'], run_as=p['run_as'])
    result['instances'] = [i['name'] for i in sel['selected']]
    if any(str(s).lower() == 'all' for s in p['instances']):
        result['skipped'] = [i['name'] for i in sel['instances'] if not i.get('ready')]
    if sel['errors']:
        module.fail_json(msg='nothing changed: ' + '; '.join(sel['errors']), **result)

    warnings = []
    for inst in sel['selected']:
        r = new_result(inst)
        result['instance_results'][inst['name']] = r
        try:
            process_instance(module, inst, p, r)
        except InstanceError as exc:
            r['msg'] = _scrub_all(str(exc), [s for s in (p['password'], p['user_password']) if s])
            r['failed'] = True
            result['changed'] = any(x.get('changed') for x in result['instance_results'].values())
            done = [n for n, x in result['instance_results'].items() if x.get('changed')]
            module.fail_json(msg='%s%s' % (r['msg'], ('. Changed before the failure: %s' % ', '.join(done))
                                           if done else ''), **result)
        warnings.extend(r['warnings'])
    result['changed'] = any(r['changed'] for r in result['instance_results'].values())
    for w in warnings:
        module.warn(w)
    if module._diff:
        result['diff'] = {
            'before': dict((n, r['before']) for n, r in result['instance_results'].items()),
            'after': dict((n, r['after']) for n, r in result['instance_results'].items()),
        }
    module.exit_json(msg='; '.join(r['msg'] for r in result['instance_results'].values()) or 'no instance selected',
                     **result)


if __name__ == '__main__':
    main()
