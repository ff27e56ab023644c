"""Journal files and the journal APIs: %SYS.Journal.System (current file, switch), ^JRNSWTCH, Journal.Restore
(replay of journal records onto databases, with directory redirection, a filter routine, a chain check) and the
routines a filter needs (%Routine).

A journal file (``<journal dir>/YYYYMMDD.NNN``) is a header line ``IRISEMU-JOURNAL 1 instance=<I> created=<ctime>
prev=<path of the previous file>``, a 4 KB block of NULs and one text record per line::

    <local time ISO> <$HOROLOG> <TYPE> <payload>
    2025-12-07T10:00:01 67546,36001 SET ^["^^/usr/irissys/mgr/user/"]IRISEMU("gen")=42
    2025-12-07T10:00:01 67546,36001 JRNMARK -1 ExternalFreeze text=nightly

The write daemon appends one SET of ``IRISEMU("gen")`` per journalled database at the end of every write cycle:
the generation the cycle stamped into every block of that database.  Replaying such a record rewrites every block
of the (redirected) target database with that generation and the file's own identity (instance uid and name,
database name), i.e. the blocks the source instance wrote in that cycle, so restoring a backup taken at generation
g and applying the records written after it brings each database to the last generation applied.  A SET is
absolute: replaying a record the backup already contains changes nothing.  ``IRISEMU("frozen")`` records (written
while the write daemon is suspended) and markers change no block.

Records older than the ``<$HOROLOG>`` field (emulator versions before it) are read too (the time is then taken
from the ISO stamp); old-style ``SET ^IRISEMU("gen")=N`` records carry no directory and are skipped by a restore.
"""
import datetime
import json
import os
import re
import time

from . import config, dbfile, instance, util
from .objectscript import ByRef, Interpreter, Node, ObjError, to_num

HEADER_RE = re.compile(r"^IRISEMU-JOURNAL 1 instance=(?P<inst>\S*) created=(?P<created>.*?) prev=(?P<prev>\S*)$")
RECORD_RE = re.compile(r"^(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?: (?P<h>\d+,\d+))? (?P<type>[A-Z]+) (?P<rest>.*)$")
SET_RE = re.compile(r'^\^\["\^\^(?P<dir>[^"]*)"\](?P<glo>IRISEMU\("(?P<sub>[A-Za-z]+)"\))=(?P<value>.*)$')
JOURNAL_NAME_RE = re.compile(r"^(?:[A-Za-z0-9_-]*?)(\d{8})\.(\d{3,})$")


class JournalError(Exception):
    pass


def name_key(path):
    """Sort key of a journal file name (date, sequence), None when the name is not a journal file name."""
    m = JOURNAL_NAME_RE.match(os.path.basename(path))
    return (m.group(1), int(m.group(2))) if m else None


