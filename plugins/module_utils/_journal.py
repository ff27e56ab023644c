# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
#
# Standard library only, no ansible import: the on-host engine (irisops-backup journals / drill) runs verbatim copies
# of this file next to _run.py and _iris.py.
"""What the collection says to IRIS / Caché about journals and integrity, after restoring an external backup.

Pure builders of ObjectScript and parsers of what it prints, no I/O.  Every builder returns the *lines* of a short
script for ``_iris.run_script()`` (``iris session INST -U %SYS`` / ``csession`` with the script on stdin; a session's
command argument must be a single entry reference or class method call, which none of these is).  Each script
reports through ``IRISOPS|key|value`` markers, prints its own end marker and ends with
``##Class(%SYSTEM.Process).Terminate(,$Select(ok:5,1:3))``: the exit status is 5 when the operation succeeded and 3
when it failed - the convention of Backup.General from an OS command, as _iris.SET_HISTORY_WRAP does for
ExternalSetHistory.  Any other exit status (login refused, <PROTECT>, <CLASS DOES NOT EXIST>, the session killed at
its timeout) is an error: :func:`interpret_run`.

* the current journal file and a journal switch: :func:`current_file_lines`, :func:`switch_lines`;
* a journal restore of a range of files onto given database directories, optionally up to a point (a file and an
  offset, or a time): :func:`restore_lines`, :func:`parse_restore_output`, :func:`restore_result`;
* the integrity check of given database directories: :func:`integrity_lines`, :func:`parse_integrity_output`,
  :func:`integrity_result`;
* the completed journal files of an instance (the ones that can be shipped): :func:`list_completed_journals`.

The sources of every fact are in docs/unconfirmed.md ("Restore, journal and integrity facts"); each UNCONFIRMED
name or behaviour is one constant below.
"""

from __future__ import absolute_import, division, print_function

import datetime
import os
import re
import sys

try:
    from ansible_collections.irisops.backup.plugins.module_utils import _iris
except ImportError:  # an on-host copy: the engine files side by side
    if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _iris  # pylint: disable=import-error

__metaclass__ = type

# ---------------------------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------------------------

#: Class and method that return the path of the current journal file (CONFIRMED: class reference of
#: %SYS.Journal.System, "GetCurrentFileName() as %String - Return the path of current journal file").
CURRENT_FILE_CALL = '##Class(%SYS.Journal.System).GetCurrentFileName()'

#: The line that switches the journal to a new file.  ^JRNSWTCH is the documented routine (CONFIRMED: Data Integrity
#: Guide, "Switch Journal Files Using ^JRNSWTCH"); that it asks nothing when called directly is INFERRED from the
#: guide's example (no prompt shown).  A blank line follows it in the script, so that a prompt would take its
#: default instead of the next line.  ``##Class(%SYS.Journal.System).SwitchFile()`` is not in the sources
#: (UNCONFIRMED).  Whatever the line, the switch is judged by the current file name before and after it.
JOURNAL_SWITCH_LINE = 'Do ^JRNSWTCH'

#: What ^JRNSWTCH prints (CONFIRMED text "Switching from: <old> To: <new>"; the line breaks are not visible in the
#: source, so any white space is accepted).  Only informative: the switch is judged by the file names.
SWITCH_OUTPUT_RE = re.compile(r'Switching from:\s*(?P<old>\S*)\s+To:\s*(?P<new>\S+)')

#: The journal restore class of %SYS (CONFIRMED: class reference of Journal.Restore, IRIS and Caché): %New(),
#: properties FirstFile, LastFile, Filter, AbortOnDatabaseError, AbortOnJournalError, DisableJournaling, ...;
#: UseJournalLocation(dir), RedirectDatabase(source,target), SelectUpdates(source), Run() as %Status.
RESTORE_CLASS = 'Journal.Restore'

