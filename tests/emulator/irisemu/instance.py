"""An emulated instance: registry entry, instance tree, runtime state, messages.log, journal files."""
import contextlib
import os
import re
import time

from . import config, util


class EmuError(Exception):
    def __init__(self, msg, rc=config.RC_ERROR):
        Exception.__init__(self, msg)
        self.rc = rc


# ---------------------------------------------------------------------------------------------------------------
# registry

def registry_entries(flavour=None):
    d = config.registry_dir()
    out = []
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return out
    for f in names:
        if not f.endswith(".json"):
            continue
        ent = util.read_json(os.path.join(d, f))
        if ent and (flavour is None or ent.get("flavour") == flavour):
            out.append(ent)
    out.sort(key=lambda e: (e.get("order", 0), e["name"]))
    return out


def find(name, flavour=None):
    for ent in registry_entries(flavour):
        if ent["name"].upper() == name.upper():
            return Instance(ent)
    return None


def get(name, flavour=None):
    inst = find(name, flavour)
    if inst is None:
        raise EmuError("Instance '%s' not found." % name)
    return inst


# ---------------------------------------------------------------------------------------------------------------
# CPF parsing (simple, order preserving)

def parse_cpf(text):
    sections = {}
    cur = None
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith(";"):
            continue
        m = re.match(r"^\[(.+)\]$", s)
        if m:
            cur = sections.setdefault(m.group(1), {})
            continue
        if cur is not None and "=" in s:
            k, v = s.split("=", 1)
            cur[k.strip()] = v.strip()
    return sections


def set_cpf_value(path, section, key, value):
    with open(path) as fh:
        lines = fh.read().splitlines()
    out, cur, done, sec_found = [], None, False, False
    for i, line in enumerate(lines):
        m = re.match(r"^\[(.+)\]\s*$", line.strip())
        if m:
            if cur == section and not done:
                out.append("%s=%s" % (key, value))
                done = True
            cur = m.group(1)
            if cur == section:
                sec_found = True
            out.append(line)
            continue
        if cur == section and not done and "=" in line and line.split("=", 1)[0].strip() == key:
            out.append("%s=%s" % (key, value))
            done = True
            continue
        out.append(line)
    if not done:
        if cur == section:
            out.append("%s=%s" % (key, value))
        else:
            if not sec_found:
                out.extend(["", "[%s]" % section])
            out.append("%s=%s" % (key, value))
    with open(path, "w") as fh:
        fh.write("\n".join(out) + "\n")


# ---------------------------------------------------------------------------------------------------------------

def canon_dir(path):
    """A database directory in canonical form: absolute, with a trailing slash (as in journal records)."""
    path = os.path.abspath(path or "/")
    return path if path.endswith("/") else path + "/"


def _chmod_0666(fd):
    try:
        os.fchmod(fd, 0o666)
    except PermissionError:
        pass


