#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iris_restore
short_description: Restore IRIS/Cache from a verified backup
version_added: 0.2.0
description:
  - "Restores O(instance) of this host from a verified backup in the repository with the collection's on-host engine
    (the same code as C(irisops-backup restore), and the same code path as the restore drill): picks the backup
    (default the newest verified backup of this host, or O(backup)), restores every directory of the instance in the
    backup (databases, journal directories, WIJ) with restic into a staging directory on the same file system,
    renames the current directories aside and the restored ones into place, starts the instance, rolls the journals
    forward with C(Journal.Restore) from the backup's restore journal file (its manifest) to the newest journal record
    or O(until), and runs the integrity check on the restored databases."
  - "Guard rails, each checked before anything is written: O(confirm) must be the instance name; the instance must be
    down (C(iris qlist)); a mirror member, a directory of the backup that overlaps another instance or the drill
    directory, a directory missing from the backup and a file system without the room for the restored copy are
    refused."
  - "The current directories are kept aside (C(<dir>.irisops-before-<run id>), or C(<dir>/.irisops-before-<run id>)
    for a mount point) and never deleted by the module: RV(report.aside) says where they are. Any failure before the
    restored instance passed its checks stops the instance (when the restore had started it) and renames everything
    back. A restore that was killed is rolled back (or, once checked, finished) by the next run with the same
    confirmation, or by O(recover_only)."
  - "In check mode the engine's dry run: every check, and the plan (RV(report.plan): the backup, the journal file the
    roll-forward starts from, each directory and where its current files would be kept) without changing anything."
  - The steps and the manual fallback are described in the restore runbook (C(docs/restore-runbook.md)).
author:
  - irisops.backup maintainers (@irisops)