#: Properties set on every restore (names CONFIRMED).  AbortOnJournalError: stop instead of skipping updates after a
#: journal problem such as a missing file (^JRNRESTO's default; the property's own default is UNCONFIRMED, so it is
#: set).  AbortOnDatabaseError: stop instead of skipping a database that cannot be updated (default 0, CONFIRMED),
#: so that a drill never reports databases it skipped as restored.  DisableJournaling: do not journal the restored
#: updates (^JRNRESTO's default answer; the property's semantics are INFERRED from its name).
RESTORE_SETTINGS = (('AbortOnJournalError', 1), ('AbortOnDatabaseError', 1), ('DisableJournaling', 1))

#: A stop point inside a file is made with a journal filter routine: the documented ^ZJRNFILT interface
#: ``ZJRNFILT(jidsys,dir,glo,type,restmode,addr,time)`` (CONFIRMED: Data Integrity Guide, "Filter Journal Records
#: Using ^ZJRNFILT"; addr = address of the record, time = $HOROLOG of the journal buffer, restmode 1 = restore)
#: named by Journal.Restore's ``Filter`` property (the property name is CONFIRMED; that it takes an entry reference
#: to a routine with that interface is UNCONFIRMED).
FILTER_PROPERTY = 'Filter'
FILTER_PARAMS = ('jidsys', 'dir', 'glo', 'type', 'restmode', 'addr', 'time')
#: The collection's own routine name (not ZJRNFILT, which ^JRNRESTO would offer to use and then rename), and the
#: value given to the Filter property (UNCONFIRMED form: an entry reference).
FILTER_ROUTINE = 'ZIRISOPSJF'
FILTER_REF = '^ZIRISOPSJF'
#: How the filter routine is created and removed: the %Routine class (CONFIRMED: "Enables you to read, create,
#: manipulate, save, and compile routines", Compile()); %New("NAME.INT"), WriteLine(), Save(), Delete() are
#: UNCONFIRMED (%Library.Routine follows the stream interface).
ROUTINE_NEW = '##Class(%Routine).%New("{routine}.INT")'
ROUTINE_DELETE = '##Class(%Routine).Delete("{routine}.INT")'

#: The integrity check API (CONFIRMED: Data Integrity Guide, "Integrity Check API"):
#: $$CheckList^Integrity(outputglobal,dirlist,stopafteranyerror,listofglolist,maxproc,partialcheck) returns a
#: %Status (OK: no errors; the single error $$$IntegrityCheckErrors: errors found; anything else: the check did not
#: complete) and keeps the results in ^IRIS.TempIntegrityOutput(+$JOB); Display^Integrity(integritout,flags,dirsum)
#: prints them (flags 0 all, 1 errors and warnings, 2 errors only).  Caché: CheckList^Integrity and its output global
#: ^CacheTempIntegrityOutput are UNCONFIRMED (IRIS renamed CacheTemp* globals to IRIS.Temp*).
INTEGRITY_CALL = '$$CheckList^Integrity(,{dirs},0,,{maxproc})'
INTEGRITY_DISPLAY = 'Do Display^Integrity(,{flags})'
INTEGRITY_FLAGS = 1
#: One process: the check of a restored copy competes with nothing, and a single job is what the guide's
#: programmatic examples and public scripts use.
INTEGRITY_MAXPROC = 1
INTEGRITY_OUTPUT_GLOBAL = {'iris': '^IRIS.TempIntegrityOutput', 'cache': '^CacheTempIntegrityOutput'}
#: Texts of ^Integrity's output (CONFIRMED: "No Errors were found in this directory." / "No Errors were found.",
#: "---Directory <dir>---"; what an error line looks like is UNCONFIRMED, so every other line of a directory's section
#: that mentions an error is taken as one).
INTEGRITY_DIR_RE = re.compile(r'^-+\s*Directory\s+(?P<dir>\S+?)\s*-+$')
INTEGRITY_CLEAN_DIR = 'No Errors were found in this directory.'
INTEGRITY_CLEAN = 'No Errors were found.'

