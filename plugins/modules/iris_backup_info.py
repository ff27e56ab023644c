#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iris_backup_info
short_description: IRIS/Cache backups in a restic repository
version_added: 0.2.0
description:
  - Lists the backups the collection wrote into a restic repository (the catalogue of C(irisops-backup list)), newest
    first, each with its manifest (instances, the journal file and marker offset to restore from, the LVs and
    directories, the freeze window, the checks), read from the backup itself.
  - A backup is complete only when its restic snapshot carries the tag C(verified); others are listed with
    RV(backups[].complete=false) (a run that was killed before its verification; the next run forgets them).
author:
  - irisops.backup maintainers (@irisops)
extends_documentation_fragment:
  - irisops.backup.iris.action_group
  - irisops.backup.iris.info_module
options:
  config_file:
    description:
      - JSON configuration of the backup engine on the host (repository, password file, ssh options).
    type: path
  repository:
    description:
      - The restic repository (overrides the configuration file).
    type: str
  repository_password:
    description:
      - Password of the repository (alternative to O(repository_password_file)).
    type: str
  repository_password_file:
    description:
      - File on the host holding the repository password.
    type: path
  repository_ssh_key:
    description:
      - SSH private key for an C(sftp:) repository.
    type: path
  repository_known_hosts:
    description:
      - known_hosts file for an C(sftp:) repository.
    type: path
  all_hosts:
    description:
      - List the backups of every host in the repository, not only of this host.
    type: bool
    default: false
  manifests:
    description:
      - Read each backup's manifest from the repository (one C(restic dump) per backup).
    type: bool
    default: true
seealso:
  - module: irisops.backup.iris_backup
"""

EXAMPLES = r"""
- name: The newest complete backup of this host and where its journal restore starts
  irisops.backup.iris_backup_info:
    config_file: /etc/irisops/backup.json
  become: true
  register: catalogue

- name: Show it
  ansible.builtin.debug:
    msg: "{{ (catalogue.backups | selectattr('complete') | first).manifest.instances }}"
"""

RETURN = r"""
backups:
  description: The backups, newest first.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: restic snapshot id.
      type: str
    time:
      description: When the backup was taken (restic's time, UTC).
      type: str
    host:
      description: The host it was taken on.
      type: str
    run_id:
      description: The run id of the backup.
      type: str
    instances:
      description: Instances in the backup.
      type: list
      elements: str
    complete:
      description: Whether the backup was verified (only a verified backup is a backup).
      type: bool
    manifest:
      description: The manifest stored inside the backup (null when not read or missing).
      type: dict
"""

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.irisops.backup.plugins.module_utils import _backup


def main():
    module = AnsibleModule(argument_spec=dict(
        config_file=dict(type='path'), repository=dict(type='str'),
        repository_password=dict(type='str', no_log=True), repository_password_file=dict(type='path', no_log=False),
        repository_ssh_key=dict(type='path', no_log=False), repository_known_hosts=dict(type='path'),
        all_hosts=dict(type='bool', default=False), manifests=dict(type='bool', default=True),
    ), supports_check_mode=True, mutually_exclusive=[('repository_password', 'repository_password_file')])
    p = module.params
    raw = {}
    if p['config_file']:
        try:
            import json
            with open(p['config_file']) as f:
                raw = json.load(f)
        except (IOError, OSError, ValueError) as exc:
            module.fail_json(msg='cannot read config_file %s: %s' % (p['config_file'], exc), backups=[])
    for key in ('repository', 'repository_password_file', 'repository_ssh_key', 'repository_known_hosts'):
        if p[key]:
            raw[key] = p[key]
    cfg, errors = _backup.validate_config(raw)
    errors = [e for e in errors if not e.startswith('unknown setting')]
    if errors:
        module.fail_json(msg='; '.join(errors), backups=[])
    tmpdir = pw_path = None
    if p['repository_password']:
        tmpdir = tempfile.mkdtemp(prefix='irisops-info-')
        pw_path = os.path.join(tmpdir, 'pw')
        fd = os.open(pw_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(p['repository_password'] + '\n')
    try:
        repo = _backup.Repository(cfg, pw_path)
        backups = _backup.catalogue(repo, host=None if p['all_hosts'] else _backup.host_name(cfg),
                                    with_manifest=p['manifests'])
    except _backup.BackupError as exc:
        module.fail_json(msg=str(exc), backups=[])
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    module.exit_json(changed=False, backups=backups)


if __name__ == '__main__':
    main()
