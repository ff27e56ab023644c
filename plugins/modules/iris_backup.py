#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iris_backup
short_description: Back up IRIS/Cache on LVM into restic
version_added: 0.2.0
description:
  - "Runs one whole backup of the IRIS and Cache instances of the host with the collection's on-host backup engine,
    the same code as the C(irisops-backup run) command that the systemd timer of the C(irisops.backup.lvm_backup) role
    runs: preflight; freeze, LVM snapshots and thaw (the freeze engine: host freeze lock, dead-man switches armed
    before the freeze, validity check before the thaw); mount read-only; C(restic backup) into the repository;
    snapshot fill checked; LVM snapshots removed; verification in the repository (C(restic check), every file read
    present with its size, optionally a restore checked by a command); the restic snapshot tagged C(verified);
    C(ExternalSetHistory) only then; retention with a floor; report and Prometheus metrics."
  - A backup is complete only when its restic snapshot carries the tag C(verified). Any failure thaws, removes the LVM
    snapshots and forgets the run's restic snapshot; C(ExternalSetHistory) is never called for it.
  - With O(config_file) the settings come from that JSON file on the host (what the role installs); options given to
    the module override single settings.
  - The repository password is read from O(repository_password_file) on the host or given as O(repository_password)
    (written to a private temporary file for the run and removed; never on a command line).
author:
  - irisops.backup maintainers (@irisops)