#: Texts of Journal.Restore.Run() / ^JRNRESTO (CONFIRMED: Data Integrity Guide and a transcript by InterSystems
#: Japan, IRIS 2024.1): "Journal file being applied: <path>", each file followed by its progress ("  2.91%
#: 100.00%"), "[Journal restore completed at YYYYMMDD HH:MM:SS]", "The following databases have been updated:" and
#: "... skipped:" with numbered directories.  What a restore prints when it stops early is UNCONFIRMED: the point
#: reached is taken from the files whose progress reached 100.00%.
RESTORE_APPLYING_RE = re.compile(r'Journal file being applied:\s*(?P<path>\S+)')
RESTORE_PROGRESS_RE = re.compile(r'^(?P<path>[^\s%]*[/\\][^\s%]*)?\s*(?P<pct>(?:\d{1,3}\.\d\d%\s*)+)$')
RESTORE_DONE_RE = re.compile(r'\[Journal restore (?P<how>\w+) at (?P<at>\d{8} \d\d:\d\d:\d\d)\]')
RESTORE_LIST_HEADS = (('updated', 'The following databases have been updated:'),
                      ('skipped', 'The following databases have been skipped:'))

#: Journal file names (date and sequence; optional prefix; a trailing letter, e.g. ``z`` for a compressed file).
JOURNAL_KEY_RE = re.compile(r'(?P<date>\d{8})\.(?P<seq>\d{3,})(?P<suffix>[a-z]?)$')

#: Marker keys the scripts print.
MARK = _iris.SCRIPT_MARK
_PROMPT_RE = re.compile(r'^(?:%?[A-Za-z0-9]+>)+')


# ---------------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------------

def canonical_dir(path):
    """A database or journal directory as IRIS writes it in journal records: absolute, with a trailing slash
    (^JRNRESTO canonicalizes the paths it is given; Journal.Restore users must give them in that form)."""
    if not path:
        raise ValueError('a directory is required')
    path = os.path.normpath(str(path))
    if not os.path.isabs(path):
        raise ValueError('%r is not an absolute path' % path)
    return path if path.endswith('/') else path + '/'


def _q(value):
    return _iris.objectscript_string(value)


def status_write(key, sc='sc'):
    """ObjectScript that prints the %Status ``sc`` as ``IRISOPS|key|<1 or 0>|<error text>``."""
    return _iris.script_status_write(key, sc)


def parse_status(value):
    """``(ok, text)`` from a status marker value (``1|`` / ``0|ERROR #...``); ``(None, '')`` when missing."""
    if value is None:
        return None, ''
    flag, _sep, text = value.partition('|')
    return flag.strip() == '1', text.strip()


def end_lines(ok_expr):
    """The end marker, then Terminate with 5 when ``ok_expr`` is true, 3 otherwise."""
    terminate = 'Do ##Class(%%SYSTEM.Process).Terminate(,$Select(%s:%d,1:%d))' % (
        ok_expr, _iris.RC_SUCCESS, _iris.RC_FAILURE)
    return ['Write "%send|1",!' % MARK, terminate]


def horolog(when):
    """``"days,seconds"`` ($HOROLOG, local time of the instance) of a datetime, an epoch number, a $H string or a
    ``YYYY-MM-DD HH:MM[:SS]`` string (the form the drill's ``until`` is given in).  A naive datetime (and such a
    string) is taken as the instance's wall clock; an aware one is converted to this machine's local time (run on the
    instance's host)."""
    if isinstance(when, str) and re.match(r'^\d+,\d+$', when.strip()):
        return when.strip()
    if isinstance(when, str):
        for fmt in ('%Y-%m-%d %H:%M:%S', '%Y-%m-%dT%H:%M:%S', '%Y-%m-%d %H:%M', '%Y-%m-%dT%H:%M'):
            try:
                when = datetime.datetime.strptime(when.strip(), fmt)
                break
            except ValueError:
                continue
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        when = datetime.datetime.fromtimestamp(when)
    if not isinstance(when, datetime.datetime):
        raise ValueError('a time is YYYY-MM-DD HH:MM:SS (the local time of the instance), a datetime, an epoch number '
                         'or a $HOROLOG string, not %r' % (when,))
    if when.tzinfo is not None:
        when = when.astimezone().replace(tzinfo=None)
    days = (when.date() - datetime.date(1840, 12, 31)).days
    return '%d,%d' % (days, when.hour * 3600 + when.minute * 60 + when.second)


