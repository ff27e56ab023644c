# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Table of every fault record in tests/output/faults (standard library only).

    python tests/faults/summary.py [--dir DIR]

Each fault case or bad-input row (the bad_inputs scenario; the VM rig, tests/vm: fault, signal, soak, drill and
restore cases) writes one JSON record <suite>-<case>.json with what was observed (format: docs/bad-inputs.md).
This prints

    suite | case | fault | expected | result | frozen left | snapshots left | data lost | survived

one line per record, then why each case that did not survive failed, and as last line
"faults tried N, survived N, data lost N" (data lost = number of cases with data_lost > 0).

A case survived when the run failed exactly when it was expected to (rc_failed == (expect == "fail")), its message
contains message_expected (when a failure is expected), nothing was left frozen, no snapshot was left and no data
was lost. Exit status 1 when a case did not survive, a record cannot be read, or there is no record at all;
0 otherwise.
"""

from __future__ import absolute_import, division, print_function

import argparse
import glob
import json
import os
import sys

FIELDS = ('suite', 'case', 'fault', 'expect', 'rc_failed', 'message', 'message_expected', 'frozen_after',
          'snapshots_after', 'data_lost', 'report_status')
HEADER = ('suite', 'case', 'fault', 'expected', 'result', 'frozen left', 'snapshots left', 'data lost', 'survived')
FAULT_WIDTH = 60


def default_dir():
    repo = os.environ.get('IRISOPS_REPO') or os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
    return os.path.join(repo, 'tests', 'output', 'faults')


def check_record(rec):
    """Problems with the shape of a record (a list of strings; empty when it is well formed)."""
    if not isinstance(rec, dict):
        return ['not a JSON object']
    problems = ['missing field %s' % f for f in FIELDS if f not in rec]
    if problems:
        return problems
    if rec['expect'] not in ('fail', 'ok'):
        problems.append('expect is %r, not "fail" or "ok"' % (rec['expect'],))
    if not isinstance(rec['rc_failed'], bool):
        problems.append('rc_failed is %r, not true/false' % (rec['rc_failed'],))
    for key in ('frozen_after', 'snapshots_after'):
        if not isinstance(rec[key], list):
            problems.append('%s is %r, not a list' % (key, rec[key]))
    if isinstance(rec['data_lost'], bool) or not isinstance(rec['data_lost'], int):
        problems.append('data_lost is %r, not a number' % (rec['data_lost'],))
    for key in ('message', 'message_expected'):
        if rec[key] is not None and not isinstance(rec[key], str):
            problems.append('%s is %r, not a string' % (key, rec[key]))
    return problems


def verdict(rec):
    """(survived, reasons) for a well-formed record."""
    reasons = []
    want_fail = rec['expect'] == 'fail'
    if rec['rc_failed'] != want_fail:
        did = 'failed' if rec['rc_failed'] else 'succeeded'
        reasons.append('the run %s, expected it to %s' % (did, 'fail' if want_fail else 'succeed'))
    if want_fail and (rec['message_expected'] or '') not in (rec['message'] or ''):
        reasons.append('message %r does not contain %r' % (rec['message'], rec['message_expected']))
    if rec['frozen_after']:
        reasons.append('left frozen: %s' % ', '.join(str(x) for x in rec['frozen_after']))
    if rec['snapshots_after']:
        reasons.append('snapshots left: %s' % ', '.join(str(x) for x in rec['snapshots_after']))
    if rec['data_lost']:
        reasons.append('data lost: %s failed check(s)' % rec['data_lost'])
    return not reasons, reasons


def load(directory):
    """[(file name, record or None, problems)] for every *.json in directory, sorted by file name."""
    out = []
    for path in sorted(glob.glob(os.path.join(directory, '*.json'))):
        name = os.path.basename(path)
        try:
            with open(path) as handle:
                rec = json.load(handle)
        except (IOError, OSError, ValueError) as exc:
            out.append((name, None, ['cannot read: %s' % exc]))
            continue
        out.append((name, rec, check_record(rec)))
    return out


def _short(text, width):
    text = ' '.join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + '...'


def _list(value):
    return ', '.join(str(x) for x in value) if value else '-'


def rows_of(records):
    """Table rows and the notes for cases that did not survive; returns (rows, notes, counts)."""
    rows, notes = [], []
    tried = survived_n = lost_n = 0
    for name, rec, problems in records:
        tried += 1
        if problems:
            suite = rec.get('suite', '?') if isinstance(rec, dict) else '?'
            case = rec.get('case', name) if isinstance(rec, dict) else name
            rows.append((str(suite), str(case), '(unreadable record %s)' % name, '?', '?', '?', '?', '?', 'NO'))
            notes.append('%s/%s: %s' % (suite, case, '; '.join(problems)))
            continue
        ok, reasons = verdict(rec)
        survived_n += 1 if ok else 0
        lost_n += 1 if rec['data_lost'] else 0
        result = 'failed' if rec['rc_failed'] else 'ok'
        if rec['report_status'] is not None:
            result += ' (report: %s)' % _short(rec['report_status'], 30)
        rows.append((rec['suite'], rec['case'], _short(rec['fault'], FAULT_WIDTH), rec['expect'], result,
                     _list(rec['frozen_after']), _list(rec['snapshots_after']), str(rec['data_lost']),
                     'yes' if ok else 'NO'))
        if not ok:
            notes.append('%s/%s: %s' % (rec['suite'], rec['case'], '; '.join(reasons)))
    return rows, notes, (tried, survived_n, lost_n)


def render(rows):
    widths = [max(len(HEADER[i]), *(len(r[i]) for r in rows)) if rows else len(HEADER[i]) for i in range(len(HEADER))]
    lines = [' | '.join(h.ljust(w) for h, w in zip(HEADER, widths)).rstrip(),
             '-|-'.join('-' * w for w in widths)]
    for row in sorted(rows, key=lambda r: (r[0], r[1])):
        lines.append(' | '.join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return lines


def main(argv=None, out=None):
    out = out or sys.stdout
    parser = argparse.ArgumentParser(description='Table of the fault records in tests/output/faults.')
    parser.add_argument('--dir', default=default_dir(), help='directory of the records (default: %(default)s)')
    args = parser.parse_args(argv)
    records = load(args.dir)
    if not records:
        out.write('no fault record in %s: nothing that writes them (the bad_inputs scenario, the VM rig) ran, '
                  'or it wrote none\n' % args.dir)
        out.write('faults tried 0, survived 0, data lost 0\n')
        return 1
    rows, notes, (tried, survived_n, lost_n) = rows_of(records)
    for line in render(rows):
        out.write(line + '\n')
    if notes:
        out.write('\ndid not survive:\n')
        for note in notes:
            out.write('  %s\n' % note)
    out.write('faults tried %d, survived %d, data lost %d\n' % (tried, survived_n, lost_n))
    return 0 if survived_n == tried else 1


if __name__ == '__main__':
    sys.exit(main())
