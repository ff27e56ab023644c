# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The checks of the old molecule scenario ``lvm`` (converge, idempotence, verify) against real LVM in the rig's VM,
without Ansible's per-task round trip: the module file ``irisops.backup.lvm_snapshot`` is executed the way Ansible
runs in one Python process, each call the way ansible-core's unit tests run a module (``patch_module_args`` gives
AnsibleModule its arguments, ``_ansible_check_mode`` for check mode, ``main()`` prints the JSON result and exits),
with ansible-core's module_utils and a copy of the collection's plugins on sys.path (/opt/irisops-vmrig/ansible,
shipped byte-compiled by tests/vm/run.py).  One module call then costs what the module itself does (lvs, lvcreate,
mount ...), not a Python start and ansible-core's imports (seconds each under TCG).

The old scenario used VG vgiris with db (XFS) and journal (ext4); the rig's VG has the same kinds of origins: dba
(XFS, /iris/dba, IRISA's databases) and jrn (ext4, /iris/jrn).  Every assertion of the old verify.yml is here, in
the same order, with those names.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import subprocess
import sys

TREE = '/opt/irisops-vmrig/ansible'
VG = 'vgbk'
BOTH = ['%s/dba' % VG, '%s/jrn' % VG]
SNAP_DB = '/run/irisops/snapshots/%s/dba' % VG
SNAP_JRN = '/run/irisops/snapshots/%s/jrn' % VG
EXPECTED_BOTH = ['dba_irisops_snap', 'jrn_irisops_snap']
ORIGINS = [('/iris/dba', 'xfs'), ('/iris/jrn', 'ext4')]


_MOD = {}


def module(args, check_mode=False):
    """Run lvm_snapshot with ``args`` in this process (imported once: ansible-core's own unit-test helper
    ``patch_module_args`` hands the arguments to AnsibleModule, the module's ``main()`` prints its result and exits);
    returns the result dict (``failed``/``changed``/``msg``/...)."""
    import contextlib
    import io
    if not _MOD:
        if TREE not in sys.path:
            sys.path.insert(0, TREE)
        from ansible.module_utils import testing  # pylint: disable=import-error
        from ansible_collections.irisops.backup.plugins.modules import lvm_snapshot  # pylint: disable=import-error
        _MOD.update(testing=testing, mod=lvm_snapshot)
    payload = dict(args)
    if check_mode:
        payload['_ansible_check_mode'] = True
    out = io.StringIO()
    rc = 0
    with _MOD['testing'].patch_module_args(payload), contextlib.redirect_stdout(out):
        try:
            _MOD['mod'].main()
        except SystemExit as exc:
            rc = exc.code
    text = out.getvalue()
    try:
        res = json.loads(text[text.index('{'):])
    except ValueError:
        res = {'failed': True, 'msg': 'no JSON from the module (exit %s): %s' % (rc, text[-800:])}
    res['_rc'] = rc
    return res


def sh(argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def snaps():
    """(snapshot LVs of the VG as lvs reports them, their sorted names)."""
    rc, out, err = sh(['lvs', '--reportformat', 'json', '-o', 'lv_name,origin,lv_tags,lv_attr,lv_uuid', VG])
    lvs = json.loads(out[out.index('{'):])['report'][0]['lv']
    s = [lv for lv in lvs if lv.get('origin')]
    return s, sorted(lv['lv_name'] for lv in s)


def actions(res):
    return [s.get('action') for s in res.get('snapshots') or []]


def cmd_names(res, name):
    return [c for c in res.get('commands') or [] if os.path.basename(c['cmd'][0]) == name]


def run_checks(c):
    ck = c.check
    # -- converge: a file on each origin, both snapshotted in one call (vg/lv and a directory), mounted
    for mnt, _fs in ORIGINS:
        with open(os.path.join(mnt, 'marker.txt'), 'w') as f:
            f.write('before\n')
    conv = module({'volumes': ['%s/dba' % VG, '/iris/jrn'], 'size': '20%ORIGIN', 'run_id': 'molecule-converge',
                   'state': 'mounted'})
    ck('converge: snapshot both origins in one call and mount them', not conv.get('failed') and conv.get('changed'),
       conv.get('msg'))
    c.observed['converge_create_seconds'] = conv.get('create_seconds')
    idem = module({'volumes': ['%s/dba' % VG, '/iris/jrn'], 'size': '20%ORIGIN', 'run_id': 'molecule-converge',
                   'state': 'mounted'})
    ck('idempotence: the converge call again is not changed', not idem.get('failed') and not idem.get('changed'),
       (idem.get('changed'), idem.get('msg')))

    # -- converge state
    s, names = snaps()
    ck('converge state: both snapshots exist', names == EXPECTED_BOTH, names)
    ck('converge state: both tagged irisops_run_molecule-converge',
       len([x for x in s if 'irisops_run_molecule-converge' in x['lv_tags']]) == 2, s)
    ck('converge state: both are snapshots (attr s)', len([x for x in s if x['lv_attr'].startswith('s')]) == 2, s)
    m = [sh(['findmnt', '-n', '-o', 'FSTYPE,OPTIONS', p])[1].strip() for p in (SNAP_DB, SNAP_JRN)]
    ck('mounted: XFS read-only with nouuid, ext4 read-only', m[0].split()[:1] == ['xfs'] and
       m[0].split()[1].startswith('ro,') and 'nouuid' in m[0] and m[1].split()[:1] == ['ext4'] and
       m[1].split()[1].startswith('ro,'), m)
    for mnt, _fs in ORIGINS:
        with open(os.path.join(mnt, 'marker.txt'), 'w') as f:
            f.write('after\n')
        with open(os.path.join(mnt, 'created-after-snapshot.txt'), 'w') as f:
            f.write('new\n')
    sh(['sync'])
    markers = [open(os.path.join(p, 'marker.txt')).read().strip() for p in (SNAP_DB, SNAP_JRN)]
    new_files = [os.path.exists(os.path.join(p, 'created-after-snapshot.txt')) for p in (SNAP_DB, SNAP_JRN)]
    rc, _o, err = sh(['touch', os.path.join(SNAP_DB, 'written-into-snapshot')])
    ck('mounted: snapshots show the state before, and are read-only',
       markers == ['before', 'before'] and new_files == [False, False] and rc != 0 and 'Read-only file system' in err,
       (markers, new_files, rc, err))
    found = []
    for d, _dirs, files in os.walk(SNAP_DB):
        found += [os.path.join(d, f) for f in files if f == 'IRIS.DAT']
    ck('emulator: the IRIS databases written before the snapshot are in it', len(found) > 0, found)
    again = module({'volumes': ['%s/dba' % VG, '/iris/jrn'], 'run_id': 'molecule-converge', 'state': 'mounted'})
    ck('idempotence: not changed, both kept and valid, mount points and file systems',
       not again.get('changed') and actions(again) == ['kept', 'kept'] and
       [x.get('valid') for x in again.get('snapshots') or []] == [True, True] and
       [x.get('mountpoint') for x in again.get('snapshots') or []] == [SNAP_DB, SNAP_JRN] and
       [x.get('fstype') for x in again.get('snapshots') or []] == ['xfs', 'ext4'], again)

    # -- unmounted
    un = module({'volumes': BOTH, 'state': 'unmounted'})
    un2 = module({'volumes': BOTH, 'state': 'unmounted'})
    rc, fm, _e = sh(['findmnt', '-n', '-R', '/run/irisops/snapshots'])
    s, names = snaps()
    ck('unmounted: changed, both unmounted, again not changed, nothing mounted, snapshots still there',
       un.get('changed') and actions(un) == ['unmounted', 'unmounted'] and not un2.get('changed') and fm.strip() == ''
       and names == EXPECTED_BOTH, (un, un2.get('changed'), fm, names))

    # -- absent with a mount left behind
    module({'volumes': BOTH, 'state': 'mounted', 'existing': 'reuse'})
    chk = module({'volumes': BOTH, 'state': 'absent'}, check_mode=True)
    s, names = snaps()
    ck('absent in check mode: changed, nothing removed', chk.get('changed') and names == EXPECTED_BOTH,
       (chk.get('changed'), names, chk.get('msg')))
    ab = module({'volumes': BOTH, 'state': 'absent'})
    ab2 = module({'volumes': BOTH, 'state': 'absent'})
    s, names = snaps()
    ck('absent with a mount left behind: removed (2 umount commands), again not changed, none left, mount point gone',
       ab.get('changed') and actions(ab) == ['removed', 'removed'] and len(cmd_names(ab, 'umount')) == 2 and
       not ab2.get('changed') and names == [] and not os.path.exists(SNAP_DB), (ab, ab2.get('changed'), names))

    # -- check mode create
    cc = module({'volumes': BOTH, 'size': '64M'}, check_mode=True)
    s, names = snaps()
    ck('check mode: changed, predicted (created, 64 MiB), lvcreate --test twice, nothing created',
       cc.get('changed') and actions(cc) == ['created', 'created'] and
       [x.get('size') for x in cc.get('snapshots') or []] == [67108864, 67108864] and
       len([x for x in cc.get('commands') or [] if '--test' in x['cmd']]) == 2 and names == [], (cc, names))

    # -- preflight failures
    too_large = module({'volumes': BOTH, 'size': '2G'})
    bad_size = module({'volumes': BOTH, 'size': 'lots'})
    bad_percent = module({'volumes': BOTH, 'size': '150%ORIGIN'})
    missing_vg = module({'volumes': ['%s/dba' % VG, 'novg/db']})
    missing_lv = module({'volumes': ['%s/dba' % VG, '%s/nosuch' % VG]})
    not_lvm = module({'volumes': ['%s/dba' % VG, '/etc']})
    s, names = snaps()
    msgs = [r.get('msg', '') for r in (too_large, bad_size, bad_percent, missing_vg, missing_lv, not_lvm)]
    ck('preflight: two snapshots that each fit but not together: failed, not changed, "free extents", "nothing was '
       'created", no lvcreate', too_large.get('failed') and not too_large.get('changed') and
       'free extents' in msgs[0] and 'nothing was created' in msgs[0] and cmd_names(too_large, 'lvcreate') == [],
       msgs[0])
    ck('preflight: a size that does not parse', bad_size.get('failed') and "'lots' is not understood" in msgs[1]
       and 'N%ORIGIN' in msgs[1], msgs[1])
    ck('preflight: more than 100%', bad_percent.get('failed') and 'more than 100%' in msgs[2], msgs[2])
    ck('preflight: a missing VG', missing_vg.get('failed') and "volume group 'novg'" in msgs[3], msgs[3])
    ck('preflight: a missing LV', missing_lv.get('failed') and '%s/nosuch does not exist' % VG in msgs[4], msgs[4])
    ck('preflight: a path that is not on LVM', not_lvm.get('failed') and 'not an LVM logical volume' in msgs[5],
       msgs[5])
    ck('preflight: nothing was created', names == [], names)

    # -- leftover, reuse, remove
    module({'volumes': ['%s/dba' % VG], 'size': '40M', 'run_id': 'crashed'})
    lo = module({'volumes': BOTH, 'run_id': 'run2'})
    s, names = snaps()
    msg = lo.get('msg', '')
    ck('leftover: fails before creating anything and says what to do',
       lo.get('failed') and not lo.get('changed') and
       '%s/dba_irisops_snap of %s/dba already exists' % (VG, VG) in msg and 'leftover' in msg and
       'existing=remove' in msg and 'state=absent' in msg and 'irisops_run_crashed' in msg and
       names == ['dba_irisops_snap'], (msg, names))
    leftover_uuid = s[0]['lv_uuid'] if s else None
    reuse = module({'volumes': BOTH, 'run_id': 'run3', 'existing': 'reuse'})
    s, names = snaps()
    by = dict((x['lv_name'], x) for x in s)
    ck('reuse: the leftover kept (same uuid), the missing one created with run3\'s tag',
       reuse.get('changed') and actions(reuse) == ['kept', 'created'] and names == EXPECTED_BOTH and
       by.get('dba_irisops_snap', {}).get('lv_uuid') == leftover_uuid and
       'irisops_run_run3' in by.get('jrn_irisops_snap', {}).get('lv_tags', ''), (reuse.get('msg'), s))
    rm = module({'volumes': BOTH, 'run_id': 'run4', 'existing': 'remove'})
    rm2 = module({'volumes': BOTH, 'run_id': 'run4', 'existing': 'remove'})
    s, names = snaps()
    by = dict((x['lv_name'], x) for x in s)
    ck('remove: both recreated, the same call again not changed, new uuid, run4 tags, no crashed tag',
       rm.get('changed') and actions(rm) == ['recreated', 'recreated'] and not rm2.get('changed') and
       names == EXPECTED_BOTH and by.get('dba_irisops_snap', {}).get('lv_uuid') != leftover_uuid and
       len([x for x in s if 'irisops_run_run4' in x['lv_tags']]) == 2 and
       [x for x in s if 'crashed' in x['lv_tags']] == [], (rm.get('msg'), rm2.get('changed'), s))
    module({'volumes': BOTH, 'state': 'absent'})

    # -- overflow
    small = module({'volumes': ['%s/jrn' % VG], 'size': '4M', 'run_id': 'overflow'})
    rc, _o, err = sh(['dd', 'if=/dev/urandom', 'of=/iris/jrn/fill', 'bs=1M', 'count=16', 'conv=fsync'])
    over = module({'volumes': ['%s/jrn' % VG], 'size': '4M', 'run_id': 'overflow'})
    over_mount = module({'volumes': ['%s/jrn' % VG], 'state': 'mounted', 'existing': 'reuse'})
    s, names = snaps()
    snap0 = (over.get('snapshots') or [{}])[0]
    ck('overflow: a one-extent snapshot (4 MiB) created', small.get('changed') and
       (small.get('snapshots') or [{}])[0].get('size') == 4194304, small.get('snapshots'))
    ck('overflow: 16 MiB written to the origin', rc == 0, err)
    ck('overflow: reported invalid ("overflowed or invalid", the snapshot named, valid false, attr I), failed',
       over.get('failed') and 'overflowed or invalid' in over.get('msg', '') and
       '%s/jrn_irisops_snap' % VG in over.get('msg', '') and snap0.get('valid') is False and
       (snap0.get('attr') or '     ')[4] == 'I', (over.get('msg'), snap0))
    ck('overflow: mounting it is refused', over_mount.get('failed') and
       (over_mount.get('snapshots') or [{}])[0].get('mountpoint') is None, over_mount.get('msg'))
    ck('overflow: lvs says I too', bool(s) and s[0]['lv_attr'][4] == 'I', s)
    gone = module({'volumes': ['%s/jrn' % VG], 'state': 'absent'})
    os.unlink('/iris/jrn/fill')
    s, names = snaps()
    ck('end: the invalid snapshot can be removed, no snapshots left', gone.get('changed') and names == [],
       (gone.get('msg'), names))
    for mnt, _fs in ORIGINS:
        for f in ('marker.txt', 'created-after-snapshot.txt'):
            if os.path.exists(os.path.join(mnt, f)):
                os.unlink(os.path.join(mnt, f))