def _horolog_seconds(h):
    d, s = h.split(',')
    return int(d) * 86400 + int(s)


def _lines_of(text):
    """Output lines without the terminal prompts (``%SYS>``) a script session prints before each line."""
    out = []
    for line in (text or '').replace('\r\n', '\n').replace('\r', '\n').split('\n'):
        out.append(_PROMPT_RE.sub('', line).rstrip())
    return out


# ---------------------------------------------------------------------------------------------------------------
# Current journal file, switch
# ---------------------------------------------------------------------------------------------------------------

def current_file_lines():
    """Script: print the current journal file (``journal.current``); exit 5 when there is one, 3 when none."""
    return ['Set cur=%s' % CURRENT_FILE_CALL, 'Write "%sjournal.current|",cur,!' % MARK] + end_lines('cur\'=""')


def switch_lines():
    """Script: the current file (``journal.old``), the switch, the current file again (``journal.new``); exit 5 when
    the current file changed, 3 when it did not."""
    return (['Set old=%s' % CURRENT_FILE_CALL, 'Write "%sjournal.old|",old,!' % MARK,
             JOURNAL_SWITCH_LINE, '',
             'Set new=%s' % CURRENT_FILE_CALL, 'Write "%sjournal.new|",new,!' % MARK]
            + end_lines('(new\'="")&(new\'=old)'))


def parse_current_file(values):
    """The current journal file from the markers of current_file_lines(), None when journaling is off/unknown."""
    cur = (values or {}).get('journal.current')
    return cur or None


def parse_switch(values, stdout=''):
    """``dict(switched, old, new, printed)`` from the markers (and output) of switch_lines(): switched when the
    current file changed; ``printed`` is what ^JRNSWTCH said (old, new) when it was recognised."""
    values = values or {}
    old, new = values.get('journal.old') or None, values.get('journal.new') or None
    m = SWITCH_OUTPUT_RE.search(stdout or '')
    return {'switched': bool(new) and new != old, 'old': old, 'new': new,
            'printed': (m.group('old'), m.group('new')) if m else None}


# ---------------------------------------------------------------------------------------------------------------
# Journal restore
# ---------------------------------------------------------------------------------------------------------------

def normalize_stop(stop):
    """A stop point: None, ``{'file': path, 'offset': n}`` (apply the records of that file at addresses up to and
    including n, and nothing after that file) or ``{'time': when}`` (apply the records whose journal buffer time is
    not after ``when``; see horolog()).  Returns a normalized dict or None; ValueError when malformed."""
    if stop is None:
        return None
    if not isinstance(stop, dict):
        raise ValueError('a stop point is a dict with file and offset, or time')
    if 'time' in stop and stop.get('time') is not None:
        if stop.get('file') or stop.get('offset') is not None:
            raise ValueError('a stop point is either file+offset or time, not both')
        return {'time': horolog(stop['time'])}
    if not stop.get('file') or stop.get('offset') is None:
        raise ValueError('a stop point needs file and offset (or time)')
    try:
        offset = int(stop['offset'])
    except (TypeError, ValueError):
        raise ValueError('offset must be an integer, got %r' % (stop['offset'],))
    if offset < 0:
        raise ValueError('offset must not be negative')
    return {'file': str(stop['file']), 'offset': offset}