def read_header(path):
    """The header fields of a journal file: dict(instance, created, prev); JournalError when unreadable."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline(4096).decode("utf-8", "replace").rstrip("\n")
    except OSError as exc:
        raise JournalError("%s: %s" % (path, exc.strerror))
    m = HEADER_RE.match(first)
    if not m:
        raise JournalError("%s is not a journal file (bad header)" % path)
    return {"instance": m.group("inst"), "created": m.group("created"), "prev": m.group("prev")}


def _horolog_of_iso(iso):
    ts = time.mktime(datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S").timetuple())
    return "%d,%d" % util.horolog(ts)


def read_records(path):
    """All records of a journal file: list of dict(offset, iso, horolog, type, rest, dir, glo, sub, value).
    JournalError when the file cannot be read or holds a line that is not a record."""
    read_header(path)
    with open(path, "rb") as fh:
        data = fh.read()
    pos = data.index(b"\n") + 1
    while pos < len(data) and data[pos:pos + 1] == b"\0":
        pos += 1
    if data[pos:pos + 1] == b"\n":
        pos += 1
    out = []
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            raise JournalError("%s: incomplete record at offset %d" % (path, pos))
        line = data[pos:end].decode("utf-8", "replace")
        m = RECORD_RE.match(line)
        if not m:
            raise JournalError("%s: unreadable record at offset %d" % (path, pos))
        rec = {"offset": pos, "iso": m.group("iso"), "horolog": m.group("h") or _horolog_of_iso(m.group("iso")),
               "type": m.group("type"), "rest": m.group("rest"), "dir": None, "glo": None, "sub": None,
               "value": None}
        s = SET_RE.match(m.group("rest")) if m.group("type") == "SET" else None
        if s:
            rec.update(dir=s.group("dir"), glo=s.group("glo"), sub=s.group("sub"), value=s.group("value"))
        out.append(rec)
        pos = end + 1
    return out


# ---------------------------------------------------------------------------------------------------------------
# %SYS.Journal.System and ^JRNSWTCH

def switch_file(inst):
    """Switch the instance's journal to a new file; returns (old, new)."""
    with inst.state() as st:
        if not inst.is_running(st):
            raise JournalError("instance %s is not running" % inst.name)
        old = st["journal"].get("current")
        new = inst.new_journal_file(st)
        inst.log(0, "%s\nJournaling switched to: %s" % (inst.fl["journal_banner"], new), "Generic.Event")
    return old, new


def journal_system(session, meth, args):
    """%SYS.Journal.System class methods (a percent class: every namespace)."""
    inst = session.inst
    m = meth.lower()
    if m == "getcurrentfilename":
        return inst.read_state()["journal"].get("current") or ""
    if m == "getcurrentfileoffset":
        cur = inst.read_state()["journal"].get("current")
        try:
            return str(os.path.getsize(cur)) if cur else "0"
        except OSError:
            return "0"
    if m == "getprimarydirectory":
        return instance.canon_dir(inst.journal_dir)
    if m == "getalternatedirectory":
        return instance.canon_dir(inst.entry.get("alt_journal_dir") or inst.journal_dir)
    if m == "switchfile":  # UNCONFIRMED method name (the documented way is ^JRNSWTCH)
        try:
            switch_file(inst)
        except JournalError as exc:
            return "0 ERROR #%d: %s" % (config.ERR_JOURNAL_RESTORE, exc)
        return "1"
    return None


def jrnswtch(session):
    """Do ^JRNSWTCH: switch and print the previous and the new file (no prompt)."""
    try:
        old, new = switch_file(session.inst)
    except JournalError as exc:
        session.write("Journal switch failed: %s\n" % exc)
        return
    session.newline_if_needed()
    session.write(config.JRNSWTCH_FORMAT % (old or "", new))


# ---------------------------------------------------------------------------------------------------------------
# routines (%Routine): the emulator keeps routine source in mgr/irisemu/routines.json, per namespace

def _routines_path(inst):
    return os.path.join(inst.emudir, "routines.json")


def routine_key(name):
    """``ZFILT.INT`` / ``ZFILT.mac`` / ``^ZFILT`` / ``label^ZFILT`` -> ``ZFILT``."""
    name = str(name or "")
    if "^" in name:
        name = name.split("^", 1)[1]
    return re.sub(r"\.(int|mac|INT|MAC)$", "", name)


def load_routines(inst):
    with util.locked(inst.lock_path):
        return util.read_json(_routines_path(inst)) or {}


def _save_routine(inst, ns, key, lines, compiled):
    with util.locked(inst.lock_path):
        data = util.read_json(_routines_path(inst)) or {}
        data.setdefault(ns, {})[key] = {"lines": list(lines), "compiled": bool(compiled)}
        util.write_json_inplace(_routines_path(inst), data)


def _delete_routine(inst, ns, key):
    with util.locked(inst.lock_path):
        data = util.read_json(_routines_path(inst)) or {}
        found = data.get(ns, {}).pop(key, None) is not None
        util.write_json_inplace(_routines_path(inst), data)
    return found


