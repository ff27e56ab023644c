"""Check that docs/troubleshooting.md explains every error message the modules, module_utils and roles emit.

An error message is the first string literal of a call to fail_json(msg=...), self.fail(...), errors.append(...),
problems.append(...), raise LvmError/InstanceError/ValueError/StateDirError/LockBusy/SnapshotStepError(...), the
msg returned by _diagnose() and the other HINT_FUNCS / the res['msg'] strings of _iris.py, raise StunLogError(...)
of _vmware.py, in the engine's files (the freeze engine's _freeze.py, _snapset.py, _lvm.py and the backup engine's
_backup.py, _drill.py, _journal.py, _restic.py, _restore.py) also every literal with a `Next:`, every validity reason and every
part of a joined message, and every fail_msg:/msg: of an ansible.builtin.fail/assert task in roles/.  The internal
argument checks of _journal.py are listed in troubleshooting.md as such (not excluded here).  The fixed text of a
literal before its first %-placeholder (at least 12 characters, else the next fixed fragment) must occur in
troubleshooting.md.  Prints the ones missing and exits 1 if any; prints the count checked otherwise.

Usage: python3 tests/docs/check_messages.py [--list]
"""
import ast
import os
import re
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
DOC = os.path.join(REPO, 'docs', 'troubleshooting.md')
PY_FILES = ['plugins/modules/%s' % f for f in sorted(os.listdir(os.path.join(REPO, 'plugins/modules')))
            if f.endswith('.py')] + ['plugins/module_utils/_iris.py', 'plugins/module_utils/_lvm.py',
                                     'plugins/module_utils/_vmware.py', 'plugins/module_utils/_freeze.py',
                                     'plugins/module_utils/_snapset.py', 'roles/hooks/files/irisops_hook.py',
                                     'plugins/module_utils/_backup.py', 'plugins/module_utils/_drill.py',
                                     'plugins/module_utils/_journal.py', 'plugins/module_utils/_restic.py',
                                     'plugins/module_utils/_restore.py']
#: The freeze engine's files: there every string literal with a `Next:` is an error message too (the engine builds
#: its messages as return values, parts and tuples), and so is the reason of a validity verdict (`x[k] = (VERDICT,
#: 'reason')`) and every part of a joined message (`parts.append(...)`).
ENGINE_FILES = ('plugins/module_utils/_freeze.py', 'plugins/module_utils/_snapset.py', 'plugins/module_utils/_lvm.py',
                'plugins/module_utils/_backup.py', 'plugins/module_utils/_drill.py', 'plugins/module_utils/_journal.py',
                'plugins/module_utils/_restic.py', 'plugins/module_utils/_restore.py')
CALLS = {'fail_json', 'fail', 'append', 'LvmError', 'InstanceError', 'ValueError', 'StunLogError', 'update', 'error',
         'StateDirError', 'LockBusy', 'SnapshotStepError'}
#: res['msg'] texts that report success or state, not an error
NOT_ERRORS = ('instance %s thawed', 'instance %s frozen', 'frozen:', 'instance %s is frozen', 'instance %s is not frozen',
              'froze %s for at most', 'nothing to freeze')
#: functions whose returned strings are error explanations (for a tuple, its last string)
HINT_FUNCS = {'_diagnose', 'instance_not_ready_error', 'check_run_id', 'run_validity', 'take_lock', 'arm',
              '_over_budget', 'interrupted', 'still_frozen_text'}
LIST_NAMES = {'errors', 'problems', 'failures'}
MSG_RE = re.compile(r"^\s*(?:fail_msg|msg):\s*(?:>-?|\|-?)?\s*(.*)$")


def fixed_part(text):
    """Longest fixed fragment at the start (or first long fragment) of a %-format string."""
    frags = [f.strip(" :;,.()'\"") for f in re.split(r'%[-#0-9.]*[sdrifx%]|\{\{.*?\}\}|\{%.*?%\}', text)]
    for f in frags:
        if len(f) >= 12:
            return f
    return None


def literal(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Tuple):            # (verdict, 'reason') / (valid, 'text'): the last string
        texts = [literal(e) for e in node.elts]
        texts = [t for t in texts if t]
        return texts[-1] if texts else None
    if isinstance(node, ast.BinOp):            # 'a' % x  or  'a' + b
        return literal(node.left)
    if isinstance(node, ast.JoinedStr):
        return ''.join(v.value if isinstance(v, ast.Constant) else '%s' for v in node.values)
    return None