def stop_condition(stop):
    """The ObjectScript condition of the filter routine (1 = restore the record) for a normalized stop point."""
    if 'time' in stop:
        return '(($Piece(time,",")*86400+$Piece(time,",",2))\'>%d)' % _horolog_seconds(stop['time'])
    return "(addr'>%d)" % stop['offset']


def filter_routine_line(stop):
    """The one line of the filter routine: ``ZIRISOPSJF(jidsys,...,time) Set restmode=<cond> Quit``."""
    return '%s(%s) Set restmode=%s Quit' % (FILTER_ROUTINE, ','.join(FILTER_PARAMS), stop_condition(stop))


def _same_file(a, b):
    return os.path.basename(str(a)) == os.path.basename(str(b))


def _restore_object_lines(var, first, last, redirects, locations, select, with_filter):
    lines = ['Set %s=##Class(%s).%%New()' % (var, RESTORE_CLASS),
             'Set %s.FirstFile=%s' % (var, _q(first))]
    if last:
        lines.append('Set %s.LastFile=%s' % (var, _q(last)))
    for d in locations:
        lines.append('Do %s.UseJournalLocation(%s)' % (var, _q(canonical_dir(d))))
    for name, value in RESTORE_SETTINGS:
        lines.append('Set %s.%s=%s' % (var, name, value))
    for i, src in enumerate(select, 1):
        lines.append('Set xsc=%s.SelectUpdates(%s) %s' % (
            var, _q(src), status_write('restore.%s.select.%d' % (var, i), 'xsc')))
    for i, (src, tgt) in enumerate(redirects, 1):
        lines.append('Set xsc=%s.RedirectDatabase(%s,%s) %s' % (
            var, _q(src), _q(tgt), status_write('restore.%s.redirect.%d' % (var, i), 'xsc')))
    if with_filter:
        lines.append('Set %s.%s=%s' % (var, FILTER_PROPERTY, _q(FILTER_REF)))
    return lines