class Instance(object):
    def __init__(self, entry):
        self.entry = entry
        self.name = entry["name"]
        self.flavour = entry["flavour"]
        self.fl = config.FLAVOURS[self.flavour]
        self.dir = entry["dir"]
        self.mgr = os.path.join(self.dir, "mgr")
        self.emudir = os.path.join(self.mgr, "irisemu")
        self.state_path = os.path.join(self.emudir, "state.json")
        self.lock_path = os.path.join(self.emudir, "state.lock")
        self.security_path = os.path.join(self.emudir, "security.json")
        self.history_path = os.path.join(self.emudir, "buhistory.json")
        self.cpf_path = os.path.join(self.dir, self.fl["cpf"])
        self.log_path = os.path.join(self.mgr, self.fl["log"])
        self.journal_dir = entry["journal_dir"]
        self.uid = bytes.fromhex(entry["uid"])

    # -- static configuration -----------------------------------------------------------------------------------
    @property
    def databases(self):
        """[{name, dir, journal}]"""
        return self.entry["databases"]

    def db_file(self, db):
        return os.path.join(db["dir"], self.fl["dat"])

    @property
    def owner(self):
        return self.entry["owner"]

    @property
    def manager(self):
        return self.entry.get("manager") or self.entry["owner"]

    def cpf(self):
        try:
            with open(self.cpf_path) as fh:
                return parse_cpf(fh.read())
        except FileNotFoundError:
            return {}

    def backups_before_purge(self):
        try:
            return int(self.cpf().get("Journal", {}).get("BackupsBeforePurge", "2"))
        except ValueError:
            return 2

    def mirror(self):
        """(member_type, status) or (None, None)."""
        m = self.entry.get("mirror") or {}
        return m.get("member_type"), m.get("status")

    def namespaces(self):
        ns = ["%SYS", "USER"]
        for db in self.databases:
            if db["name"] not in ns and db["name"] not in (self.fl["sysdb"], self.fl["libdb"], self.fl["tempdb"]):
                ns.append(db["name"])
        return ns

    # -- runtime state --------------------------------------------------------------------------------------------
    def default_state(self):
        return {"running": False, "wd_pid": None, "started_at": None, "last_used": None,
                "generation": 0, "wd": {"state": "stopped", "heartbeat": None},
                "load": {"interval_ms": config.DEFAULT_WRITE_INTERVAL_MS,
                         "block_pause_ms": config.DEFAULT_BLOCK_PAUSE_MS, "paused": False},
                "journal": {"current": None}, "freeze": None, "freeze_ended": None,
                "last_restore_journal": None}

    @contextlib.contextmanager
    def state(self):
        """Exclusive access to the state; lazily enforces WDSuspendLimit; writes back on exit."""
        with util.locked(self.lock_path):
            st = util.read_json(self.state_path) or self.default_state()
            before = repr(st)
            self.refresh(st)
            yield st
            if repr(st) != before:
                util.write_json_inplace(self.state_path, st)

    def read_state(self):
        if not os.path.isdir(self.emudir):
            # mgr is not there (a restore moved it aside): nothing can run on it, so the instance is down.  Real
            # qlist reads the registry and still lists the instance (Departures 15)
            return self.default_state()
        with self.state() as st:
            return st

    def refresh(self, st):
        """Lazy enforcement of time-based rules (so nothing depends on a background timer being alive)."""
        fr = st.get("freeze")
        now = time.time()
        if fr and fr.get("wd_limit"):
            if now >= fr["start"] + fr["wd_limit"]:
                self.end_freeze(st, "WDSuspendLimit", now=fr["start"] + fr["wd_limit"])
        if st.get("running") and not util.wd_alive(st.get("wd_pid"), self.name):
            # the write daemon died: the instance is down (crashed).  Logged with what /proc shows of its pid, so
            # that an instance found down is explained in messages.log (the daemon logs its own exceptions)
            try:
                self.log(3, "irisemu: write daemon pid %s of %s not found (%s); instance marked down by pid %d" % (
                    st.get("wd_pid"), self.name, util.describe_pid(st.get("wd_pid")), os.getpid()), "Generic.Event")
            except OSError:
                pass
            st["running"] = False
            st["last_used"] = (st.get("wd") or {}).get("heartbeat") or now
            st["wd"] = {"state": "stopped", "heartbeat": st["wd"].get("heartbeat") if st.get("wd") else None}

    def end_freeze(self, st, reason, now=None):
        fr = st.get("freeze")
        if not fr:
            return
        now = now or time.time()
        st["freeze"] = None
        st["freeze_ended"] = {"reason": reason, "at": now, "start": fr["start"],
                              "journal_file": fr.get("journal_file")}
        if reason == "WDSuspendLimit":
            self.log(1, "Backup.General.ExternalFreeze: Write daemon resumed after WDSuspendLimit (%s seconds); "
                        "the backup started at %s is not valid" % (fr["wd_limit"], util.ctime(fr["start"])))
        elif reason == "irisstat -W":
            self.log(1, "Write daemon resumed by %s -W; the backup started at %s is not valid"
                     % (self.fl["stat"], util.ctime(fr["start"])))
        else:
            self.log(1, "Backup.General.ExternalFreeze: freeze ended by %s" % reason)

    def is_running(self, st):
        return bool(st.get("running")) and util.wd_alive(st.get("wd_pid"), self.name)

    def is_frozen(self, st):
        return st.get("freeze") is not None

    def past_freeze_timeout(self, st, now=None):
        fr = st.get("freeze")
        if not fr:
            return False
        now = time.time() if now is None else now
        return now >= fr["start"] + fr["eft"]

    # -- messages.log ---------------------------------------------------------------------------------------------
    def log(self, severity, text, category="Utility.Event", ts=None):
        line = "%s (%d) %d [%s] %s\n" % (util.log_stamp(ts), os.getpid(), severity, category, text)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            if os.fstat(fd).st_size == 0:
                _chmod_0666(fd)  # a log this call created: 0666 whatever the umask (see README: Permissions)
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def rotate_log(self, now=None):
        """Rename messages.log / cconsole.log to <log>.old_YYYYMMDD_HHMMSS (config.LOG_ROTATE_SUFFIX) and start a
        new one (test-only `irisemu-ctl INST rotate-log`).  Atomic for concurrent writers: the old file gets its
        second name by a hard link, then a prepared new file replaces messages.log by rename(2), so there is always
        a messages.log and every line lands in exactly one of the two files.  Returns the old file's new name."""
        now = time.time() if now is None else now
        base = self.log_path + time.strftime(config.LOG_ROTATE_SUFFIX, time.localtime(now))
        old, n = base, 0
        while os.path.lexists(old):
            n += 1
            old = "%s_%d" % (base, n)
        try:
            cur = os.stat(self.log_path)
        except FileNotFoundError:
            cur = None
        tmp = self.log_path + ".irisemu-new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            _chmod_0666(fd)
            if cur is not None and os.geteuid() == 0:
                os.fchown(fd, cur.st_uid, cur.st_gid)
            os.write(fd, ("%s (%d) 0 [Generic.Event] irisemu: %s started, the previous log was renamed to %s\n"
                          % (util.log_stamp(now), os.getpid(), os.path.basename(self.log_path),
                             os.path.basename(old) if cur is not None else "(none)")).encode())
        finally:
            os.close(fd)
        if cur is not None:
            os.link(self.log_path, old)
        os.rename(tmp, self.log_path)
        return old if cur is not None else None

    # -- journal --------------------------------------------------------------------------------------------------
    def journal_files(self):
        try:
            names = os.listdir(self.journal_dir)
        except FileNotFoundError:
            return []
        return sorted(os.path.join(self.journal_dir, n) for n in names if re.match(r"^\d{8}\.\d{3}$", n))

    def new_journal_file(self, st):
        """Create the next YYYYMMDD.NNN file, make it current, return its path."""
        today = time.strftime("%Y%m%d")
        seq = 0
        for f in self.journal_files():
            b = os.path.basename(f)
            if b[:8] == today:
                seq = max(seq, int(b[9:]))
        path = os.path.join(self.journal_dir, "%s.%03d" % (today, seq + 1))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            os.write(fd, ("IRISEMU-JOURNAL 1 instance=%s created=%s prev=%s\n"
                          % (self.name, util.ctime(time.time()), st["journal"].get("current") or "")).encode())
            os.write(fd, b"\0" * 4096)  # a header block, so offsets look like real ones
            os.write(fd, b"\n")
        finally:
            os.close(fd)
        try:
            os.chmod(path, 0o666)
        except PermissionError:
            pass
        st["journal"]["current"] = path
        return path

    def journal_append(self, path, records, ts=None):
        """Append one record or a list of records (one write); return the offset of the first one.

        A record line is ``<local time ISO> <$HOROLOG> <TYPE> <payload>``, e.g.
        ``2025-12-07T10:00:01 67546,36001 SET ^["^^/usr/irissys/mgr/user/"]IRISEMU("gen")=42``.  Callers that
        append to the *current* file hold the state lock (see journal_append_current), so that nothing is ever
        appended to a file after a journal switch."""
        if isinstance(records, str):
            records = [records]
        ts = time.time() if ts is None else ts
        stamp = "%s %d,%d" % ((time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts)),) + util.horolog(ts))
        text = "".join("%s %s\n" % (stamp, r) for r in records)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            off = os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, text.encode())
            return off
        finally:
            os.close(fd)

    def journal_append_current(self, st, records, ts=None):
        """Append records to the current journal file; the caller holds the state lock (``with inst.state()``).
        Returns (path, offset) or (None, None) when there is no current file."""
        path = st["journal"].get("current")
        if not path:
            return None, None
        return path, self.journal_append(path, records, ts)

    def gen_records(self, gen):
        """The records of one write cycle: one SET per journalled database (IRISTEMP / CACHETEMP are not)."""
        return ['SET ^["^^%s"]IRISEMU("gen")=%d' % (canon_dir(db["dir"]), gen)
                for db in self.databases if db.get("journal", True)]

    def sysdb_dir(self):
        for db in self.databases:
            if db["name"] == self.fl["sysdb"]:
                return canon_dir(db["dir"])
        return canon_dir(self.mgr)

    # -- status strings ------------------------------------------------------------------------------------------
    def status_text(self, st):
        if self.is_running(st):
            return "running, since %s" % util.ctime(st["started_at"])
        last = st.get("last_used") or self.entry.get("installed_at") or time.time()
        return "down, last used %s" % util.ctime(last)

    def dir_display(self):
        d = self.dir.rstrip("/")
        return d + "/" if self.fl["trailing_slash"] else d
