# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""TEST-ONLY stand-in for lvs, vgs, lvcreate and lvremove: verify.yml installs /usr/local/sbin/<command> as
``exec python3 fake_lvm.py <command> "$@"``.

The containers of this scenario have no device-mapper (real LVM is tested in the qemu VM of the lvm scenario). This
is just enough LVM for irisops.backup.iris_lvm_snapshot to pass its preflight and reach the freeze window: one
logical volume vgtest/root whose kernel device number is the one findmnt reports for the instance directories
(the container's root file system), so the module maps every directory to it; a volume group with free space.
``lvcreate --test`` succeeds; a real ``lvcreate`` writes ``<its pid> <parent pid>`` to PIDFILE and then hangs, the
way a stuck snapshot keeps the module inside the freeze window (the module never kills lvcreate there), so that
the test can SIGKILL the module process (the parent) at that point.
"""

import json
import os
import subprocess
import sys
import time

PIDFILE = '/run/irisops-test/lvcreate.pid'
EXT = 4 * 1024 * 1024


def root_majmin():
    out = subprocess.run(['findmnt', '--noheadings', '--output', 'MAJ:MIN', '--target', '/usr/irissys'],
                         stdout=subprocess.PIPE, check=True).stdout.decode().strip()
    return out.split(':')


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ''
    args = argv[2:]
    if cmd == 'lvs':
        major, minor = root_majmin()
        print(json.dumps({'report': [{'lv': [{
            'lv_name': 'root', 'vg_name': 'vgtest', 'lv_attr': '-wi-ao----', 'lv_size': str(1024 * EXT),
            'origin': '', 'origin_size': '', 'data_percent': '', 'snap_percent': '', 'lv_path': '/dev/vgtest/root',
            'lv_dm_path': '/dev/mapper/vgtest-root', 'lv_kernel_major': major, 'lv_kernel_minor': minor,
            'lv_tags': '', 'lv_snapshot_invalid': 'unknown'}]}]}))
        return 0
    if cmd == 'vgs':
        print(json.dumps({'report': [{'vg': [{
            'vg_name': 'vgtest', 'vg_attr': 'wz--n-', 'vg_size': str(4096 * EXT), 'vg_free': str(3072 * EXT),
            'vg_extent_size': str(EXT), 'vg_extent_count': '4096', 'vg_free_count': '3072'}]}]}))
        return 0
    if cmd == 'lvcreate':
        if '--test' in args:
            return 0
        os.makedirs(os.path.dirname(PIDFILE), exist_ok=True)
        with open(PIDFILE + '.tmp', 'w') as f:
            f.write('%d %d\n' % (os.getpid(), os.getppid()))
        os.rename(PIDFILE + '.tmp', PIDFILE)
        time.sleep(600)
        return 5
    if cmd == 'lvremove':
        return 0
    sys.stderr.write('fake_lvm: unknown command %s\n' % cmd)
    return 127


if __name__ == '__main__':
    sys.exit(main(sys.argv))
