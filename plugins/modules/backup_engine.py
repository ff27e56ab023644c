#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: backup_engine
short_description: Install the on-host engine and irisops-backup
version_added: 0.2.0
description:
  - Installs the collection's on-host engine (the standard-library Python files of C(plugins/module_utils) that
    freeze, snapshot, copy and verify) verbatim into O(lib_dir), and the command O(command_path)
    (C(irisops-backup)), which the systemd timer of the C(irisops.backup.lvm_backup) role runs without ansible-core
    on the host.
  - The files are the ones this module was shipped with, so the host runs exactly the code of the collection
    version that installed it. Files that are already identical are not rewritten (idempotent).
  - With O(state=absent) removes what it installed (only files it would install).
author:
  - irisops.backup maintainers (@irisops)
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
options:
  state:
    description:
      - V(present) installs or updates, V(absent) removes.
    type: str
    choices: [present, absent]
    default: present
  lib_dir:
    description:
      - Directory of the engine files (root 0755, files 0644).
    type: path
    default: /usr/local/lib/irisops
  command_path:
    description:
      - Path of the C(irisops-backup) command.
    type: path
    default: /usr/local/sbin/irisops-backup
  python:
    description:
      - Python 3 interpreter the command runs the engine with.
    type: path
    default: /usr/bin/python3
notes:
  - Run it as root (C(become)).
seealso:
  - module: irisops.backup.iris_backup
"""

EXAMPLES = r"""
- name: Install irisops-backup
  irisops.backup.backup_engine:
  become: true
"""

RETURN = r"""
files:
  description: The files installed (or that would be, in check mode), with whether each changed.
  returned: always
  type: dict
  sample: {"/usr/local/lib/irisops/_backup.py": true}
version:
  description: Version of the engine (C(irisops-backup) prints it in its reports).
  returned: always
  type: str
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.irisops.backup.plugins.module_utils import _backup
from ansible_collections.irisops.backup.plugins.module_utils import _drill
from ansible_collections.irisops.backup.plugins.module_utils import _freeze
from ansible_collections.irisops.backup.plugins.module_utils import _iris
from ansible_collections.irisops.backup.plugins.module_utils import _journal
from ansible_collections.irisops.backup.plugins.module_utils import _lvm
from ansible_collections.irisops.backup.plugins.module_utils import _restic
from ansible_collections.irisops.backup.plugins.module_utils import _restore
from ansible_collections.irisops.backup.plugins.module_utils import _run
from ansible_collections.irisops.backup.plugins.module_utils import _snapset

MODULES = {'_run.py': _run, '_iris.py': _iris, '_lvm.py': _lvm, '_freeze.py': _freeze, '_snapset.py': _snapset,
           '_restic.py': _restic, '_journal.py': _journal, '_drill.py': _drill, '_restore.py': _restore,
           '_backup.py': _backup}

WRAPPER = '''#!/bin/sh
# irisops-backup: the on-host backup engine of the irisops.backup collection (installed by its backup_engine module;
# the code is in %(lib)s).  See `irisops-backup --help`.
exec %(python)s -I -B %(lib)s/_backup.py "$@"
'''


def _same(path, text):
    try:
        with open(path, 'rb') as f:
            return f.read().decode('utf-8', 'replace') == text
    except (IOError, OSError):
        return False


def _write(path, text, mode):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix='.irisops-', dir=directory)
    with os.fdopen(fd, 'wb') as f:
        f.write(text.encode('utf-8'))
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def main():
    module = AnsibleModule(argument_spec=dict(
        state=dict(type='str', default='present', choices=['present', 'absent']),
        lib_dir=dict(type='path', default='/usr/local/lib/irisops'),
        command_path=dict(type='path', default='/usr/local/sbin/irisops-backup'),
        python=dict(type='path', default='/usr/bin/python3'),
    ), supports_check_mode=True)
    p = module.params
    wanted = dict((os.path.join(p['lib_dir'], name), (_freeze.module_source(mod), 0o644))
                  for name, mod in MODULES.items())
    wanted[p['command_path']] = (WRAPPER % dict(lib=p['lib_dir'], python=p['python']), 0o755)
    files = {}
    if p['state'] == 'absent':
        for path in sorted(wanted):
            files[path] = os.path.exists(path)
            if files[path] and not module.check_mode:
                os.unlink(path)
        if os.path.isdir(p['lib_dir']) and not os.listdir(p['lib_dir']) and not module.check_mode:
            os.rmdir(p['lib_dir'])
        module.exit_json(changed=any(files.values()), files=files, version=_backup.VERSION)
    for path, (text, mode) in sorted(wanted.items()):
        files[path] = not _same(path, text) or (os.path.exists(path) and (os.stat(path).st_mode & 0o777) != mode)
    if not module.check_mode and any(files.values()):
        for d in set(os.path.dirname(f) for f in wanted):
            if not os.path.isdir(d):
                os.makedirs(d, 0o755)
        for path, changed in files.items():
            if changed:
                _write(path, *wanted[path])
    module.exit_json(changed=any(files.values()), files=files, version=_backup.VERSION)


if __name__ == '__main__':
    main()
