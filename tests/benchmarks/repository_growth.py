# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Bytes stored for N daily backups of a database that changes a few percent of its blocks a day: a restic
repository (what irisops-backup writes) next to plain copies (one full copy a day, what the old role kept).

    python3 tests/benchmarks/repository_growth.py [--size-mib 256] [--days 5] [--change 0.02] [--block 8192]
                                                  [--pattern scattered|clustered|appended]

A database file of --size-mib MiB of random data (incompressible, the worst case for restic's compression) is
backed up once a day with `restic backup` into a fresh local repository (format 2, compression auto, as the engine
does); between days --change of its --block byte blocks (IRIS's 8 KiB database blocks) are overwritten with new
random data: at random places (--pattern scattered, the worst case: restic's content-defined chunks average 1 MiB,
so one changed 8 KiB block costs about a whole chunk), in runs of 64 blocks (clustered: a day's updates to a few
globals), or appended at the end (appended: new data, the database grows).  Printed per day: the blocks changed, restic's
data_added and the repository's size on disk, and the plain copies' size; at the end the ratio.  It asserts
nothing about the figures; it fails only when restic fails.  restic must be on PATH (tests/setup.sh installs it).
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time


def du(path):
    total = 0
    for dirpath, _dirs, names in os.walk(path):
        for n in names:
            total += os.lstat(os.path.join(dirpath, n)).st_blocks * 512
    return total


def mib(n):
    return '%.1f MiB' % (n / 1048576.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    ap.add_argument('--size-mib', type=int, default=256)
    ap.add_argument('--days', type=int, default=5)
    ap.add_argument('--change', type=float, default=0.02, help='fraction of blocks changed per day')
    ap.add_argument('--block', type=int, default=8192)
    ap.add_argument('--pattern', choices=('scattered', 'clustered', 'appended'), default='scattered')
    ap.add_argument('--run', type=int, default=64, help='blocks per run for --pattern clustered')
    ap.add_argument('--seed', type=int, default=20261207)
    args = ap.parse_args()
    restic = shutil.which('restic')
    if restic is None:
        sys.exit('restic is not on PATH (tests/setup.sh installs it)')
    rnd = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix='irisops-bench-repo-')
    try:
        data = os.path.join(work, 'db')
        repo = os.path.join(work, 'repo')
        os.makedirs(data)
        pw = os.path.join(work, 'pw')
        with open(pw, 'w') as f:
            f.write('bench\n')
        env = dict(os.environ, RESTIC_PASSWORD_FILE=pw, RESTIC_CACHE_DIR=os.path.join(work, 'cache'))
        subprocess.run([restic, '--repo', repo, 'init', '--repository-version', '2'], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        dat = os.path.join(data, 'IRIS.DAT')
        size = args.size_mib * 1048576
        with open(dat, 'wb') as f:
            for _mib in range(args.size_mib):
                f.write(os.urandom(1048576))
        blocks = size // args.block
        per_day = max(1, int(blocks * args.change))
        print('database %s (%d blocks of %d bytes), %d day(s), %d blocks (%.1f%%) changed per day, %s, restic %s' % (
            mib(size), blocks, args.block, args.days, per_day, 100.0 * per_day / blocks, args.pattern,
            subprocess.run([restic, 'version'], stdout=subprocess.PIPE, universal_newlines=True,
                           check=False).stdout.split()[1]))
        header = ('day', 'changed', 'restic added', 'repository', 'plain copies', 'seconds')
        print('%-4s %10s %14s %16s %16s %8s' % header)
        plain = 0
        for day in range(1, args.days + 1):
            changed = 0
            if day > 1 and args.pattern == 'appended':
                with open(dat, 'ab') as f:
                    f.write(os.urandom(per_day * args.block))
                changed = per_day
            elif day > 1:
                if args.pattern == 'scattered':
                    targets = rnd.sample(range(blocks), per_day)
                else:
                    starts = rnd.sample(range(0, blocks - args.run, args.run), max(1, per_day // args.run))
                    targets = [s + i for s in starts for i in range(args.run)]
                with open(dat, 'r+b') as f:
                    for b in targets:
                        f.seek(b * args.block)
                        f.write(os.urandom(args.block))
                        changed += 1
            t0 = time.time()
            out = subprocess.run([restic, '--repo', repo, 'backup', '--json', '--compression', 'auto', '--host',
                                  'bench', data], env=env, check=True, stdout=subprocess.PIPE,
                                 universal_newlines=True).stdout
            secs = time.time() - t0
            summary = [json.loads(line) for line in out.splitlines() if '"summary"' in line][-1]
            plain += os.path.getsize(dat)
            print('%-4d %10d %14s %16s %16s %8.1f' % (day, changed, mib(summary['data_added']), mib(du(repo)),
                                                      mib(plain), secs))
        stored = du(repo)
        print('after %d day(s): restic repository %s, plain copies %s: restic stores %.1f%% of the plain copies '
              '(%.2fx less)' % (args.days, mib(stored), mib(plain), 100.0 * stored / plain, float(plain) / stored))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
