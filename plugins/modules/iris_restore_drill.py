#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iris_restore_drill
short_description: Prove an IRIS/Cache backup restorable
version_added: 0.2.0
description:
  - "Runs a restore drill with the collection's on-host engine (the same code as C(irisops-backup drill)): picks a
    backup of O(instance) from the repository (default the newest verified one of O(source_host)), restores it and
    the shipped journal files under O(drill_root), rolls the journals forward from the backup's restore journal file
    (its manifest) into the restored databases with C(Journal.Restore) in a dedicated drill instance
    (O(drill_instance), never a production instance), to the newest shipped journal or O(until), runs the integrity
    check on the restored databases, removes the restored files and reports - the backup, the point reached (never
    more than certain), the integrity result and the measured RTO."
  - A O(drill_root) that overlaps a directory of any instance of the host is refused before anything is written.
  - The result joins the backup's catalogue entry in the repository (a small snapshot tagged C(irisops-drill)) and
    the drill metrics (node_exporter textfile).
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
      - JSON configuration of the engine on the host (repository, secrets, drill settings); the C(lvm_backup) role
        writes C(/etc/irisops/backup.json).
    type: path
    default: /etc/irisops/backup.json
  instance:
    description:
      - The instance of the backup to drill (its name on the source host).
    type: str
    required: true
  source_host:
    description:
      - Whose backups (the host name they were taken on); default this host.
    type: str
  backup:
    description:
      - A restic snapshot id (prefix) or a run id; default the newest verified backup.
    type: str
  until:
    description:
      - Roll forward only to this time (C(YYYY-MM-DD HH:MM:SS), the instance's local time, as the journal records it).
    type: str
  drill_instance:
    description:
      - The installed instance the journal restore and the integrity check run in (default the configuration's
        C(drill_instance)).
    type: str
  drill_root:
    description:
      - Where the backup and the journals are restored (default the configuration's C(drill_root)).
    type: path
  keep:
    description:
      - Keep the restored files after the drill.
    type: bool
    default: false
notes:
  - Run it as root (C(become)) on a host with the engine installed (the C(lvm_backup) role with
    C(lvm_backup_run=false) installs it and the repository access on a drill host).
seealso:
  - module: irisops.backup.iris_backup_info
  - module: irisops.backup.iris_backup
"""

EXAMPLES = r"""
- name: Prove the newest backup of IRIS on iris01 restorable, on this drill host
  irisops.backup.iris_restore_drill:
    instance: IRIS
    source_host: iris01
    drill_instance: DRILL
  become: true
  register: drill
"""

RETURN = r"""
report:
  description: The drill's report.
  returned: always
  type: dict
  contains:
    status:
      description: V(success) or V(failed).
      type: str
    backup_id:
      description: The restic snapshot drilled.
      type: str
    point_reached:
      description: The journal point the restored databases reached (file, offset or time).
      type: dict
    integrity:
      description: The integrity check's result.
      type: dict
    rto_s:
      description: Seconds from the start of the restore to the databases checked.
      type: float
    rto_phases_s:
      description:
        - Where C(rto_s) went, in seconds per phase, in order - C(restore_backup), C(restore_journals),
          C(start_drill_instance), C(journal_restore), C(integrity_check); a failed drill lists the phases it ended.
      type: dict
    error:
      description: What failed, with what to do next.
      type: str
report_text:
  description: The report as text.
  returned: always
  type: str
"""

import json
import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.irisops.backup.plugins.module_utils import _backup
from ansible_collections.irisops.backup.plugins.module_utils import _drill


def main():
    module = AnsibleModule(argument_spec=dict(
        config_file=dict(type='path', default=_backup.DEFAULT_CONFIG), instance=dict(type='str', required=True),
        source_host=dict(type='str'), backup=dict(type='str'), until=dict(type='str'),
        drill_instance=dict(type='str'), drill_root=dict(type='path'), keep=dict(type='bool', default=False),
    ), supports_check_mode=False)
    p = module.params
    try:
        with open(p['config_file']) as f:
            raw = json.load(f)
    except (IOError, OSError, ValueError) as exc:
        module.fail_json(msg='nothing restored: cannot read config_file %s: %s' % (p['config_file'], exc), report={},
                         report_text='')
    cfg, errors = _backup.validate_config(raw)
    if p['drill_root']:
        cfg['drill_root'] = p['drill_root']
    if errors:
        module.fail_json(msg='nothing restored: ' + '; '.join(errors), report={}, report_text='')
    repo = _backup.Repository(cfg)
    host = _backup.host_name(cfg)
    drill = _drill.Drill(repo, cfg, p['source_host'] or host or socket.gethostname(), p['instance'].upper(),
                         backup_id=p['backup'], until=p['until'], drill_instance=p['drill_instance'], keep=p['keep'])
    rep = drill.run()
    rep['recorded'] = _drill.record_drill(repo, rep, host) if rep.get('backup_id') else False
    if cfg.get('drill_metrics_file'):
        try:
            _backup.write_metrics(cfg['drill_metrics_file'], _drill.drill_metrics_text(host, rep))
        except (IOError, OSError) as exc:
            module.warn('drill metrics not written: %s' % exc)
    text = _drill.drill_text(rep)
    if rep['status'] != 'success':
        module.fail_json(msg='restore drill of %s failed: %s' % (p['instance'], rep.get('error')), report=rep,
                         report_text=text, changed=True)
    module.exit_json(changed=True, msg='backup %s of %s restored, rolled forward to %s and checked in %s s' % (
        (rep.get('backup_id') or '')[:8], p['instance'], rep.get('point_reached'), rep.get('rto_s')), report=rep,
        report_text=text)


if __name__ == '__main__':
    main()
