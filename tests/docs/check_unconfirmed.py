"""Check that docs/unconfirmed.md still points at real code.

For every row of the table in docs/unconfirmed.md (rows starting with "| <number> |"), every name in backticks in
the "constant" column must exist in the file of the "file" column: ``NAME =`` / ``NAME:`` at the start of a line, or
``def NAME(`` for names written as ``NAME()``.  Also every file below plugins/ and roles/ that says UNCONFIRMED must
be named in the table, or point the reader at it (say ``docs/unconfirmed.md``: a module whose unconfirmed fact is set
in a module_utils file).  Exits 1 on any mismatch.
"""
import os
import re
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
DOC = os.path.join(REPO, 'docs', 'unconfirmed.md')


def main():
    rows = [line for line in open(DOC).read().splitlines() if re.match(r'^\|\s*\d+\s*\|', line)]
    errors, checked, files = [], 0, set()
    for row in rows:
        cols = [c.strip() for c in row.strip().strip('|').split('|')]
        num, path, const = cols[0], cols[2].strip('`'), cols[3]
        files.add(path)
        full = os.path.join(REPO, path)
        if not os.path.isfile(full):
            errors.append('row %s: file %s does not exist' % (num, path))
            continue
        text = open(full).read()
        names = re.findall(r'`([A-Za-z_][A-Za-z0-9_]*(?:\(\))?)`', const)
        if not names:
            errors.append('row %s: no name in backticks in the constant column' % num)
        for name in names:
            checked += 1
            if name.endswith('()'):
                ok = re.search(r'^\s*def %s\(' % re.escape(name[:-2]), text, re.M)
            else:
                ok = re.search(r'^\s*%s\s*[:=]' % re.escape(name), text, re.M)
            if not ok:
                errors.append('row %s: %s not found in %s' % (num, name, path))
    for top in ('plugins', 'roles'):
        for root, _dirs, fnames in os.walk(os.path.join(REPO, top)):
            for f in fnames:
                if f.endswith(('.py', '.yml', '.j2')):
                    rel = os.path.relpath(os.path.join(root, f), REPO)
                    text = open(os.path.join(root, f), errors='replace').read()
                    if 'UNCONFIRMED' in text and rel not in files and 'docs/unconfirmed.md' not in text \
                            and not rel.endswith('argument_specs.yml'):
                        errors.append('%s mentions UNCONFIRMED but is neither in docs/unconfirmed.md nor points at '
                                      'it' % rel)
    for e in errors:
        print('ERROR: ' + e)
    print('%d table rows, %d names checked, %d error(s)' % (len(rows), checked, len(errors)))
    return 1 if errors or not checked else 0


if __name__ == '__main__':
    sys.exit(main())