def restore_lines(first_file, last_file=None, redirects=(), locations=(), stop=None, files=None, select=None):
    """Script: restore journal files ``first_file`` .. ``last_file`` (LastFile omitted: up to the last file found)
    onto the databases, with Journal.Restore.

    ``redirects``: ``[(source_dir, target_dir)]`` - the directories the journal records name (the production
    databases) and where to apply them (the restored copies); only these source databases are restored
    (SelectUpdates) unless ``select`` lists the sources explicitly.  ``locations``: directories holding the journal
    files (shipped copies).  ``stop``: see normalize_stop().  ``files``: the ordered chain of journal files
    (list_completed_journals()), needed for a file+offset stop in a later file than ``first_file``: the restore
    then runs twice - ``first_file`` .. the file before the stop file, then the stop file alone with the filter - and
    the second run only runs when the first one succeeded.  Exit 5 when every run returned OK, 3 otherwise.

    Markers: ``restore.run`` (and ``restore.run2``) with the %Status of Run(), ``restore.filter.save`` /
    ``restore.filter.compile`` when a filter routine is used, ``restore.<var>.select.N`` / ``.redirect.N``.
    """
    if not first_file:
        raise ValueError('first_file is required')
    stop = normalize_stop(stop)
    redirects = [(canonical_dir(s), canonical_dir(t)) for s, t in (redirects or ())]
    if len(set(t for _s, t in redirects)) != len(redirects):
        raise ValueError('two source databases redirected to one target directory')
    select = [canonical_dir(s) for s in select] if select else [s for s, _t in redirects]
    locations = list(locations or ())
    runs = []  # (first, last, with_filter)
    if stop is None:
        runs.append((first_file, last_file, False))
    elif 'time' in stop:
        runs.append((first_file, last_file, True))
    else:
        sfile = stop['file']
        if _same_file(sfile, first_file):
            runs.append((first_file, first_file, True))
        else:
            chain = [str(f) for f in (files or ())]
            idx = [i for i, f in enumerate(chain) if _same_file(f, sfile)]
            start = [i for i, f in enumerate(chain) if _same_file(f, first_file)]
            if not idx or not start or idx[0] <= start[0]:
                raise ValueError('a stop at %s needs the ordered journal files from %s to it (files=)'
                                 % (sfile, first_file))
            runs.append((first_file, chain[idx[0] - 1], False))
            runs.append((sfile, sfile, True))
        if last_file and not _same_file(last_file, sfile):
            raise ValueError('last_file %s and the stop file %s differ' % (last_file, sfile))
    lines = []
    use_filter = any(f for _a, _b, f in runs)
    guard = '1'
    if use_filter:
        lines += ['Set rt=%s' % ROUTINE_NEW.format(routine=FILTER_ROUTINE),
                  'Do rt.WriteLine(%s)' % _q(filter_routine_line(stop)),
                  'Set fsc=rt.Save() %s' % status_write('restore.filter.save', 'fsc'),
                  'Set csc=rt.Compile() %s' % status_write('restore.filter.compile', 'csc')]
        guard = '$SYSTEM.Status.IsOK(fsc)&$SYSTEM.Status.IsOK(csc)'
    prev_ok = None
    for n, (a, b, with_filter) in enumerate(runs, 1):
        var = 'r' if n == 1 else 'r%d' % n
        sc = 'sc' if n == 1 else 'sc%d' % n
        lines += _restore_object_lines(var, a, b, redirects, locations, select, with_filter)
        conds = []
        if with_filter:
            conds.append(guard)
        if prev_ok:
            conds.append(prev_ok)
        cond = '&'.join('(%s)' % c for c in conds)
        if cond:
            # never run without the filter, never apply a later file after an earlier run failed
            lines.append('Set %s=$Select(%s:%s.Run(),1:$SYSTEM.Status.Error(5001,"not run: %s"))' % (
                sc, cond, var, 'the filter routine could not be created' if n == 1 or not prev_ok
                else 'the previous run failed or the filter routine could not be created'))
        else:
            lines.append('Set %s=%s.Run()' % (sc, var))
        lines.append(status_write('restore.run' if n == 1 else 'restore.run%d' % n, sc))
        prev_ok = '$SYSTEM.Status.IsOK(%s)' % sc
    if use_filter:
        lines.append('Set dsc=%s' % ROUTINE_DELETE.format(routine=FILTER_ROUTINE))
    ok = '&'.join('$SYSTEM.Status.IsOK(%s)' % ('sc' if n == 1 else 'sc%d' % n) for n in range(1, len(runs) + 1))
    return lines + end_lines(ok)


def parse_restore_output(text):
    """What Journal.Restore.Run() printed: dict(applying, files=[{'path', 'progress', 'complete'}], complete_files,
    finished ('completed', 'aborted', ... or None), finished_at, updated=[dirs], skipped=[dirs])."""
    res = {'applying': None, 'files': [], 'complete_files': [], 'finished': None, 'finished_at': None,
           'updated': [], 'skipped': []}
    section = None
    pending = None
    for line in _lines_of(text):
        s = line.strip()
        m = RESTORE_APPLYING_RE.search(s)
        if m:
            res['applying'] = res['applying'] or m.group('path')
            continue
        m = RESTORE_DONE_RE.search(s)
        if m:
            res['finished'], res['finished_at'] = m.group('how'), m.group('at')
            section = None
            continue
        heads = [k for k, head in RESTORE_LIST_HEADS if s.startswith(head)]
        if heads:
            section = heads[0]
            continue
        if section:
            m = re.match(r'^\d+\.\s+(\S+)', s)
            if m:
                res[section].append(m.group(1))
                continue
            if s:
                section = None
        m = RESTORE_PROGRESS_RE.match(s)
        if m and (m.group('path') or pending):
            path = m.group('path') or pending
            pct = m.group('pct').split()
            res['files'].append({'path': path, 'progress': pct, 'complete': '100.00%' in pct})
            pending = None
            continue
        if re.match(r'^[^\s%]*[/\\][^\s%]*$', s) and not s.startswith('<'):
            pending = s
            continue
        pending = None
    res['complete_files'] = [f['path'] for f in res['files'] if f['complete']]
    return res


