# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The bad-input table (tests/faults/bad_inputs.yml) is well formed, names real modules and roles, and
docs/bad-inputs.md is generated from its current content."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.irisops.backup.tests.unit.repo_scripts import REPO, load_script

doc = load_script('irisops_bad_inputs_doc', 'tests/faults/bad_inputs_doc.py')
TABLE = doc.load()
ROWS = TABLE['rows']


def test_rows_are_well_formed():
    assert TABLE['suite'] == 'bad_inputs'
    ids = [r['id'] for r in ROWS]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
    for r in ROWS:
        assert set(r) <= {'id', 'target', 'fault', 'args', 'message', 'needs'}, r
        assert re.match(r'^[a-z0-9][a-z0-9-]*$', r['id']), r['id']
        assert isinstance(r['args'], dict), r['id']
        assert isinstance(r['message'], str) and len(r['message'].strip()) >= 10, r['id']
        assert r['fault'].strip(), r['id']
        assert r.get('needs', 'lvm') == 'lvm', r['id']


def test_targets_exist():
    for r in ROWS:
        if r['target'].startswith('role:'):
            role = r['target'][5:]
            assert os.path.isfile(os.path.join(REPO, 'roles', role, 'tasks', 'main.yml')), r['id']
            defaults = doc.yaml.safe_load(open(os.path.join(REPO, 'roles', role, 'defaults', 'main.yml')))
            unknown = set(r['args']) - set(defaults)
            assert not unknown, '%s: %s are not variables of role %s' % (r['id'], sorted(unknown), role)
        else:
            assert os.path.isfile(os.path.join(REPO, 'plugins', 'modules', r['target'] + '.py')), r['id']


def test_every_module_and_role_of_the_brief_has_rows():
    targets = set(r['target'] for r in ROWS)
    assert targets >= {'iris_instance_info', 'iris_freeze', 'iris_thaw', 'iris_set_history', 'iris_backup_user',
                       'lvm_snapshot', 'iris_lvm_snapshot', 'role:lvm_backup', 'role:hooks', 'role:backup_user'}


def test_the_container_runs_most_rows():
    # rows that need a real volume group are the exception; the container scenario must stay meaningful
    assert sum(1 for r in ROWS if 'needs' not in r) >= len(ROWS) - 3


def test_doc_is_up_to_date():
    with open(doc.DOC) as handle:
        current = handle.read()
    assert current == doc.render(TABLE), 'docs/bad-inputs.md is out of date: run python3 tests/faults/bad_inputs_doc.py'


def test_doc_lists_every_row():
    text = doc.render(TABLE)
    for r in ROWS:
        assert '| `%s` |' % r['id'] in text