extends_documentation_fragment:
  - irisops.backup.iris.action_group
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Check mode runs the engine's dry run (C(irisops-backup restore --dry-run)) and reports the plan.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
options:
  config_file:
    description:
      - JSON configuration of the engine on the host (repository, secrets, host name); the C(lvm_backup) role
        writes C(/etc/irisops/backup.json). The repository password stays in the files it names.
    type: path
    default: /etc/irisops/backup.json
  instance:
    description:
      - The instance of this host to restore (its C(qlist) name).
    type: str
    required: true
  confirm:
    description:
      - The instance name again (compared without regard to case). Without it nothing is restored, and check mode
        reports the refusal after the plan.
    type: str
  backup:
    description:
      - A restic snapshot id (prefix) or a run id of a verified backup of this host; default the newest verified
        backup.
    type: str
  until:
    description:
      - Roll forward only to this time (C(YYYY-MM-DD HH:MM:SS), the instance's local time, as the journal records it);
        default to the newest journal record.
    type: str
  recover_only:
    description:
      - Only roll back (or, when it had passed its checks, finish) an interrupted restore of the instance; restore
        nothing new. With no interrupted restore, nothing is done (C(changed=false)).
    type: bool
    default: false
notes:
  - Run it as root (C(become)) on the host of the instance, with the engine installed (the C(lvm_backup) role, which
    also writes the configuration and the repository secrets).
  - A restore can take hours; from AWX or over a connection that may drop, use C(async), or run C(irisops-backup
    restore) on the host. A TERM, INT or HUP before the checks passed rolls the restore back.
  - The restore holds the host's backup run lock, so no backup run freezes and copies a half-restored instance.
seealso:
  - module: irisops.backup.iris_restore_drill
  - module: irisops.backup.iris_backup_info
"""

EXAMPLES = r"""
- name: Show what a restore of IRIS would do (nothing is changed)
  irisops.backup.iris_restore:
    instance: IRIS
    confirm: IRIS
  check_mode: true
  become: true
  register: plan

- name: Restore IRIS from backup run 20261207T020000Z-backup-4242, rolled forward to 14:30
  irisops.backup.iris_restore:
    instance: IRIS
    confirm: IRIS
    backup: 20261207T020000Z-backup-4242
    until: "2026-12-07 14:30:00"
  become: true
  register: restored

- name: Roll back a restore that was killed
  irisops.backup.iris_restore:
    instance: IRIS
    confirm: IRIS
    recover_only: true
  become: true
"""

RETURN = r"""
msg:
  description: What was done, in one line.
  returned: always
  type: str
report:
  description: The engine's report (C(irisops-backup restore --json)).
  returned: always
  type: dict
  contains:
    status:
      description: V(success), V(failed), or V(planned) in check mode.
      type: str
    backup_id:
      description: The restic snapshot restored (or to be restored).
      type: str
    backup_run_id:
      description: The run id of that backup.
      type: str
    restore_journal_file:
      description: The journal file the roll-forward starts from (the backup's manifest).
      type: str
    point_reached:
      description: The journal point the restored databases reached (file and offset).
      type: dict
    journal_chain:
      description: Each journal file applied and which copy was used (V(host), V(shipped) or V(backup)).
      type: list
      elements: dict
    checks:
      description: The journal restore and the integrity check, each with C(ok) and C(detail).
      type: list
      elements: dict
    actions:
      description: Every change made on the host, in order (including what a rollback undid).
      type: list
      elements: str
    aside:
      description: Where the files each directory had before the restore are kept (C(dir), C(aside), C(bytes)).
      type: list
      elements: dict
    plan:
      description: Check mode - what the restore would do, one line each.
      type: list
      elements: str
    units:
      description: Check mode - each directory the restore would replace and where its current files would go.
      type: list
      elements: dict
    unfinished:
      description: Check mode - an interrupted restore a run would first roll back or finish (C(run_id), C(phase),
        C(action), C(state_file)).
      type: dict
    recovered:
      description: What was done about an interrupted restore (C(action) V(rolled back), V(finished) or V(none)).
      type: dict
    rto_s:
      description: Seconds from the start of the restore to the instance running, rolled forward and checked.
      type: float
    warnings:
      description: Warnings, including where the previous files are kept.
      type: list
      elements: str
    report_file:
      description: Where the report was saved on the host.
      type: str
    error:
      description: What failed, with what to do next.
      type: str
report_text:
  description: The report as text (in check mode followed by the plan).
  returned: always
  type: str
"""

import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.irisops.backup.plugins.module_utils import _backup
from ansible_collections.irisops.backup.plugins.module_utils import _freeze
from ansible_collections.irisops.backup.plugins.module_utils import _restore


def recover_preview(res):
    """Check mode with recover_only: the checks of a recovery run (the confirmation, the instance) and the
    interrupted restore it would roll back or finish; no new restore is planned."""
    rep = res.report
    why = res.confirmation_error()
    if not why:
        try:
            res._discover()  # pylint: disable=protected-access
        except _restore.RestoreError as exc:
            why = str(exc)
    if why:
        rep.update(status='failed', error=why)
        return rep
    old = _freeze.read_json(res.state_path)
    if old:
        rep['unfinished'] = {'run_id': old.get('run_id'), 'phase': old.get('phase'), 'state_file': res.state_path,
                             'action': 'finish' if old.get('phase') == _restore.COMMITTED else 'roll back'}
    rep['status'] = 'planned'
    return rep


def preview_text(rep):
    lines = []
    unfinished = rep.get('unfinished')
    if unfinished:
        lines.append('would first %s the interrupted restore %s (phase %s, state file %s)' % (
            unfinished['action'], unfinished['run_id'], unfinished['phase'], unfinished['state_file']))
    lines += rep.get('plan') or []
    return ''.join('plan: %s\n' % line for line in lines)


def main():
    module = AnsibleModule(argument_spec=dict(
        config_file=dict(type='path', default=_backup.DEFAULT_CONFIG), instance=dict(type='str', required=True),
        confirm=dict(type='str'), backup=dict(type='str'), until=dict(type='str'),
        recover_only=dict(type='bool', default=False),
    ), supports_check_mode=True)
    p = module.params
    try:
        with open(p['config_file']) as f:
            raw = json.load(f)
    except (IOError, OSError, ValueError) as exc:
        module.fail_json(msg='nothing restored: cannot read config_file %s: %s. Next: apply the role '
                         'irisops.backup.lvm_backup (lvm_backup_run: false installs the engine and writes '
                         '/etc/irisops/backup.json), or give config_file' % (p['config_file'], exc), report={},
                         report_text='')
    cfg, errors = _backup.validate_config(raw)
    if errors:
        module.fail_json(msg='nothing restored: ' + '; '.join(errors), report={}, report_text='')
    res = _restore.Restore(_backup.Repository(cfg), cfg, p['instance'], confirm=p['confirm'], backup_id=p['backup'],
                           until=p['until'], host=_backup.host_name(cfg), recover_only=p['recover_only'],
                           backup_lock=None if module.check_mode else _backup.RunLock(_freeze.state_dir()))
    name = res.instance or p['instance']
    if module.check_mode:
        rep = recover_preview(res) if p['recover_only'] else res.preview()
        text = _restore.restore_text(rep) + preview_text(rep)
        if rep['status'] != 'planned':
            module.fail_json(msg='restore of instance %s failed (check mode, nothing was changed): %s' % (
                name, rep.get('error')), report=rep, report_text=text, changed=False)
        if p['recover_only']:
            would = bool(rep.get('unfinished'))
            msg = ('check mode: would %s the interrupted restore %s' % (
                rep['unfinished']['action'], rep['unfinished']['run_id']) if would
                else 'check mode: no unfinished restore of %s' % name)
        else:
            would = True
            msg = 'check mode: would restore backup %s of %s (journals from %s on%s)%s' % (
                (rep.get('backup_id') or '')[:8], name, rep.get('restore_journal_file'),
                (' until %s' % p['until']) if p['until'] else '',
                (', after the %s of the interrupted restore %s' % (
                    'finish' if rep['unfinished']['action'] == 'finish' else 'rollback',
                    rep['unfinished']['run_id'])) if rep.get('unfinished') else '')
        module.exit_json(changed=would, msg=msg, report=rep, report_text=text)
    rep = res.run()
    text = _restore.restore_text(rep)
    for warning in rep.get('warnings') or []:
        module.warn(warning)
    changed = bool(rep.get('actions'))
    if rep['status'] != 'success':
        module.fail_json(msg='restore of instance %s failed: %s' % (name, rep.get('error')), report=rep,
                         report_text=text, changed=changed)
    recovered = rep.get('recovered') or {}
    if recovered and (p['recover_only'] or recovered.get('finished')):
        msg = recovered.get('text') or ''
        if recovered.get('finished') and not p['recover_only']:
            msg += '; nothing new was restored (run again for a new restore)'
    else:
        msg = 'backup %s of %s restored, rolled forward to %s and checked in %s s; the previous files are kept in %s' % (
            (rep.get('backup_id') or '')[:8], name, rep.get('point_reached'), rep.get('rto_s'),
            ', '.join(a['aside'] for a in rep.get('aside') or []) or '-')
    module.exit_json(changed=changed, msg=msg, report=rep, report_text=text)


if __name__ == '__main__':
    main()