def interpret_run(res):
    """``(outcome, message)`` of a run_script() result of these scripts: 'success' (exit 5, end marker printed),
    'failure' (exit 3, end marker printed), 'error' (anything else)."""
    rc = res.get('rc')
    complete = res.get('complete')
    if rc == _iris.RC_SUCCESS and complete:
        return 'success', 'exit status %d (success)' % rc
    if rc == _iris.RC_FAILURE and complete:
        return 'failure', 'exit status %d (failure)' % rc
    if rc is None:
        why = 'the session did not finish within its timeout and was killed'
    elif res.get('denied'):
        why = 'login refused (Access Denied): check OS authentication of the user the session runs as'
    elif res.get('errors'):
        why = 'ObjectScript error: %s' % '; '.join(res['errors'][:3])
    elif not complete:
        why = 'the script did not reach its end'
    else:
        why = 'unexpected exit status'
    return 'error', 'exit status %s is neither %d nor %d: %s' % ('None (timeout)' if rc is None else rc,
                                                                 _iris.RC_SUCCESS, _iris.RC_FAILURE, why)


def restore_result(res, stop=None):
    """The outcome of a restore_lines() script: dict(outcome, message, ok, statuses, output, point_reached).

    ``point_reached`` never claims more than what is certain: after success, the stop point (file+offset or time)
    or, without one, the end of the last file applied; after a failure, the end of the last file whose progress
    reached 100.00% (None when none did) - records of a later file may have been applied, but are not claimed."""
    stop = normalize_stop(stop)
    values = res.get('values') or {}
    outcome, message = interpret_run(res)
    out = parse_restore_output(res.get('stdout') or '')
    statuses = {}
    for key in ('restore.filter.save', 'restore.filter.compile', 'restore.run', 'restore.run2'):
        if key in values:
            statuses[key] = parse_status(values[key])
    ok = outcome == 'success' and all(v[0] for v in statuses.values()) and statuses.get('restore.run', (False,))[0]
    if ok and stop is not None:
        point = dict(stop)
    elif ok and out['complete_files']:
        point = {'file': out['complete_files'][-1], 'offset': None}
    elif ok:
        point = None
    else:
        point = {'file': out['complete_files'][-1], 'offset': None} if out['complete_files'] else None
    if outcome == 'failure':
        errors = ['%s: %s' % (k, t) for k, (flag, t) in sorted(statuses.items()) if not flag]
        message = 'journal restore failed: %s' % ('; '.join(errors) or message)
    return {'outcome': outcome, 'message': message, 'ok': ok, 'statuses': statuses, 'output': out,
            'point_reached': point}


# ---------------------------------------------------------------------------------------------------------------
# Integrity check
# ---------------------------------------------------------------------------------------------------------------

def integrity_lines(dirs, flavour='iris', flags=INTEGRITY_FLAGS, maxproc=INTEGRITY_MAXPROC):
    """Script: CheckList^Integrity of ``dirs`` (database directories), Display^Integrity, the %Status as
    ``integrity.check``, the output global killed; exit 5 when no errors were found, 3 otherwise."""
    dirs = [canonical_dir(d) for d in dirs or ()]
    if not dirs:
        raise ValueError('at least one database directory is required (an empty list would check every database)')
    glo = '%s(+$JOB)' % INTEGRITY_OUTPUT_GLOBAL.get(flavour or 'iris', INTEGRITY_OUTPUT_GLOBAL['iris'])
    lb = '$ListBuild(%s)' % ','.join(_q(d) for d in dirs)
    return (['Kill %s' % glo,
             'Set sc=%s' % INTEGRITY_CALL.format(dirs=lb, maxproc=int(maxproc)),
             INTEGRITY_DISPLAY.format(flags=int(flags)),
             status_write('integrity.check'),
             'Kill %s' % glo]
            + end_lines('$SYSTEM.Status.IsOK(sc)'))


