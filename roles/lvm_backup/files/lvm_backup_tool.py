# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helper of the irisops.backup.lvm_backup role, installed on the managed host (standard library only).

  python3 lvm_backup_tool.py compare [--manifest FILE] SRC DST PREFIX [SRC DST PREFIX ...]
      SHA-256 of every regular file (and the target of every symlink) under each SRC and its DST; prints a JSON
      list with one object per pair (files, bytes, mismatches, missing, extra, read_errors, equal) and exits 0 when
      every pair holds the same content, 1 when not (a file that cannot be read, e.g. an I/O error of an overflowed
      snapshot, makes its pair unequal), 2 on usage errors. With --manifest, writes "sha256  PREFIX/relative/path"
      lines of every SRC to FILE.
  python3 lvm_backup_tool.py size PATH...
      Bytes and number of regular files under each PATH (a file counts itself), as a JSON list of
      {"path", "bytes", "files"}.
  python3 lvm_backup_tool.py copy --method rsync|tar [--compression gzip|xz|none] RUNDIR MOUNT VG LV [MOUNT VG LV ...]
      Copies each mounted snapshot, one after the other, in one call (every Ansible task costs a round trip):
      rsync -aH --numeric-ids MOUNT/ to RUNDIR/VG/LV/, or tar --numeric-owner of MOUNT to RUNDIR/VG-LV.tar.gz
      (.tar.xz, .tar). Stops at the first copy that fails. Prints a JSON list with one object per LV (lv, copy,
      rc, seconds, bytes, files, error; rc null for the LVs not attempted after a failure) and exits 0 when every
      copy succeeded, 1 when not, 2 on usage errors.