def docstrings(tree):
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body and \
                isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
            found.add(id(node.body[0].value))
    return found


def engine_messages(path, tree):
    """The extra messages of a freeze engine file (see ENGINE_FILES)."""
    out = []
    skip = docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and 'Next:' in node.value \
                and id(node) not in skip:
            out.append((path, node.lineno, node.value))
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Subscript) and isinstance(node.value, ast.Tuple):
            text = literal(node.value)
            if text:
                out.append((path, node.lineno, text))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == 'append' \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == 'parts' and node.args:
            text = literal(node.args[0])
            if text:
                out.append((path, node.lineno, text))
    return out


def python_messages(path):
    tree = ast.parse(open(os.path.join(REPO, path)).read())
    out = engine_messages(path, tree) if path in ENGINE_FILES else []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in HINT_FUNCS:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Return) and sub.value is not None:
                    value = sub.value
                    if isinstance(value, ast.Tuple) and value.elts and isinstance(value.elts[0], ast.Constant) \
                            and value.elts[0].value is True:
                        continue           # (True, 'run ... is a valid backup window'): not an error
                    text = literal(value)
                    if text:
                        out.append((path, sub.lineno, text))
            continue
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Subscript):
            key = node.targets[0].slice
            if isinstance(key, ast.Constant) and key.value == 'msg':
                text = literal(node.value)
                if text and not text.startswith(NOT_ERRORS):
                    out.append((path, node.lineno, text))
            continue
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', None)
        if name not in CALLS:
            continue
        if name == 'append':
            owner = func.value
            if not (isinstance(owner, ast.Name) and owner.id in LIST_NAMES) and not (
                    isinstance(owner, ast.Attribute) and owner.attr in LIST_NAMES):
                continue
        if name == 'update':   # res.update(failed=True, msg=...): only failures
            if not any(k.arg == 'failed' for k in node.keywords):
                continue
            args = [k.value for k in node.keywords if k.arg == 'msg']
        else:
            args = list(node.args) + [k.value for k in node.keywords if k.arg == 'msg']
        for a in args[:2]:
            text = literal(a)
            if text:
                out.append((path, node.lineno, text))
                break
    return out


def role_messages():
    out = []
    for root, _dirs, files in os.walk(os.path.join(REPO, 'roles')):
        for f in files:
            if not f.endswith('.yml') or '/tasks' not in root:
                continue
            path = os.path.join(root, f)
            lines = open(path).read().splitlines()
            for i, line in enumerate(lines):
                m = MSG_RE.match(line)
                if not m:
                    continue
                # a msg: under a fail task or a fail_msg: of an assert
                context = '\n'.join(lines[max(0, i - 4):i])
                if 'fail_msg' not in line and 'ansible.builtin.fail' not in context:
                    continue
                text = m.group(1)
                j = i + 1
                while not text.strip() and j < len(lines):
                    text = lines[j]
                    j += 1
                block = [text]
                while j < len(lines) and lines[j].startswith(' ' * (len(line) - len(line.lstrip()) + 2)):
                    block.append(lines[j].strip())
                    j += 1
                out.append((os.path.relpath(path, REPO), i + 1, ' '.join(b.strip() for b in block).strip('"\'')))
    return out


def main():
    doc = re.sub(r'\s+', ' ', open(DOC).read())
    doc = doc.replace('`', '')
    messages = []
    for p in PY_FILES:
        messages += python_messages(p)
    messages += role_messages()
    missing, checked = [], 0
    for path, line, text in messages:
        frag = fixed_part(text)
        if frag is None:
            continue
        checked += 1
        frag = re.sub(r'\s+', ' ', frag).replace('`', '')
        if '--list' in sys.argv:
            print('%s:%d: %s' % (path, line, frag))
        if frag not in doc:
            missing.append('%s:%d: %s' % (path, line, frag))
    for m in missing:
        print('NOT IN docs/troubleshooting.md: ' + m)
    print('%d error messages checked, %d explained, %d missing' % (checked, checked - len(missing), len(missing)))
    return 1 if missing or not checked else 0


if __name__ == '__main__':
    sys.exit(main())
