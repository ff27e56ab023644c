# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Generate docs/bad-inputs.md from tests/faults/bad_inputs.yml (one source for the test and the page).

    python3 tests/faults/bad_inputs_doc.py           # rewrite docs/bad-inputs.md
    python3 tests/faults/bad_inputs_doc.py --check   # exit 1 when docs/bad-inputs.md is out of date

Needs PyYAML (installed with ansible-core).
"""

from __future__ import absolute_import, division, print_function

import json
import os
import sys

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
TABLE = os.path.join(REPO, 'tests', 'faults', 'bad_inputs.yml')
DOC = os.path.join(REPO, 'docs', 'bad-inputs.md')

INTRO = """\
# Bad inputs and the messages they give

<!-- Generated from tests/faults/bad_inputs.yml by tests/faults/bad_inputs_doc.py; do not edit by hand. -->

Every module and role of `irisops.backup` refuses a wrong value with a message that names what is wrong **before
anything is frozen**, and a refused run leaves no instance frozen, no snapshot and no damaged database behind. The
table below is the list of wrong values this is tested with; the message column is a part of the message you get
(search [troubleshooting.md](troubleshooting.md) for the whole message and what to do).

How it is tested: the molecule scenario `extensions/molecule/bad_inputs` runs every row against a container with
the IRIS/Caché emulator: `IRIS` (running), `CACHE` (Caché, running), `IRISDOWN` (installed, stopped), the OS user
`irisstranger` (no IRIS user), and the lvm2 tools without any volume group. `NOSUCH`, `nosuchuser` and `nosuchvg`
exist nowhere. After each row it checks, without the collection, that no instance is frozen (`IsWDSuspendedExt`
as the instance owner), that no LV tagged `irisops_snapshot` exists (`lvs`) and that the databases of all three
instances are consistent (`irisemu-dbcheck`); the scenario fails when a row did not fail with its message or left
anything behind. Rows marked *needs LVM* need a real volume group and are run in the qemu VM scenarios only.

Each row also writes a record `tests/output/faults/bad_inputs-<id>.json` (the fault record format shared with the
other fault suites); `python tests/faults/summary.py` prints all records as one table and exits 1 when a case did
not survive. `tests/run-all.sh` runs it as its last step, "fault summary".

| record field | meaning |
|---|---|
| `suite`, `case` | `bad_inputs` and the row id |
| `fault` | module or role and what is wrong |
| `expect` | `fail` for every bad input |
| `rc_failed` | whether the run failed (observed) |
| `message` | the first 300 characters of the error message |
| `message_expected` | the part the message must contain (the column below) |
| `frozen_after` | instances frozen after the run (`IsWDSuspendedExt` exit 5) |
| `snapshots_after` | LVs tagged by the collection after the run |
| `data_lost` | instances whose databases `irisemu-dbcheck` did not find consistent |
| `report_status` | status in the report of the `lvm_backup` role (its rows only), else null |

To change the table, edit `tests/faults/bad_inputs.yml` and run `python3 tests/faults/bad_inputs_doc.py`
(`tests/unit/faults/test_bad_inputs_doc.py` fails while this page is out of date).
"""


def load(path=TABLE):
    with open(path) as handle:
        return yaml.safe_load(handle)


def _cell(text):
    return str(text).replace('|', '\\|').replace('\n', '\\n')


def _code(text):
    text = _cell(text)
    return '``%s``' % text if '`' in text else '`%s`' % text


def _args(args):
    return _code(json.dumps(args, ensure_ascii=False, separators=(', ', ': ')))


def _title(target):
    if target.startswith('role:'):
        return 'role `irisops.backup.%s`' % target[5:]
    return '`irisops.backup.%s`' % target


def render(table):
    lines = [INTRO]
    order = []
    for row in table['rows']:
        if row['target'] not in order:
            order.append(row['target'])
    for target in order:
        rows = [r for r in table['rows'] if r['target'] == target]
        lines.append('## %s\n' % _title(target))
        lines.append('| id | what is wrong | %s | the message contains | runs in |' % (
            'role variables' if target.startswith('role:') else 'options'))
        lines.append('|---|---|---|---|---|')
        for r in rows:
            where = 'needs LVM (VM)' if r.get('needs') == 'lvm' else 'container'
            cells = (r['id'], _cell(r['fault']), _args(r['args']), _code(r['message']), where)
            lines.append('| `%s` | %s | %s | %s | %s |' % cells)
        lines.append('')
    lines.append('## Not refused, or not applicable\n')
    for note in table.get('notes') or []:
        lines.append('- %s' % ' '.join(str(note).split()))
    lines.append('')
    return '\n'.join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    text = render(load())
    if argv[:1] == ['--check']:
        try:
            with open(DOC) as handle:
                current = handle.read()
        except (IOError, OSError):
            current = None
        if current != text:
            sys.stderr.write('%s is out of date: run python3 tests/faults/bad_inputs_doc.py\n' % DOC)
            return 1
        return 0
    with open(DOC, 'w') as handle:
        handle.write(text)
    print('wrote %s (%d rows)' % (DOC, len(load()['rows'])))
    return 0


if __name__ == '__main__':
    sys.exit(main())