def parse_integrity_output(text):
    """What Display^Integrity printed: dict(directories={dir: {'clean': True/False/None, 'errors': [lines]}},
    errors=[all error lines], clean=True/False/None (the final verdict line))."""
    dirs = {}
    order = []
    cur = None
    verdict = None
    errors = []
    for line in _lines_of(text):
        s = line.strip()
        if not s:
            continue
        m = INTEGRITY_DIR_RE.match(s)
        if m and not s.startswith('---Total'):
            cur = m.group('dir')
            if cur not in dirs:
                dirs[cur] = {'clean': None, 'errors': []}
                order.append(cur)
            continue
        if s == INTEGRITY_CLEAN_DIR:
            if cur:
                dirs[cur]['clean'] = True
            continue
        if s == INTEGRITY_CLEAN:
            verdict = True
            continue
        if re.match(r'^Errors were found( in this directory)?\.?$', s):
            if 'directory' in s and cur:
                dirs[cur]['clean'] = False
            else:
                verdict = False
            continue
        if s.startswith(MARK) or s.startswith('---Total'):
            continue
        if re.search(r'(?i)\berrors?\b', s):
            errors.append(s)
            if cur:
                dirs[cur]['errors'].append(s)
                dirs[cur]['clean'] = False
    return {'directories': dict((d, dirs[d]) for d in order), 'order': order, 'errors': errors, 'clean': verdict}


def integrity_result(res):
    """The outcome of an integrity_lines() script: dict(outcome, ok, status_text, message, output)."""
    values = res.get('values') or {}
    outcome, message = interpret_run(res)
    ok_flag, text = parse_status(values.get('integrity.check'))
    out = parse_integrity_output(res.get('stdout') or '')
    ok = outcome == 'success' and ok_flag is True
    if outcome == 'failure':
        bad = [d for d in out['order'] if out['directories'][d]['clean'] is False]
        message = 'integrity check found errors%s: %s' % (
            (' in %s' % ', '.join(bad)) if bad else '', '; '.join(out['errors'][:5]) or text)
    return {'outcome': outcome, 'ok': ok, 'status_text': text, 'message': message, 'output': out}


# ---------------------------------------------------------------------------------------------------------------
# Journal files
# ---------------------------------------------------------------------------------------------------------------

def journal_key(path):
    """Sort key of a journal file: (date, sequence, suffix, path); None for a name that is not a journal file."""
    m = JOURNAL_KEY_RE.search(os.path.basename(str(path)))
    if not m or not _iris.JOURNAL_FILE_RE.match(os.path.basename(str(path))):
        return None
    return (m.group('date'), int(m.group('seq')), m.group('suffix'), str(path))


def list_completed_journals(dirs, current):
    """Every journal file in ``dirs`` except the current one (the file IRIS is writing, by name, in whatever
    directory), oldest first (by date and sequence, whatever the directory).  Files that sort after the current
    one are left out too: they cannot be complete.  ``current`` None: every file."""
    files = [f for f in _iris.list_journal_files(dirs) if journal_key(f) is not None]
    files.sort(key=journal_key)
    if not current:
        return files
    cur = journal_key(current)
    base = os.path.basename(str(current))
    out = []
    for f in files:
        if os.path.basename(f) == base:
            continue
        if cur is not None and journal_key(f)[:2] >= cur[:2]:
            continue
        out.append(f)
    return out


def journals_from(files, first_file):
    """The files of the ordered list ``files`` from ``first_file`` (by name) on: the chain a restore needs."""
    for i, f in enumerate(files):
        if _same_file(f, first_file):
            return list(files[i:])
    return []