LABEL_RE = re.compile(r"^(?P<label>%?[A-Za-z0-9]+)(?:\((?P<params>[^)]*)\))?(?:[ \t]+(?P<body>.*))?$")


class RoutineObject(object):
    """%Routine: %New(name), WriteLine(text), Write(text), Save(), Compile(qspec); properties Name."""
    CLASS = "%Library.Routine"

    def __init__(self, session, name):
        self.session = session
        self.key = routine_key(name)
        self.name = name
        self.lines = []
        self.partial = ""

    def get(self, prop):
        if prop == "Name":
            return self.name
        raise ObjError("PROPERTY DOES NOT EXIST", "*%s,%s" % (prop, self.CLASS))

    def set(self, prop, value):
        raise ObjError("PROPERTY DOES NOT EXIST", "*%s,%s" % (prop, self.CLASS))

    def call(self, meth, args):
        m = meth.lower()
        if m == "writeline":
            self.lines.append(self.partial + (args[0] if args and args[0] is not None else ""))
            self.partial = ""
            return "1"
        if m == "write":
            self.partial += args[0] if args and args[0] is not None else ""
            return "1"
        if m == "save":
            lines = self.lines + ([self.partial] if self.partial else [])
            _save_routine(self.session.inst, self.session.namespace, self.key, lines, False)
            return "1"
        if m == "compile":
            data = load_routines(self.session.inst).get(self.session.namespace, {}).get(self.key)
            if data is None:
                return "0 ERROR #5001: Routine %s does not exist" % self.key
            first = next((l for l in data["lines"] if l.strip()), "")
            if not LABEL_RE.match(first):
                return "0 ERROR #5001: Routine %s: the first line is not a label" % self.key
            _save_routine(self.session.inst, self.session.namespace, self.key, data["lines"], True)
            return "1"
        raise ObjError("METHOD DOES NOT EXIST", "*%s,%s" % (meth, self.CLASS))


def routine_class(session, meth, args):
    m = meth.lower()
    name = args[0] if args and isinstance(args[0], str) else ""
    if m == "%new":
        if not name:
            raise ObjError("PARAMETER")
        return session.new_object(RoutineObject(session, name))
    if m == "exists":
        return "1" if routine_key(name) in load_routines(session.inst).get(session.namespace, {}) else "0"
    if m == "delete":
        if _delete_routine(session.inst, session.namespace, routine_key(name)):
            return "1"
        return "0 ERROR #5001: Routine %s does not exist" % routine_key(name)
    return None


def call_filter(session, filt, params):
    """Run the filter routine ``filt`` (``^NAME`` / ``NAME`` / ``label^NAME``) with the ^ZJRNFILT arguments
    (jidsys, dir, glo, type, restmode, addr, time); returns restmode (0/1).  ObjError on any problem."""
    key = routine_key(filt)
    label = filt.split("^", 1)[0] if "^" in filt and not filt.startswith("^") else key
    rt = load_routines(session.inst).get("%SYS", {}).get(key)
    if rt is None or not rt.get("compiled"):
        raise ObjError("NOROUTINE", "*^%s" % key)
    lines = rt["lines"]
    start = None
    for idx, line in enumerate(lines):
        m = LABEL_RE.match(line)
        if m and line[:1] not in (" ", "\t") and m.group("label") == label:
            start = idx
            break
    if start is None:
        raise ObjError("NOLINE", "*%s^%s" % (label, key))
    m = LABEL_RE.match(lines[start])
    names = [p.strip() for p in (m.group("params") or "").split(",") if p.strip()]
    interp = Interpreter(session)
    for n, v in zip(names, params):
        node = interp.vars[n] = Node()
        node.value = str(v)
    body = [m.group("body") or ""] + list(lines[start + 1:])
    for line in body:
        if line[:1] not in (" ", "\t", "") and line is not body[0]:
            break  # the next label: a routine falls through only within its own lines
        interp.run_line(line)
        if interp.quit_seen:
            break
    rm = interp.vars.get(names[4]) if len(names) > 4 else None
    return 1 if rm is not None and rm.value is not None and to_num(rm.value) else 0