"""
from __future__ import absolute_import, division, print_function

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

CHUNK = 1024 * 1024
MAX_LISTED = 20


def walk(root, errors=None):
    """{relative path: ('f', sha256, size) | ('l', target, 0)} of a tree (directories and devices skipped).

    A file or directory that cannot be read is left out and "full path: reason" is appended to ``errors``.
    """
    out = {}
    errors = [] if errors is None else errors

    def on_error(exc):
        errors.append('%s: %s' % (exc.filename or root, exc.strerror or exc))

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            try:
                if os.path.islink(full):
                    out[rel] = ('l', os.readlink(full), 0)
                    continue
                if not os.path.isfile(full):
                    continue
                digest = hashlib.sha256()
                size = 0
                with open(full, 'rb') as handle:
                    while True:
                        block = handle.read(CHUNK)
                        if not block:
                            break
                        size += len(block)
                        digest.update(block)
            except (IOError, OSError) as exc:
                errors.append('%s: %s' % (full, exc.strerror or exc))
                continue
            out[rel] = ('f', digest.hexdigest(), size)
    return out


def compare_pair(src_dir, dst_dir, prefix, manifest):
    for path in (src_dir, dst_dir):
        if not os.path.isdir(path):
            return {'src': src_dir, 'dst': dst_dir, 'error': '%s is not a directory' % path, 'equal': False}
    read_errors = []
    src = walk(src_dir, read_errors)
    dst = walk(dst_dir, read_errors)
    mismatches = sorted(k for k in src if k in dst and src[k][:2] != dst[k][:2])
    missing = sorted(k for k in src if k not in dst)
    extra = sorted(k for k in dst if k not in src)
    if manifest:
        with open(manifest, 'a') as handle:
            for rel in sorted(src):
                kind, value, _size = src[rel]
                handle.write('%s  %s\n' % (value if kind == 'f' else 'symlink->' + value, os.path.join(prefix, rel)))
    result = {
        'src': src_dir, 'dst': dst_dir, 'prefix': prefix, 'files': len(src),
        'bytes': sum(v[2] for v in src.values()),
        'mismatches': mismatches[:MAX_LISTED], 'missing': missing[:MAX_LISTED], 'extra': extra[:MAX_LISTED],
        'mismatch_count': len(mismatches), 'missing_count': len(missing), 'extra_count': len(extra),
        'read_errors': read_errors[:MAX_LISTED], 'read_error_count': len(read_errors),
    }
    result['equal'] = not (mismatches or missing or extra or read_errors)
    return result


def cmd_compare(args):
    if not args.triples or len(args.triples) % 3:
        print(json.dumps({'error': 'give SRC DST PREFIX triples'}))
        return 2
    results = [compare_pair(args.triples[i], args.triples[i + 1], args.triples[i + 2], args.manifest)
               for i in range(0, len(args.triples), 3)]
    print(json.dumps(results))
    if any('error' in r for r in results):
        return 2
    return 0 if all(r['equal'] for r in results) else 1


def size_of(path):
    if os.path.isfile(path):
        return os.path.getsize(path), 1
    total = files = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            full = os.path.join(dirpath, name)
            if os.path.isfile(full) and not os.path.islink(full):
                total += os.path.getsize(full)
                files += 1
    return total, files


def cmd_size(args):
    out = []
    for path in args.paths:
        total, files = size_of(path)
        out.append({'path': path, 'bytes': total, 'files': files})
    print(json.dumps(out))
    return 0


TAR_FLAGS = {'gzip': ('-czf', '.tar.gz'), 'xz': ('-cJf', '.tar.xz'), 'none': ('-cf', '.tar')}


def copy_one(method, compression, rundir, mount, vg, lv):
    if method == 'rsync':
        dest = os.path.join(rundir, vg, lv) + '/'
        argv = ['rsync', '-aH', '--numeric-ids', '--stats', mount.rstrip('/') + '/', dest]
    else:
        flag, ext = TAR_FLAGS[compression]
        dest = os.path.join(rundir, '%s-%s%s' % (vg, lv, ext))
        argv = ['tar', '--numeric-owner', '-C', mount, flag, dest, '.']
    started = time.time()
    try:
        if method == 'rsync':
            os.makedirs(os.path.join(rundir, vg), exist_ok=True)
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, check=False)
        rc, err = proc.returncode, proc.stderr
    except OSError as exc:
        rc, err = 127, '%s: %s' % (argv[0], exc)
    seconds = round(time.time() - started, 3)
    total, files = size_of(dest) if os.path.exists(dest) else (0, 0)
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    return {'lv': '%s/%s' % (vg, lv), 'copy': dest, 'command': argv[0], 'rc': rc, 'seconds': seconds,
            'bytes': total, 'files': files, 'error': ' / '.join(lines[-3:]) if rc else ''}


def cmd_copy(args):
    if not args.triples or len(args.triples) % 3:
        print(json.dumps({'error': 'give MOUNT VG LV triples'}))
        return 2
    results = []
    failed = False
    for i in range(0, len(args.triples), 3):
        mount, vg, lv = args.triples[i:i + 3]
        if failed:
            results.append({'lv': '%s/%s' % (vg, lv), 'copy': None, 'command': None, 'rc': None, 'seconds': 0,
                            'bytes': 0, 'files': 0, 'error': 'not copied: an earlier copy failed'})
            continue
        result = copy_one(args.method, args.compression, args.rundir, mount, vg, lv)
        failed = result['rc'] != 0
        results.append(result)
    print(json.dumps(results))
    return 1 if failed else 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog='lvm_backup_tool.py')
    sub = parser.add_subparsers(dest='cmd')
    p = sub.add_parser('compare')
    p.add_argument('--manifest')
    p.add_argument('triples', nargs='+', metavar='SRC DST PREFIX')
    p = sub.add_parser('size')
    p.add_argument('paths', nargs='+')
    p = sub.add_parser('copy')
    p.add_argument('--method', choices=['rsync', 'tar'], required=True)
    p.add_argument('--compression', choices=sorted(TAR_FLAGS), default='gzip')
    p.add_argument('rundir')
    p.add_argument('triples', nargs='+', metavar='MOUNT VG LV')
    args = parser.parse_args(argv)
    if args.cmd == 'compare':
        return cmd_compare(args)
    if args.cmd == 'size':
        return cmd_size(args)
    if args.cmd == 'copy':
        return cmd_copy(args)
    parser.print_usage()
    return 2


if __name__ == '__main__':
    sys.exit(main())
