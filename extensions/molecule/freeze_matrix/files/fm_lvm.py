# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""TEST-ONLY stand-in for LVM in the freeze_matrix containers (they have no device-mapper; real LVM is tested in
the qemu VM of the lvm scenarios).  A generalisation of extensions/molecule/deadman/files/fake_lvm.py.

Installed by freeze_matrix.py as /usr/local/sbin/{lvs,vgs,lvcreate,lvremove,findmnt,fm-snapshot}, each
``exec python3 /usr/local/lib/irisops-fm/fm_lvm.py <command> "$@"``.

The volume group vgfm holds four logical volumes:

    vgfm/iris    253:1   what findmnt reports for every path under /usr/irissys
    vgfm/cache   253:2   ... under /usr/cachesys
    vgfm/shared  253:3   given to iris_lvm_snapshot through ``volumes`` (a volume both instances share)
    vgfm/root    253:0   everything else

so that freeze_mode=staggered has a real sequence to run (freeze IRIS, snapshot iris, freeze CACHE, snapshot
shared, thaw IRIS, snapshot cache, thaw CACHE).  Snapshots live in STATE (JSON, under an flock) with their tags,
so the test sees exactly what a run left behind.

``lvcreate`` is controlled through CTL (JSON, written by fm_host.py; absent = every lvcreate is instant):

    startup   seconds every real lvcreate spends before it touches anything (LVM's locking and scanning)
    block     the start of the snapshot name (the origin LV: iris, cache, shared), or "all": that lvcreate creates
              the snapshot's metadata first, then writes READY ("<k> <pid> <ppid> <name>") and blocks until
              RELEASE exists or ``hold`` seconds passed (0: until released, at most 600 s)
    hold      see block
    fail      the start of the snapshot name: that lvcreate fails (rc 5) without creating anything

Every call appends "<epoch> <event> <k> <pid> <name>" to EVENTS (start, created, ready, done, failed).
``fm-snapshot`` is the stand-in of a storage/VM snapshot taken between iris_freeze and iris_thaw (or between the
hook's freeze and thaw): it writes SNAP_READY and blocks like a blocked lvcreate (``snapshot_hold``), creating
nothing.
"""

from __future__ import absolute_import, division, print_function

import fcntl
import json
import os
import sys
import time

__metaclass__ = type

BASE = '/run/irisops-fm/lvm'
STATE = BASE + '/state.json'
LOCK = BASE + '/state.lock'
CTL = BASE + '/ctl.json'
EVENTS = BASE + '/events.log'
READY = BASE + '/lvcreate.ready'
RELEASE = BASE + '/lvcreate.release'
SNAP_READY = BASE + '/snapshot.ready'
SNAP_RELEASE = BASE + '/snapshot.release'
EXT = 4 * 1024 * 1024
VG = 'vgfm'
ORIGINS = (('root', 0, None), ('iris', 1, '/usr/irissys'), ('cache', 2, '/usr/cachesys'), ('shared', 3, None))


def _ensure():
    if not os.path.isdir(BASE):
        os.makedirs(BASE, 0o755)


def event(what, k='-', name='-'):
    _ensure()
    line = '%.6f %s %s %d %s\n' % (time.time(), what, k, os.getpid(), name)
    fd = os.open(EVENTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class Locked(object):
    def __enter__(self):
        _ensure()
        self.fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            with open(STATE) as f:
                self.state = json.load(f)
        except (IOError, OSError, ValueError):
            self.state = {'snapshots': [], 'lvcreate_calls': 0}
        return self

    def save(self):
        tmp = STATE + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(self.state, f)
        os.rename(tmp, STATE)

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        return False


def ctl():
    try:
        with open(CTL) as f:
            return json.load(f)
    except (IOError, OSError, ValueError):
        return {}


def lv_row(name, attr, minor, origin='', tags='', size=1024 * EXT):
    return {'lv_name': name, 'vg_name': VG, 'lv_attr': attr, 'lv_size': str(size), 'origin': origin,
            'origin_size': str(1024 * EXT) if origin else '', 'data_percent': '0.00' if origin else '',
            'snap_percent': '0.00' if origin else '', 'lv_path': '/dev/%s/%s' % (VG, name),
            'lv_dm_path': '/dev/mapper/%s-%s' % (VG, name.replace('-', '--')), 'lv_kernel_major': '253',
            'lv_kernel_minor': str(minor), 'lv_tags': tags, 'lv_snapshot_invalid': '' if origin else 'unknown'}


def cmd_lvs(args):
    with Locked() as st:
        snaps = list(st.state['snapshots'])
    rows = [lv_row(n, '-wi-ao----' if not any(s['origin'] == n for s in snaps) else 'owi-aos---', m)
            for n, m, _p in ORIGINS]
    for i, s in enumerate(snaps):
        rows.append(lv_row(s['name'], 'swi-a-s---', 10 + i, origin=s['origin'], tags=','.join(s['tags']),
                           size=s['extents'] * EXT))
    names = [a for a in args if '/' in a and not a.startswith('-')]
    if names:
        rows = [r for r in rows if '%s/%s' % (r['vg_name'], r['lv_name']) in names]
    print(json.dumps({'report': [{'lv': rows}]}))
    return 0


def cmd_vgs(_args):
    with Locked() as st:
        used = sum(s['extents'] for s in st.state['snapshots'])
    print(json.dumps({'report': [{'vg': [{
        'vg_name': VG, 'vg_attr': 'wz--n-', 'vg_size': str(8192 * EXT), 'vg_free': str((4096 - used) * EXT),
        'vg_extent_size': str(EXT), 'vg_extent_count': '8192', 'vg_free_count': str(4096 - used)}]}]}))
    return 0


def cmd_findmnt(args):
    target = args[args.index('--target') + 1] if '--target' in args else (args[-1] if args else '/')
    path = os.path.abspath(target)
    lv, minor = 'root', 0
    for name, m, prefix in ORIGINS:
        if prefix and (path == prefix or path.startswith(prefix + '/')):
            lv, minor = name, m
    mnt = dict((n, p) for n, _m, p in ORIGINS).get(lv) or '/'
    print('SOURCE="/dev/mapper/%s-%s" TARGET="%s" FSTYPE="ext4" MAJ:MIN="253:%d"' % (VG, lv, mnt, minor))
    return 0


def _opt(args, name):
    return args[args.index(name) + 1] if name in args else None


def _block(ready, release, hold, line):
    tmp = ready + '.tmp'
    with open(tmp, 'w') as f:
        f.write(line + '\n')
    os.rename(tmp, ready)
    deadline = time.time() + (hold if hold and hold > 0 else 600)
    while time.time() < deadline and not os.path.exists(release):
        time.sleep(0.05)


def cmd_lvcreate(args):
    if '--test' in args:
        return 0
    name = _opt(args, '--name') or _opt(args, '-n') or '?'
    extents = int(_opt(args, '--extents') or _opt(args, '-l') or '1')
    target = [a for a in args if '/' in a and not a.startswith('-')]
    origin = target[-1].split('/', 1)[1] if target else '?'
    tags = [args[i + 1] for i, a in enumerate(args) if a == '--addtag' and i + 1 < len(args)]
    c = ctl()
    with Locked() as st:
        st.state['lvcreate_calls'] = k = st.state.get('lvcreate_calls', 0) + 1
        st.save()
    event('start', k, name)
    if c.get('startup'):
        time.sleep(float(c['startup']))
    if c.get('fail') and name.startswith(c['fail']):
        event('failed', k, name)
        sys.stderr.write('  fm_lvm: injected failure creating %s\n' % name)
        return 5
    with Locked() as st:
        if any(s['name'] == name for s in st.state['snapshots']):
            sys.stderr.write('  Logical Volume "%s" already exists in volume group "%s"\n' % (name, VG))
            return 5
        st.state['snapshots'].append({'name': name, 'origin': origin, 'extents': extents, 'tags': tags,
                                      'pid': os.getpid(), 'complete': False})
        st.save()
    event('created', k, name)
    block = c.get('block')
    if block and (block == 'all' or name.startswith(block)):
        event('ready', k, name)
        _block(READY, RELEASE, float(c.get('hold') or 0), '%d %d %d %s' % (k, os.getpid(), os.getppid(), name))
    with Locked() as st:
        for s in st.state['snapshots']:
            if s['name'] == name:
                s['complete'] = True
        st.save()
    event('done', k, name)
    print('  Logical volume "%s" created.' % name)
    return 0


def cmd_lvremove(args):
    if '--test' in args:
        return 0
    target = [a for a in args if '/' in a and not a.startswith('-')]
    name = target[-1].split('/', 1)[1] if target else '?'
    with Locked() as st:
        before = len(st.state['snapshots'])
        st.state['snapshots'] = [s for s in st.state['snapshots'] if s['name'] != name]
        st.save()
        found = len(st.state['snapshots']) != before
    event('removed' if found else 'remove-missing', '-', name)
    if not found:
        sys.stderr.write('  Failed to find logical volume "%s/%s"\n' % (VG, name))
        return 5
    print('  Logical volume "%s" successfully removed.' % name)
    return 0


def cmd_snapshot(_args):
    c = ctl()
    event('snapshot-start', '-', 'stand-in')
    _block(SNAP_READY, SNAP_RELEASE, float(c.get('snapshot_hold') or 0),
           '0 %d %d stand-in' % (os.getpid(), os.getppid()))
    event('snapshot-done', '-', 'stand-in')
    return 0


COMMANDS = {'lvs': cmd_lvs, 'vgs': cmd_vgs, 'findmnt': cmd_findmnt, 'lvcreate': cmd_lvcreate,
            'lvremove': cmd_lvremove, 'fm-snapshot': cmd_snapshot}


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ''
    if cmd not in COMMANDS:
        sys.stderr.write('fm_lvm: unknown command %s\n' % cmd)
        return 127
    return COMMANDS[cmd](argv[2:])


if __name__ == '__main__':
    sys.exit(main(sys.argv))