# ---------------------------------------------------------------------------------------------------------------
# Journal.Restore

class ListObject(object):
    """The collection in SourceDatabases: GetNext(.key), GetAt(i), Count()."""
    CLASS = "%Library.ListOfDataTypes"

    def __init__(self, items):
        self.items = list(items)

    def get(self, prop):
        raise ObjError("PROPERTY DOES NOT EXIST", "*%s,%s" % (prop, self.CLASS))

    def set(self, prop, value):
        raise ObjError("PROPERTY DOES NOT EXIST", "*%s,%s" % (prop, self.CLASS))

    def call(self, meth, args):
        m = meth.lower()
        if m == "count":
            return str(len(self.items))
        if m == "getat":
            i = int(to_num(args[0] if args else 0))
            return self.items[i - 1] if 0 < i <= len(self.items) else ""
        if m == "getnext":
            ref = args[0] if args and isinstance(args[0], ByRef) else None
            cur = int(to_num(ref.node.value or 0)) if ref is not None else 0
            nxt = cur + 1
            if nxt > len(self.items):
                if ref is not None:
                    ref.node.value = ""
                return ""
            if ref is not None:
                ref.node.value = str(nxt)
            return self.items[nxt - 1]
        raise ObjError("METHOD DOES NOT EXIST", "*%s,%s" % (meth, self.CLASS))


def _truth(v):
    return bool(to_num(v or 0))


