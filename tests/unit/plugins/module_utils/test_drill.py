# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure parts of the drill engine (_drill.py): where a production directory is in a restored backup, and the
refusal of a drill directory that overlaps an instance.  The whole drill runs in the VM (tests/vm)."""

from __future__ import absolute_import, division, print_function

from ansible_collections.irisops.backup.plugins.module_utils import _drill

__metaclass__ = type

MANIFEST = {'volumes': [
    {'vg': 'vgbk', 'lv': 'dba', 'mountpoint': '/run/irisops/backup/mnt/vgbk/dba', 'origin_mountpoint': '/iris/dba'},
    {'vg': 'vgbk', 'lv': 'jrn', 'mountpoint': '/run/irisops/backup/mnt/vgbk/jrn', 'origin_mountpoint': '/iris/jrn'},
    {'vg': 'vgbk', 'lv': 'sys', 'mountpoint': '/run/irisops/backup/mnt/vgbk/sys', 'origin_mountpoint': None},
]}


def test_restored_path_follows_the_volume_of_the_directory():
    assert _drill.restored_path('/iris/dba/irisa/user/', MANIFEST, '/drill/x/backup') == \
        '/drill/x/backup/run/irisops/backup/mnt/vgbk/dba/irisa/user'
    assert _drill.restored_path('/iris/jrn/a', MANIFEST, '/r') == '/r/run/irisops/backup/mnt/vgbk/jrn/a'
    assert _drill.restored_path('/elsewhere/db', MANIFEST, '/r') is None
    # a prefix that is not a path component does not match
    assert _drill.restored_path('/iris/dbax/db', MANIFEST, '/r') is None


def test_a_drill_directory_overlapping_an_instance_is_refused():
    inst = {'name': 'IRISA', 'status': 'running', 'install_dir': '/usr/irissys', 'database_dirs': ['/iris/dba/irisa/'],
            'databases': {'USER': '/iris/dba/irisa/'}, 'journal_current_dir': '/iris/jrn/a'}
    assert _drill.overlap_problems('/var/lib/irisops/drill', [inst]) == []
    inside = _drill.overlap_problems('/iris/dba/irisa/drill', [inst])
    assert len(inside) == 1 and 'overlaps the database USER directory /iris/dba/irisa/ of instance IRISA' in inside[0]
    above = _drill.overlap_problems('/iris', [inst])
    assert len(above) == 2           # above both the database and the journal directory
    assert _drill.overlap_problems('/usr/irissys2', [inst]) == []