extends_documentation_fragment:
  - irisops.backup.iris.action_group
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: none
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
      - JSON configuration of the backup engine on the host (the C(lvm_backup) role writes C(/etc/irisops/backup.json)).
        The keys are the options of this module without C(config_file), C(run_id) and the passwords.
    type: path
  run_id:
    description:
      - Identifier of the run (letters, digits, C(.), C(_), C(:), C(-)); generated from the time and pid when omitted.
    type: str
  repository:
    description:
      - The restic repository, an absolute path on the host or C(sftp:user@host:/absolute/path).
    type: str
  repository_password:
    description:
      - Password of the repository (alternative to O(repository_password_file)).
    type: str
  repository_password_file:
    description:
      - File on the host holding the repository password (root 0600).
    type: path
  repository_password_credential:
    description:
      - A systemd encrypted credential file (C(systemd-creds encrypt --name=restic-password)) holding the repository
        password; decrypted by C(systemd-creds) into a pipe each time restic needs it (systemd 250 or later, root).
    type: path
  password_credential:
    description:
      - A systemd encrypted credential file (C(--name=iris-password)) holding the IRIS password of O(username).
    type: path
  repository_ssh_key:
    description:
      - SSH private key for an C(sftp:) repository.
    type: path
  repository_known_hosts:
    description:
      - known_hosts file for an C(sftp:) repository (host key checking is strict when given).
    type: path
  repository_ssh_port:
    description:
      - SSH port of an C(sftp:) repository.
    type: int
  instances:
    description:
      - Instances to back up, or V(all) running ones.
    type: list
    elements: str
  volumes:
    description:
      - Extra LVs to snapshot (V(vg/lv), an absolute path, or a dictionary as in M(irisops.backup.iris_lvm_snapshot)).
    type: list
    elements: raw
  snapshot_size:
    description:
      - Size of each LVM snapshot (V(2G), V(20%ORIGIN), ...).
    type: str
  snapshot_suffix:
    description:
      - Suffix of the snapshot LV names.
    type: str
  existing:
    description:
      - Snapshots an earlier run left behind (tagged by the collection) - V(remove) them before the freeze, or V(fail).
    type: str
    choices: [fail, remove]
  unmapped_directories:
    description:
      - A directory of an instance that is not on LVM - V(fail), or V(warn) and back up the rest.
    type: str
    choices: [fail, warn]
  include_install_dir:
    description:
      - Snapshot the installation directory too.
    type: bool
  mirror_primary:
    description:
      - Policy for mirror primaries (see M(irisops.backup.iris_lvm_snapshot)).
    type: str
    choices: [freeze, skip, fail]
  freeze_mode:
    description:
      - V(together) or V(staggered) (see M(irisops.backup.iris_lvm_snapshot)).
    type: str
    choices: [together, staggered]
  external_freeze_timeout:
    description:
      - ExternalFreezeTimeOut in seconds (IRIS default 600).
    type: int
  max_freeze_seconds:
    description:
      - Freeze budget in seconds (default 90% of the ExternalFreezeTimeOut).
    type: int
  wd_suspend_limit:
    description:
      - WDSuspendLimit of ExternalFreeze in seconds.
    type: int
  deadman_timeout:
    description:
      - Dead-man switch timeout in seconds (0 = none; default from the ExternalFreezeTimeOut).
    type: int
  run_as:
    description:
      - OS user of the IRIS sessions (default the instance's manager user).
    type: str
  username:
    description:
      - IRIS user for instances that need a password login.
    type: str
  password:
    description:
      - Password of O(username); never logged, fed on standard input.
    type: str
  session_timeout:
    description:
      - Seconds one IRIS session may take.
    type: int
  stat_fallback:
    description:
      - Resume the write daemon with C(iris stat INST -W) when ExternalThaw fails.
    type: bool
  restic_binary:
    description:
      - The restic command (looked up on PATH unless absolute).
    type: str
  restic_cache_dir:
    description:
      - restic's cache directory on the host.
    type: path
  compression:
    description:
      - restic compression.
    type: str
    choices: [auto, max, 'off']
  verify_read_data_subset:
    description:
      - C(restic check --read-data-subset) after the backup (V(10%), V(1/5); empty for structure only).
    type: str
  verify_restore_command:
    description:
      - Command run on a restore of the new snapshot into a temporary directory (the directory is appended); exit
        status 0 = good. Restores the whole backup, so use it for small databases or tests.
    type: list
    elements: str
  set_history:
    description:
      - Record the backup with ExternalSetHistory once it is verified in the repository (may purge journal files).
    type: bool
  retention:
    description:
      - restic keep policy (C(keep_last), C(keep_hourly), C(keep_daily), C(keep_weekly), C(keep_monthly),
        C(keep_yearly)).
    type: dict
  min_keep:
    description:
      - Never fewer than this many verified backups (and never the newest) are removed by the retention.
    type: int
  prune:
    description:
      - Run C(restic prune) after the retention removed snapshots.
    type: bool
  mount_root:
    description:
      - Where the snapshots are mounted read-only during the copy.
    type: path
  report_dir:
    description:
      - Where the JSON and text reports are written.
    type: path
  metrics_file:
    description:
      - node_exporter textfile the metrics are written to (atomically).
    type: path
notes:
  - Run it as root (C(become)); it needs C(lvm2) and C(restic) on the host (the C(lvm_backup) role installs them).
  - Every option has the default of the engine (C(_backup.CONFIG_DEFAULTS)) when neither the option nor the
    configuration file sets it; C(docs/lvm-backup.md) lists them.
seealso:
  - module: irisops.backup.iris_backup_info
  - module: irisops.backup.iris_lvm_snapshot
"""

EXAMPLES = r"""
- name: Back up every instance of the host into an sftp repository
  irisops.backup.iris_backup:
    repository: sftp:backup@repo.example.com:/srv/restic/iris
    repository_password: "{{ vault_restic_password }}"
    repository_ssh_key: /root/.ssh/irisops_repo
    repository_known_hosts: /etc/irisops/repo_known_hosts
    instances: all
    retention: {keep_daily: 7, keep_weekly: 4, keep_monthly: 6}
  become: true
  register: backup

- name: Same, with the configuration the lvm_backup role installed
  irisops.backup.iris_backup:
    config_file: /etc/irisops/backup.json
  become: true
"""

RETURN = r"""
report:
  description: The run's report (also saved under O(report_dir)).
  returned: always
  type: dict
  contains:
    status:
      description: V(success) or V(failed).
      type: str
    run_id:
      description: The run id.
      type: str
    error:
      description: What failed, with what to do next.
      type: str
    failed_step:
      description: The step that failed (preflight, freeze, mount, copy, cleanup, verify, history, retention).
      type: str
    freeze_window_ms:
      description: The longest freeze window.
      type: int
    instances:
      description: Per instance, the journal file and marker to restore from, the freeze window, history recorded.
      type: dict
    volumes:
      description: Per LV, files and bytes read, snapshot fill at the end of the copy.
      type: list
      elements: dict
    restic:
      description: The repository snapshot id, bytes read and added, files new/changed/unchanged.
      type: dict
    checks:
      description: The verification steps with their result.
      type: list
      elements: dict
    retention:
      description: Verified backups kept, snapshots forgotten, the ones the floor protected.
      type: dict
report_text:
  description: The report as text (what C(irisops-backup run) prints).
  returned: always
  type: str
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.irisops.backup.plugins.module_utils import _backup
from ansible_collections.irisops.backup.plugins.module_utils import _freeze

#: Module options that are not engine settings.
NOT_SETTINGS = ('config_file', 'run_id', 'repository_password', 'password')


def argument_spec():
    return dict(
        config_file=dict(type='path'), run_id=dict(type='str'), repository=dict(type='str'),
        repository_password=dict(type='str', no_log=True), repository_password_file=dict(type='path', no_log=False),
        repository_password_credential=dict(type='path', no_log=False),
        password_credential=dict(type='path', no_log=False),
        repository_ssh_key=dict(type='path', no_log=False), repository_known_hosts=dict(type='path'),
        repository_ssh_port=dict(type='int'), instances=dict(type='list', elements='str'),
        volumes=dict(type='list', elements='raw'), snapshot_size=dict(type='str'), snapshot_suffix=dict(type='str'),
        existing=dict(type='str', choices=['fail', 'remove']),
        unmapped_directories=dict(type='str', choices=['fail', 'warn']), include_install_dir=dict(type='bool'),
        mirror_primary=dict(type='str', choices=['freeze', 'skip', 'fail']),
        freeze_mode=dict(type='str', choices=['together', 'staggered']), external_freeze_timeout=dict(type='int'),
        max_freeze_seconds=dict(type='int'), wd_suspend_limit=dict(type='int'), deadman_timeout=dict(type='int'),
        run_as=dict(type='str'), username=dict(type='str'), password=dict(type='str', no_log=True),
        session_timeout=dict(type='int'), stat_fallback=dict(type='bool'),
        restic_binary=dict(type='str'), restic_cache_dir=dict(type='path'),
        compression=dict(type='str', choices=['auto', 'max', 'off']), verify_read_data_subset=dict(type='str'),
        verify_restore_command=dict(type='list', elements='str'), set_history=dict(type='bool'),
        retention=dict(type='dict'), min_keep=dict(type='int'), prune=dict(type='bool'),
        mount_root=dict(type='path'), report_dir=dict(type='path'), metrics_file=dict(type='path'),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=False,
                           mutually_exclusive=[('repository_password', 'repository_password_file')])
    p = module.params
    raw = {}
    if p['config_file']:
        try:
            import json
            with open(p['config_file']) as f:
                raw = json.load(f)
        except (IOError, OSError, ValueError) as exc:
            module.fail_json(msg='nothing frozen: cannot read config_file %s: %s' % (p['config_file'], exc),
                             report={}, report_text='')
    raw.update(dict((k, v) for k, v in p.items() if k not in NOT_SETTINGS and v is not None))
    cfg, errors = _backup.validate_config(raw)
    if p['run_id']:
        err = _freeze.check_run_id(p['run_id'])
        if err:
            errors.append(err)
    if errors:
        module.fail_json(msg='nothing frozen: ' + '; '.join(errors), report={}, report_text='')
    cfg['password'] = p['password']
    pw_path, tmpdir = None, None
    if p['repository_password']:
        tmpdir = tempfile.mkdtemp(prefix='irisops-backup-')
        pw_path = os.path.join(tmpdir, 'repository-password')
        fd = os.open(pw_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(p['repository_password'] + '\n')
    try:
        rep = _backup.BackupRun(cfg, run_id=p['run_id'], password_path=pw_path).run()
    finally:
        if tmpdir:
            import shutil
            shutil.rmtree(tmpdir, ignore_errors=True)
    text = _backup.report_text(rep)
    for w in rep.get('warnings') or []:
        module.warn(w)
    if rep['status'] != 'success':
        module.fail_json(msg='backup %s failed in %s: %s' % (rep['run_id'], rep.get('failed_step'), rep.get('error')),
                         report=rep, report_text=text, changed=rep.get('restic') is not None)
    module.exit_json(changed=True, msg='backup %s verified in %s (restic snapshot %s)' % (
        rep['run_id'], cfg['repository'], (rep.get('restic') or {}).get('snapshot_id', '')[:8]), report=rep,
        report_text=text)


if __name__ == '__main__':
    main()
