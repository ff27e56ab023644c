"""Backup.General: ExternalFreeze, ExternalThaw, ExternalSetHistory, IsWDSuspended(Ext)."""
import os
import time

from . import config, faults, util

CLASS = "Backup.General"
OK = "1"


def error_status(code, text):
    return "0 ERROR #%d: %s" % (code, text)


class Reporter(object):
    """Routes the method's messages: LogFile path (appended, created if missing), 0 = principal device,
    "" = nowhere but messages.log.  Everything also goes to messages.log / cconsole.log."""

    def __init__(self, inst, session, method, logfile):
        self.inst = inst
        self.session = session
        self.method = method
        self.logfile = "" if logfile is None else str(logfile)

    def _dest(self, text):
        if self.logfile == "":
            return
        if self.logfile == "0":
            self.session.write(text)
            return
        fd = os.open(self.logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def msg(self, text, severity=0):
        full = "Backup.General.%s: %s" % (self.method, text)
        self._dest("%s: %s\n" % (util.device_stamp(), full))
        self.inst.log(severity, full)

    def raw(self, text):
        self._dest(text)


def _arg(args, n, default=None):
    if len(args) > n and args[n] is not None and not hasattr(args[n], "node"):
        return args[n]
    return default


def _int_arg(args, n, default):
    from .objectscript import to_num
    v = _arg(args, n)
    if v is None or v == "":
        return default
    return int(to_num(v))


def external_freeze(session, args):
    inst = session.inst
    logfile = _arg(args, 0, "")
    text = _arg(args, 1, "")
    switch = _int_arg(args, 2, 1)
    eft = _int_arg(args, 6, 0)
    eft = config.EFT_DEFAULT if eft <= 0 else min(eft, config.EFT_MAX)
    wd_limit = _int_arg(args, 9, 0)
    required_ref = args[10] if len(args) > 10 and hasattr(args[10], "node") else None
    rep = Reporter(inst, session, "ExternalFreeze", logfile)

    with inst.state() as st:
        if not inst.is_running(st):
            rep.msg("Failed to suspend system: instance is not running", 2)
            return error_status(5001, "Instance is not running")
        if st.get("freeze"):
            rep.msg("Failed to suspend system: system is already suspended (freeze started %s)"
                    % util.ctime(st["freeze"]["start"]), 2)
            return error_status(5001, "System is already suspended")
        # test-only fault: consumed only by a call that would otherwise suspend (state.lock -> faults.lock)
        left = faults.take(inst, "freeze-fail")
        if left is not None:
            faults.fired(inst, "freeze-fail", "freeze-fail fired in pid %d: ExternalFreeze fails, nothing suspended "
                                              "(%d left)" % (os.getpid(), left))
            rep.msg("Failed to suspend system: irisemu fault injected (freeze-fail)", 2)
            return error_status(5001, "irisemu fault injected (freeze-fail)")
        now = start = time.time()
        st["freeze"] = {"start": now, "eft": eft, "wd_limit": wd_limit or None, "acked": False,
                        "pid": os.getpid(), "user": session.username, "text": text, "journal_file": None}
        st["freeze_ended"] = None
    rep.msg("Suspending system")
    unj = [db for db in inst.databases if not db.get("journal", True)]
    for db in unj:
        rep.msg("Warning, %s is not being journalled" % (db["dir"].rstrip("/") + "/"), 1)
    if unj:
        rep.msg("Warning, %d databases are not journalled, data will be lost in them if system crashes while "
                "suspended" % len(unj), 1)
    with inst.state() as st:
        if switch:
            jf = inst.new_journal_file(st)
            inst.log(0, "%s\nJournaling switched to: %s" % (inst.fl["journal_banner"], jf), "Generic.Event")
            # the marker is the first record of the new file (written under the state lock, before any record of
            # the write daemon can go there)
            off = inst.journal_append(jf, "JRNMARK -1 ExternalFreeze text=%s" % text)
        else:
            jf = st["journal"].get("current") or inst.new_journal_file(st)
        if st.get("freeze"):
            st["freeze"]["journal_file"] = jf
    if switch:
        rep.raw("\nJournal file switched to:\n%s\n" % jf)
    rep.msg("Start a journal restore for this backup with journal file: %s" % jf)
    if switch:
        rep.raw("\nJournal marker set at\noffset %d of %s\n" % (off, jf))

    # wait for the write daemon to finish its current cycle and acknowledge the suspension
    deadline = time.time() + config.FREEZE_ACK_MAX_WAIT
    while True:
        with inst.state() as st:
            fr = st.get("freeze")
            if fr is None or fr.get("pid") != os.getpid():
                rep.msg("Failed to suspend system: the freeze was ended before the write daemon suspended", 2)
                return error_status(5001, "Freeze ended before the write daemon suspended")
            if fr.get("acked") or not util.wd_alive(st.get("wd_pid"), inst.name):
                st["last_restore_journal"] = jf
                break
            if time.time() > deadline:
                inst.end_freeze(st, "a failed freeze (write daemon did not suspend)")
                st["freeze_ended"] = None
                rep.msg("Failed to suspend system: write daemon did not suspend within %d seconds"
                        % config.FREEZE_ACK_MAX_WAIT, 2)
                return error_status(5001, "Write daemon did not suspend")
        time.sleep(0.02)
    # test-only fault: the write daemon is suspended, "System suspended" is not logged yet
    if faults.sleep_delay(inst, "freeze-delay", "write daemon suspended, 'System suspended' not logged yet") \
            and config.FREEZE_FAILS_WHEN_ENDED_DURING_DELAY:
        with inst.state() as st:
            fr = st.get("freeze")
            ended = st.get("freeze_ended")
            if fr is None or fr.get("pid") != os.getpid():
                how = ended["reason"] if ended and ended.get("start") == start else "ExternalThaw"
                rep.msg("Failed to suspend system: the freeze was ended (%s) before ExternalFreeze completed"
                        % how, 2)
                return error_status(5001, "Freeze ended (%s) before ExternalFreeze completed" % how)
    if required_ref is not None:
        required_ref.node.value = jf
    rep.msg("System suspended")
    return OK


def external_thaw(session, args):
    inst = session.inst
    rep = Reporter(inst, session, "ExternalThaw", _arg(args, 0, ""))
    with inst.state() as st:
        ended = st.get("freeze_ended")
        if st.get("freeze"):
            outcome = "suspended"
        elif ended:
            st["freeze_ended"] = None
            outcome = "ended"
        else:
            outcome = "none"
    if outcome == "suspended":
        rep.msg("Resuming system")
        # test-only faults (only for a thaw that has something to resume): delay, then hang, then fail
        faults.sleep_delay(inst, "thaw-delay", "'Resuming system' logged, the system is still suspended")
        left = faults.take(inst, "thaw-hang")
        if left is not None:
            faults.hang_forever(inst, left)
        left = faults.take(inst, "thaw-fail")
        if left is not None:
            faults.fired(inst, "thaw-fail", "thaw-fail fired in pid %d: ExternalThaw fails, the system stays "
                                            "suspended (%d left)" % (os.getpid(), left))
            rep.msg("Failed to resume system: irisemu fault injected (thaw-fail)", 2)
            return error_status(5001, "irisemu fault injected (thaw-fail)")
        with inst.state() as st:
            ended = st.get("freeze_ended")
            if st.get("freeze"):
                st["freeze"] = None
                st["freeze_ended"] = None
                st["last_thaw"] = time.time()
                outcome = "thawed"
            elif ended:  # ended by irisstat -W / WDSuspendLimit meanwhile
                st["freeze_ended"] = None
                outcome = "ended meanwhile"
            else:  # thawed by another process meanwhile
                outcome = "none"
        if outcome == "thawed":
            rep.msg("System resumed")
            return OK
    if outcome.startswith("ended"):
        if outcome == "ended":
            rep.msg("Resuming system")
        rep.msg("Warning, the write daemon was already resumed (%s, %s) %s; the backup taken during this freeze "
                "is not valid" % (ended["reason"], util.ctime(ended["at"]),
                                  "before ExternalThaw was called" if outcome == "ended"
                                  else "while ExternalThaw was running"), 2)
        return error_status(5001, "Write daemon resumed before ExternalThaw (%s); backup is not valid"
                            % ended["reason"])
    rep.msg("System is not suspended, nothing to resume")
    return OK if config.THAW_WHEN_NOT_FROZEN_RC == config.RC_EXT_SUCCESS else error_status(5001, "Not suspended")


def is_wd_suspended(session):
    with session.inst.state() as st:
        return "1" if st.get("freeze") else "0"


def external_set_history(session, args):
    inst = session.inst
    logfile = _arg(args, 0, "")
    text = _arg(args, 1, "")
    rep = Reporter(inst, session, "ExternalSetHistory", logfile)
    with inst.state() as st:
        jf = st.get("last_restore_journal") or st["journal"].get("current")
        current = st["journal"].get("current")
    days, secs = util.horolog()
    with util.locked(inst.lock_path):
        hist = util.read_json(inst.history_path) or {}
        hindex = days * 1000000 + secs
        while str(hindex) in hist:
            hindex += 1
        hist[str(hindex)] = {"TYPE": "External", "STATUS": "Completed", "DESC": text, "DEVICE": "External",
                             "LOG": logfile, "LIST": [db["dir"] for db in inst.databases if db.get("journal", True)],
                             "Complete": 1, "JOURNAL": jf, "TIME": util.ctime(time.time())}
        util.write_json_inplace(inst.history_path, hist)
        entries = [hist[k] for k in sorted(hist, key=int) if hist[k].get("STATUS") == "Completed"]
    rep.msg("Backup recorded in the backup history (%s), journal restore starts with %s" % (hindex, jf))
    n = inst.backups_before_purge()
    purged = []
    if n > 0 and len(entries) >= n:
        restore_point = entries[-n].get("JOURNAL")
        if restore_point:
            rp = os.path.basename(restore_point)
            for f in inst.journal_files():
                if os.path.basename(f) < rp and f != current:
                    try:
                        os.unlink(f)
                        purged.append(f)
                    except OSError as exc:
                        rep.msg("Warning, could not purge journal file %s: %s" % (f, exc), 1)
    for f in purged:
        rep.msg("Purged journal file %s" % f)
    if purged:
        inst.log(0, "Journal files purged after %d successive backups: %s" % (n, " ".join(purged)),
                 "Generic.Event")
    return OK


def dispatch(session, method, args):
    m = method.lower()
    if m == "externalfreeze":
        return session.external_result(external_freeze(session, args))
    if m == "externalthaw":
        return session.external_result(external_thaw(session, args))
    if m == "externalsethistory":
        sc = external_set_history(session, args)
        return session.external_result(sc) if config.SETHISTORY_HALTS else sc
    if m == "iswdsuspendedext":
        v = is_wd_suspended(session)
        return session.external_result("1" if v == "1" else "0 not suspended", value=v)
    if m == "iswdsuspended":
        return is_wd_suspended(session)
    if m == "getlastfullbackupinfo":
        return '$lb(0,"No information recorded about a full backup")'
    return None
