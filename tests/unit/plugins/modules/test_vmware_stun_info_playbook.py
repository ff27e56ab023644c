# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""irisops.backup.vmware_stun_info end to end: ansible-playbook against localhost (connection local) on sample logs.

The play (playbooks/vmware_stun_info.yml next to this file) asserts the results itself; this test prepares the log
folder, runs the play with the collection as it resolves for these unit tests, and checks the outcome and warnings.
"""

from __future__ import absolute_import, division, print_function

import gzip
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

from ansible_collections.irisops.backup.plugins.module_utils import _vmware

__metaclass__ = type

HERE = os.path.dirname(os.path.abspath(__file__))
PLAYBOOK = os.path.join(HERE, 'playbooks', 'vmware_stun_info.yml')
FIXTURES = os.path.join(HERE, '..', 'module_utils', 'fixtures', 'vmware')
# .../ansible_collections/irisops/backup/plugins/module_utils/_vmware.py -> the directory holding ansible_collections
COLLECTIONS_ROOT = os.path.abspath(os.path.join(os.path.dirname(_vmware.__file__), *(['..'] * 5)))


def _ansible_playbook():
    candidate = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    return candidate if os.path.isfile(candidate) else shutil.which('ansible-playbook')


def _why_not_runnable():
    """The reason this test cannot run here, or None."""
    # ansible-test units runs the tests under tests/unit/plugins/modules with only ansible.module_utils importable
    # (its injector's ansible-playbook then dies with "No module named 'ansible.cli'")
    try:
        controller = importlib.util.find_spec('ansible.cli') is not None
    except ImportError:
        controller = False
    if not controller:
        return ('ansible.cli is not importable here (ansible-test units gives module tests only ansible.module_utils), '
                'so ansible-playbook cannot run; this end-to-end test runs under plain pytest: '
                'pytest tests/unit, tests/run-all.sh, tests/compat/run.sh')
    if _ansible_playbook() is None:
        return 'ansible-playbook is not installed next to this Python nor on PATH'
    return None


@pytest.mark.skipif(_why_not_runnable() is not None, reason=str(_why_not_runnable()))
def test_playbook_against_localhost(tmp_path):
    logdir = tmp_path / 'db1'
    logdir.mkdir()
    shutil.copy(os.path.join(FIXTURES, 'vmware-seed.log'), str(logdir / 'vmware.log'))
    with open(os.path.join(FIXTURES, 'vmware-esxi7.log'), 'rb') as src:
        with gzip.open(str(logdir / 'vmware-1.log.gz'), 'wb') as dst:
            dst.write(src.read())
    (logdir / 'db1.vmx').write_text(u'displayName = "db1"\n')
    env = dict(os.environ,
               ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_ROOT,
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'ansible-tmp'),
               ANSIBLE_REMOTE_TEMP=str(tmp_path / 'ansible-remote-tmp'),
               ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', ANSIBLE_RETRY_FILES_ENABLED='false',
               ANSIBLE_STDOUT_CALLBACK='default', ANSIBLE_DEPRECATION_WARNINGS='false')
    argv = [_ansible_playbook(), '-i', 'localhost,', '-c', 'local', PLAYBOOK,
            '-e', 'stun_logdir=%s' % logdir, '-e', 'ansible_python_interpreter=%s' % sys.executable]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          env=env, timeout=300, check=False)
    out = proc.stdout
    assert proc.returncode == 0, out
    recap = re.search(r'localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+'
                      r'skipped=(\d+)\s+rescued=(\d+)', out)
    assert recap, out
    ok, changed, unreachable, failed, skipped, rescued = (int(x) for x in recap.groups())
    # 9 tasks before the block + the rescue assert (the failing task is "rescued", "Not reached" is not reached)
    assert (ok, changed, unreachable, failed, skipped, rescued) == (10, 0, 0, 0, 0, 1), out
    # the risky runs warned: the folder run (its check-mode twin gives the same text, which ansible-core shows
    # once) and the 2000 ms run
    warned = re.findall(r'\[WARNING\]: VM stun at risk of a mirror failover: (\d+ of \d+) stun', out)
    assert sorted(set(warned)) == ['1 of 10', '1 of 7'], out