class RestoreObject(object):
    """Journal.Restore (see the module docstring and README "Journal restore")."""
    CLASS = "Journal.Restore"
    PROPS = ("AbortOnDatabaseError", "AbortOnJournalError", "DisableJournaling", "Dismount", "Filter", "FirstFile",
             "JournalLocation", "JournalLog", "LastFile", "MarkerTrigger", "RollBack", "SwitchOnCurrentJournal")

    def __init__(self, session):
        self.session = session
        self.inst = session.inst
        self.props = {"AbortOnDatabaseError": "0",          # InitialExpression 0 [CONFIRMED]
                      "AbortOnJournalError": config.RESTORE_ABORT_ON_JOURNAL_ERROR,
                      "DisableJournaling": "1", "Dismount": "0", "Filter": "", "FirstFile": "",
                      "JournalLocation": "", "JournalLog": "", "LastFile": "", "MarkerTrigger": "", "RollBack": "1",
                      "SwitchOnCurrentJournal": "1"}
        self.locations = []
        self.redirect = {}
        self.selected = []
        self.sources = []
        self.chain_candidates = {}

    # -- properties ---------------------------------------------------------------------------------------------
    def get(self, prop):
        if prop == "SourceDatabases":
            return self.session.new_object(ListObject(self.sources))
        if prop in self.props:
            return self.props[prop]
        raise ObjError("PROPERTY DOES NOT EXIST", "*%s,%s" % (prop, self.CLASS))

    def set(self, prop, value):
        if prop not in self.props:
            raise ObjError("PROPERTY DOES NOT EXIST", "*%s,%s" % (prop, self.CLASS))
        self.props[prop] = value

    # -- methods ------------------------------------------------------------------------------------------------
    def call(self, meth, args):
        m = meth.lower()
        vals = [a.node.value if isinstance(a, ByRef) else a for a in args]
        if m == "usejournallocation":
            if not vals or not vals[0]:
                raise ObjError("PARAMETER")
            d = instance.canon_dir(vals[0])
            if d not in self.locations:
                self.locations.append(d)
            return "1"
        if m == "redirectdatabase":
            if len(vals) < 2 or not vals[0] or not vals[1]:
                raise ObjError("PARAMETER")
            self.redirect[instance.canon_dir(vals[0])] = instance.canon_dir(vals[1])
            return "1"
        if m == "selectupdates":
            if not vals or not vals[0]:
                raise ObjError("PARAMETER")
            d = instance.canon_dir(vals[0])
            if d not in self.selected:
                self.selected.append(d)
            return "1"
        if m == "checkjournalintegrity":
            return self.check_integrity()
        if m == "run":
            return self.run()
        raise ObjError("METHOD DOES NOT EXIST", "*%s,%s" % (meth, self.CLASS))

    # -- the chain ------------------------------------------------------------------------------------------------
    def _search_dirs(self):
        """UseJournalLocation() directories, then the directories of FirstFile/LastFile when they are paths; the
        instance's own journal directories only when FirstFile is a bare name (a file of this instance)."""
        dirs = list(self.locations)
        for f in (self.props["FirstFile"], self.props["LastFile"]):
            if f and "/" in f:
                d = instance.canon_dir(os.path.dirname(f))
                if d not in dirs:
                    dirs.append(d)
        if "/" not in (self.props["FirstFile"] or ""):
            for d in (self.inst.journal_dir, self.inst.entry.get("alt_journal_dir")):
                if d and instance.canon_dir(d) not in dirs:
                    dirs.append(instance.canon_dir(d))
        return dirs

    def _candidates(self):
        """basename -> path of every journal file in the search directories (the first directory wins)."""
        found = {}
        for d in self._search_dirs():
            try:
                names = sorted(os.listdir(d))
            except OSError:
                continue
            for n in names:
                if name_key(n) is not None and n not in found and os.path.isfile(os.path.join(d, n)):
                    found[n] = os.path.join(d, n)
        return found

    def _resolve(self, name, cands):
        if not name:
            return None
        if "/" in name and os.path.isfile(name):
            return os.path.abspath(name)
        return cands.get(os.path.basename(name))

    def chain(self):
        """(files, gap, error): the files from FirstFile to LastFile following the headers' previous-file links;
        ``gap`` describes a missing file (the files before it are in ``files``); ``error`` a fatal problem."""
        cands = self._candidates()
        first = self._resolve(self.props["FirstFile"], cands)
        if not self.props["FirstFile"]:
            return [], None, "FirstFile is not set"
        if first is None:
            return [], None, "journal file %s not found" % self.props["FirstFile"]
        last_name = os.path.basename(self.props["LastFile"]) if self.props["LastFile"] else None
        if last_name and name_key(last_name) and name_key(first) and name_key(last_name) < name_key(first):
            return [], None, "LastFile %s is older than FirstFile %s" % (last_name, os.path.basename(first))
        try:
            source = read_header(first)["instance"]
        except JournalError as exc:
            return [], None, str(exc)
        # only files written by the same instance as FirstFile form its chain (names repeat across instances)
        nexts = {}
        same = {}
        for n, p in sorted(cands.items(), key=lambda kv: name_key(kv[0])):
            try:
                hdr = read_header(p)
            except JournalError:
                continue
            if hdr["instance"] != source:
                continue
            same[n] = p
            prev = os.path.basename(hdr["prev"])
            if prev and prev not in nexts:
                nexts[prev] = p
        cands = dict(same, **{os.path.basename(first): first})
        self.chain_candidates = cands
        files = [first]
        while True:
            cur = files[-1]
            if last_name and os.path.basename(cur) == last_name:
                return files, None, None
            nxt = nexts.get(os.path.basename(cur))
            if nxt is not None and nxt not in files:
                files.append(nxt)
                continue
            # no file names the current one as its predecessor
            later = sorted((n for n in cands if name_key(n) > name_key(cur)
                            and (not last_name or name_key(n) <= name_key(last_name))), key=name_key)
            if last_name or later:
                following = later[0] if later else last_name
                try:
                    says = os.path.basename(read_header(cands[following])["prev"]) if following in cands else ""
                except JournalError:
                    says = ""
                why = ("%s names %s as its previous file" % (following, says)) if says else \
                    ("%s was not found" % following)
                return files, "the journal file after %s is missing (%s)" % (os.path.basename(cur), why), None
            return files, None, None

    def check_integrity(self):
        files, gap, error = self.chain()
        if error:
            return "0 ERROR #%d: %s" % (config.ERR_JOURNAL_RESTORE, error)
        sources = []
        for f in files:
            try:
                for r in read_records(f):
                    if r["dir"] and r["dir"] not in sources:
                        sources.append(r["dir"])
            except JournalError as exc:
                return "0 ERROR #%d: %s" % (config.ERR_JOURNAL_RESTORE, exc)
        self.sources = sources
        if gap:
            return "0 ERROR #%d: %s" % (config.ERR_JOURNAL_RESTORE, gap)
        return "1"

    # -- run ----------------------------------------------------------------------------------------------------
    def _target_problem(self, target):
        """Why ``target`` cannot be updated (None when it can): no database there, a damaged database (the
        emulator's stand-in for a <DATABASE> error), or a database of another running instance (cannot mount)."""
        dat = os.path.join(target, self.inst.fl["dat"])
        if not os.path.isfile(dat):
            return "no database in %s" % target
        for ent in instance.registry_entries():
            if ent["name"] == self.inst.name:
                continue
            other = instance.Instance(ent)
            if any(instance.canon_dir(db["dir"]) == target for db in other.databases) and \
                    other.is_running(other.read_state()):
                return "%s is a database of the running instance %s (cannot mount it)" % (target, other.name)
        problems = dbfile.validate_file(dat)
        if problems:
            blk, why = problems[0]
            return "<DATABASE> %s%s: %s" % (dat, "" if blk is None else " block %d" % blk, why)
        return None

    def run(self):
        s = self.session
        abort_db = _truth(self.props["AbortOnDatabaseError"])
        abort_jrn = _truth(self.props["AbortOnJournalError"])
        filt = (self.props["Filter"] or "").strip()
        files, gap, error = self.chain()
        if error:
            return "0 ERROR #%d: %s" % (config.ERR_JOURNAL_RESTORE, error)
        if gap and abort_jrn and not config.RESTORE_APPLIES_UP_TO_GAP:
            s.write("Journal restore not started: %s\n" % gap)
            return "0 ERROR #%d: %s; nothing was applied" % (config.ERR_JOURNAL_RESTORE, gap)
        if gap and not abort_jrn:
            # ALTERNATE action: continue despite missing journal files, skipping the affected updates
            cands = self.chain_candidates
            last = os.path.basename(self.props["LastFile"]) if self.props["LastFile"] else None
            files = files + [cands[n] for n in sorted(cands, key=name_key)
                             if name_key(n) > name_key(files[-1]) and (not last or name_key(n) <= name_key(last))]
        cur = self.inst.read_state()["journal"].get("current")
        if cur and any(os.path.realpath(f) == os.path.realpath(cur) for f in files):
            if not _truth(self.props["SwitchOnCurrentJournal"]):
                return "0 ERROR #%d: the journal restore includes the current journal file %s" % (
                    config.ERR_JOURNAL_RESTORE, cur)
            old, new = switch_file(self.inst)
            s.write("Journaling switched to %s\n" % new)
        last_gen = {}        # target dir -> generation of the last record applied
        order = []           # targets in the order they were first updated
        bad_targets = {}     # target -> problem (skipped)
        not_selected = []
        point = None         # (file, offset, iso) of the last record applied
        stopped = None       # why the restore stopped early
        s.write("Journal file being applied: %s\n" % files[0])
        for f in files:
            try:
                recs = read_records(f)
            except JournalError as exc:
                if abort_jrn:
                    stopped = "journal file %s cannot be read: %s" % (f, exc)
                    break
                s.write("%s\n  skipped: %s\n" % (f, exc))
                continue
            s.write("%s\n" % f)
            marks = []
            half = len(recs) // 2
            for idx, r in enumerate(recs):
                if idx == half and len(recs) > 1:
                    marks.append("%.2f%%" % (100.0 * r["offset"] / max(os.path.getsize(f), 1)))
                if r["type"] != "SET" or not r["dir"]:
                    continue
                src = r["dir"]
                if self.selected and src not in self.selected:
                    if src not in not_selected:
                        not_selected.append(src)
                    continue
                if filt:
                    jidsys = "0,0"
                    try:
                        keep = call_filter(s, filt, [jidsys, src, r["glo"], "S", "", r["offset"], r["horolog"]])
                    except ObjError as exc:
                        stopped = "error in the journal filter %s at offset %d of %s: %s" % (
                            filt, r["offset"], f, exc.text())
                        break
                    if not keep:
                        continue
                target = self.redirect.get(src, src)
                if target in bad_targets:
                    continue
                if target not in last_gen and target not in bad_targets:
                    why = self._target_problem(target)
                    if why:
                        if abort_db:
                            stopped = "cannot apply the record at offset %d of %s to %s: %s" % (
                                r["offset"], f, target, why)
                            break
                        bad_targets[target] = why
                        continue
                if r["sub"] == "gen":
                    try:
                        g = int(r["value"])
                    except ValueError:
                        continue
                    if target not in last_gen:
                        order.append(target)
                    last_gen[target] = g
                point = (f, r["offset"], r["iso"])
            if stopped:
                break
            marks.append("100.00%")
            s.write("  %s\n" % " ".join(marks))
        write_error = None
        for target in order:
            try:
                dbfile.rewrite_generation(os.path.join(target, self.inst.fl["dat"]), last_gen[target])
            except (OSError, ValueError) as exc:
                write_error = "%s: %s" % (target, exc)
                bad_targets[target] = str(exc)
        stamp = time.strftime("%Y%m%d %H:%M:%S")
        reached = ("the last record applied is at offset %d of %s (%s)" % (point[1], point[0], point[2])
                   if point else "no record was applied")
        if not stopped and gap and abort_jrn:
            stopped = gap
        if stopped:
            s.write("[Journal restore aborted at %s]\n%s; %s\n" % (stamp, stopped, reached))
        else:
            s.write("[Journal restore completed at %s]\n" % stamp)
        updated = [t for t in order if t not in bad_targets]
        if updated:
            s.write("\nThe following databases have been updated:\n\n")
            for i, t in enumerate(updated, 1):
                s.write("%d. %s\n" % (i, t))
        skipped = list(bad_targets) + [d for d in not_selected if d not in bad_targets]
        if skipped:
            s.write("\nThe following databases have been skipped:\n\n")
            for i, t in enumerate(skipped, 1):
                s.write("%d. %s%s\n" % (i, t, ("  (%s)" % bad_targets[t]) if t in bad_targets else ""))
        self.inst.log(0 if not stopped else 1, "Journal restore of %s .. %s %s: %s" % (
            files[0], files[-1], "aborted" if stopped else "completed", reached))
        if stopped:
            code = config.ERR_JOURNAL_RESTORE_DATABASE if "cannot apply" in stopped else config.ERR_JOURNAL_RESTORE
            return "0 ERROR #%d: Journal restore stopped: %s; %s" % (code, stopped, reached)
        if write_error:
            return "0 ERROR #%d: %s" % (config.ERR_JOURNAL_RESTORE_DATABASE, write_error)
        return "1"


def restore_class(session, meth, args):
    if meth.lower() == "%new":
        return session.new_object(RestoreObject(session))
    return None


def dump_records(path):
    """Test helper (also `irisemu-ctl`-free debugging): the records of a file as JSON lines."""
    return "\n".join(json.dumps(r, sort_keys=True) for r in read_records(path))
