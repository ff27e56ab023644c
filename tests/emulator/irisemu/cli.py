"""Entry points: iris / ccontrol, irissession / csession, irisstat / cstat, and the test-only irisemu-load,
irisemu-dbcheck, irisemu-fault (faults.py), irisemu-ctl."""
import os
import signal
import sys
import time

from . import config, dbfile, instance, merge, util
from .instance import EmuError
from .session import Session, authenticate, LineReader, run_session, wait_until_login_allowed
from .objectscript import Halt


def _err(msg, rc=config.RC_ERROR):
    sys.stderr.write(msg.rstrip("\n") + "\n")
    return rc


def _instances(flavour, name=None):
    if name is None:
        return instance.registry_entries(flavour)
    inst = instance.find(name, flavour)
    if inst is None:
        raise EmuError("Instance %s not found" % name)
    return [inst.entry]


def _may_control(inst):
    if os.geteuid() == 0:
        return True
    me = util.current_user()
    return me in (inst.owner, inst.manager)


# ---------------------------------------------------------------------------------------------------------------
# listing

def qlist_line(inst):
    st = inst.read_state()
    running = inst.is_running(st)
    mt, ms = inst.mirror()
    e = inst.entry
    fields = [inst.name, inst.dir_display(), e["version"], inst.status_text(st), inst.fl["cpf"],
              str(e["superserver"]), str(e["webserver"]), str(e["jdbc"]), "ok" if running else "",
              inst.fl["product"], mt or "", ms or "",
              inst.dir.rstrip("/") if inst.flavour == "iris" else ""]
    return "^".join(fields)


def cmd_qlist(flavour, args):
    for e in _instances(flavour, args[0] if args else None):
        print(qlist_line(instance.Instance(e)))
    return 0


def cmd_all(flavour, args, truncate):
    entries = _instances(flavour)
    print("    Instance Name     Version ID        Port   Directory")
    print("    ----------------  ----------------  -----  --------------------------------")
    for idx, e in enumerate(entries):
        inst = instance.Instance(e)
        st = inst.read_state()
        up = "up" if inst.is_running(st) else "dn"
        mark = ">" if idx == 0 else " "
        name, ver, d = inst.name, e["version"], inst.dir_display()
        if truncate:
            name, ver, d = name[:16], ver[:16], d[:32]
        print("%s %s%-16s  %-16s  %-5s  %s" % (up, mark, name, ver, e["superserver"], d))
    return 0


def cmd_list(flavour, args):
    entries = _instances(flavour, args[0] if args else None)
    allents = instance.registry_entries(flavour)
    first = True
    for e in entries:
        inst = instance.Instance(e)
        st = inst.read_state()
        if not first:
            print("")
        first = False
        default = "   (default)" if allents and allents[0]["name"] == inst.name else ""
        print("Configuration '%s'%s" % (inst.name, default))
        print("        directory:    %s" % inst.dir_display())
        print("        versionid:    %s" % e["version"])
        print("        datadir:      %s" % inst.dir_display())
        print("        conf file:    %s  (SuperServer port = %s, WebServer = %s)"
              % (inst.fl["cpf"], e["superserver"], e["webserver"]))
        print("        status:       %s" % inst.status_text(st))
        mt, ms = inst.mirror()
        if mt:
            print("        mirroring: Member Type = %s; Status = %s" % (mt, ms or ""))
        if inst.is_running(st):
            print("        state:        ok")
        if inst.fl["product_long"]:
            print("        product:      %s" % inst.fl["product_long"])
    return 0


# ---------------------------------------------------------------------------------------------------------------
# start / stop

def _wd_argv(inst):
    pkg_parent = config.code_dir()
    if not os.path.isfile(os.path.join(pkg_parent, "irisemu", "daemon.py")):
        pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    return [py, "-c",
            "import sys; sys.path.insert(0, %r); from irisemu import daemon; sys.exit(daemon.run(%r))"
            % (pkg_parent, inst.name), "irisemu-wd", inst.name]


def start(inst, quiet=False):
    with inst.state() as st:
        if inst.is_running(st):
            print("Instance '%s' is already up!" % inst.name)
            return 0
        now = time.time()
        inst.log(0, "Startup of %s [%s %s] instance %s" % (
            "InterSystems IRIS" if inst.flavour == "iris" else "Cache", inst.fl["control"],
            inst.entry["version"], inst.name), "Generic.Event")
        if st.get("freeze"):
            inst.end_freeze(st, "startup")
            st["freeze_ended"] = None
        jf = inst.new_journal_file(st)
        inst.log(0, "%s\nJournaling switched to: %s" % (inst.fl["journal_banner"], jf), "Generic.Event")
        env = dict(os.environ)
        env.update({"IRISEMU_ROOT": config.root(), "IRISEMU_REGISTRY": config.registry_dir(),
                    "IRISEMU_BINDIR": config.bin_dir(), "IRISEMU_CODEDIR": config.code_dir()})
        kw = {}
        if os.geteuid() == 0 and inst.owner != "root":
            uid, gid = util.user_ids(inst.owner)
            kw = {"user": uid, "group": gid, "extra_groups": []}
            env["HOME"] = "/"
            env["USER"] = env["LOGNAME"] = inst.owner
        import subprocess
        devnull = open(os.devnull, "r+b")
        proc = subprocess.Popen(_wd_argv(inst), stdin=devnull, stdout=devnull, stderr=devnull, cwd="/",
                                start_new_session=True, env=env, close_fds=True, **kw)
        devnull.close()
        st["running"] = True
        st["wd_pid"] = proc.pid
        st["started_at"] = now
        st["wd"] = {"state": "starting", "heartbeat": None}
    # wait for the write daemon's first heartbeat
    deadline = time.time() + 10
    while time.time() < deadline:
        st = inst.read_state()
        if (st.get("wd") or {}).get("heartbeat"):
            break
        if proc.poll() is not None:
            inst.log(3, "Write daemon failed to start (exit %s)" % proc.returncode, "Generic.Event")
            return _err("Instance '%s': write daemon failed to start (exit %s)" % (inst.name, proc.returncode))
        time.sleep(0.02)
    inst.log(0, "Startup complete (write daemon pid %d)" % proc.pid, "Generic.Event")
    if not quiet:
        print("Starting %s" % inst.name)
        print("Using '%s' configuration file" % inst.cpf_path)
        print("Starting Control Process")
        print("Allocated 64MB shared memory: 32MB global buffers, 16MB routine buffers")
        print("Startup of instance %s complete (write daemon pid %d)" % (inst.name, proc.pid))
    return 0


def stop(inst, force=False, quiet=False):
    with inst.state() as st:
        if not inst.is_running(st):
            print("Instance '%s' is not running." % inst.name)
            return 0
        pid = st["wd_pid"]
        if st.get("freeze"):
            inst.end_freeze(st, "shutdown")
            st["freeze_ended"] = None
        st["wd_pid"] = None if force else pid
    try:
        os.kill(pid, signal.SIGKILL if force else signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.time() + 15
    while util.pid_alive(pid) and time.time() < deadline:
        time.sleep(0.02)
    if util.pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    with inst.state() as st:
        st["running"] = False
        st["wd_pid"] = None
        st["last_used"] = time.time()
        st["wd"] = {"state": "stopped", "heartbeat": (st.get("wd") or {}).get("heartbeat")}
    inst.log(0, "%s of instance %s complete" % ("Forced shutdown" if force else "Shutdown", inst.name),
             "Generic.Event")
    if not quiet:
        print("Instance %s %s." % (inst.name, "forced down" if force else "shut down"))
    return 0


# ---------------------------------------------------------------------------------------------------------------
# stat

def stat(inst, args):
    resume = any(a == "-W" for a in args)
    if resume:
        if not _may_control(inst):
            return _err("%s: -W requires root or the instance owner/manager" % inst.fl["stat"])
        with inst.state() as st:
            if st.get("freeze"):
                inst.end_freeze(st, "irisstat -W")
                msg = "Write daemon resumed."
            else:
                msg = "Write daemon is not suspended."
        print(msg)
        return 0
    st = inst.read_state()
    if not inst.is_running(st):
        print("%s: instance %s is not running" % (inst.fl["stat"], inst.name))
        return 1
    fr = st.get("freeze")
    print("%s for instance %s (%s), %s" % (inst.fl["stat"], inst.name, inst.dir, time.ctime()))
    print("Version: %s" % inst.entry["version"])
    print("Write daemon pid: %s" % st.get("wd_pid"))
    if fr and fr.get("acked"):
        print("Write daemon state: WDSUSPD (suspended for backup since %s)" % util.ctime(fr["start"]))
    elif fr:
        print("Write daemon state: suspend requested at %s, finishing its cycle" % util.ctime(fr["start"]))
    else:
        print("Write daemon state: active")
    print("Database generation: %d" % st.get("generation", 0))
    print("Current journal file: %s" % (st["journal"].get("current") or ""))
    return 0


def stat_main(flavour, install_dir, argv):
    """<dir>/bin/irisstat [-s<mgrdir>] [-W] ..."""
    target = install_dir
    for a in argv:
        if a.startswith("-s") and len(a) > 2:
            target = os.path.dirname(a[2:].rstrip("/"))
    for e in instance.registry_entries(flavour):
        if os.path.realpath(e["dir"]) == os.path.realpath(target):
            return stat(instance.Instance(e), argv)
    return _err("%s: no instance installed in %s" % (config.FLAVOURS[flavour]["stat"], target))


# ---------------------------------------------------------------------------------------------------------------
# freeze / thaw (IRIS command line) and merge: these log in like a session

def _login(inst, prog):
    st = inst.read_state()
    if not inst.is_running(st):
        print("<IRIS Startup Error>: instance %s is not running" % inst.name)
        return None, None
    wait_until_login_allowed(inst)
    sess = Session(inst, sys.stdout)
    user = authenticate(inst, LineReader(sys.stdin), sess)
    if user is None:
        sess.newline_if_needed()
        sess.write("Access Denied\n")
        inst.log(1, "Login failure: Access Denied (OS user %s, %s)" % (util.current_user(), prog))
        return None, None
    sess.username = user
    sess.namespace = "%SYS"
    return sess, user


def cmd_freeze_thaw(inst, what, args):
    timeout = None
    for a in args:
        if a.lower().startswith("timeout="):
            timeout = a.split("=", 1)[1]
        elif a.lower().startswith("namespace="):
            pass
    sess, user = _login(inst, "iris " + what)
    if sess is None:
        return config.RC_ACCESS_DENIED
    sess.external = True
    try:
        if what == "freeze":
            sess.call_class("Backup.General", "ExternalFreeze", ["0", "", "1", None, None, None, timeout])
        else:
            sess.call_class("Backup.General", "ExternalThaw", ["0"])
    except Halt as h:
        return config.RC_CMDLINE_OK if h.code == config.RC_EXT_SUCCESS else config.RC_CMDLINE_FAIL
    return config.RC_CMDLINE_FAIL


def cmd_merge(inst, args):
    path = args[0] if args else None
    target = args[1] if len(args) > 1 else None
    sess, user = _login(inst, "iris merge")
    if sess is None:
        return config.RC_ACCESS_DENIED
    merge.run_merge(inst, path, target)
    print(merge.merge_ok_message(inst))
    return 0


# ---------------------------------------------------------------------------------------------------------------

USAGE = """usage: %(c)s qlist|list|all|qall [INSTANCE]
       %(c)s start|stop|force INSTANCE [quietly ...]
       %(c)s session|terminal INSTANCE [-U NAMESPACE] ["command"]
       %(c)s stat INSTANCE [-W]
       %(c)s merge INSTANCE [merge-file] [target-CPF]          (IRIS only)
       %(c)s freeze INSTANCE [timeout=N] / thaw INSTANCE       (IRIS only)
(irisemu: test emulator of the InterSystems command line)"""


def _sigpipe():
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def control_main(flavour, argv):
    _sigpipe()
    prog = config.FLAVOURS[flavour]["control"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE % {"c": prog})
        return 0 if argv else config.RC_USAGE
    cmd, args = argv[0].lower(), argv[1:]
    try:
        if cmd == "qlist":
            return cmd_qlist(flavour, args)
        if cmd in ("all", "qall"):
            return cmd_all(flavour, args, truncate=(cmd == "all"))
        if cmd == "list":
            return cmd_list(flavour, args)
        if cmd in ("session", "terminal"):
            return run_session(flavour, "%s %s" % (prog, cmd), args)
        if not args:
            return _err("%s %s: instance name required" % (prog, cmd), config.RC_USAGE)
        inst = instance.get(args[0], flavour)
        rest = args[1:]
        quiet = any(a.lower() == "quietly" for a in rest)
        if cmd in ("start", "stop", "force", "stat") and cmd != "stat" and not _may_control(inst):
            return _err("%s %s: only root or the instance owner/manager (%s) may %s instance %s"
                        % (prog, cmd, ", ".join(sorted({inst.owner, inst.manager})), cmd, inst.name))
        if cmd == "start":
            return start(inst, quiet)
        if cmd == "stop":
            if any(a.lower() == "restart" for a in rest):
                stop(inst, quiet=quiet)
                return start(inst, quiet)
            return stop(inst, quiet=quiet)
        if cmd == "force":
            return stop(inst, force=True, quiet=quiet)
        if cmd == "stat":
            return stat(inst, rest)
        if cmd in ("freeze", "thaw") and flavour == "iris":
            return cmd_freeze_thaw(inst, cmd, rest)
        if cmd == "merge" and flavour == "iris":
            return cmd_merge(inst, rest)
        return _err("%s: unknown command '%s'\n%s" % (prog, cmd, USAGE % {"c": prog}), config.RC_USAGE)
    except EmuError as exc:
        return _err("%s: %s" % (prog, exc), exc.rc)


def session_main(flavour, argv):
    _sigpipe()
    return run_session(flavour, config.FLAVOURS[flavour]["session"], argv)


# ---------------------------------------------------------------------------------------------------------------

def load_main(argv):
    """irisemu-load INSTANCE [--interval-ms N] [--block-pause-ms N] [--pause|--resume] [--status]"""
    import argparse
    p = argparse.ArgumentParser(prog="irisemu-load", description="control the emulated write load of an instance")
    p.add_argument("instance")
    p.add_argument("--interval-ms", type=int)
    p.add_argument("--block-pause-ms", type=int)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--pause", action="store_true")
    g.add_argument("--resume", action="store_true")
    p.add_argument("--status", action="store_true")
    a = p.parse_args(argv)
    inst = instance.find(a.instance)
    if inst is None:
        return _err("irisemu-load: instance %s not found" % a.instance)
    with inst.state() as st:
        if a.interval_ms is not None:
            st["load"]["interval_ms"] = max(0, a.interval_ms)
        if a.block_pause_ms is not None:
            st["load"]["block_pause_ms"] = max(0, a.block_pause_ms)
        if a.pause:
            st["load"]["paused"] = True
        if a.resume:
            st["load"]["paused"] = False
        load = dict(st["load"])
        running = inst.is_running(st)
        gen = st.get("generation", 0)
        wd = (st.get("wd") or {}).get("state")
        frozen = bool(st.get("freeze"))
    print("instance=%s running=%d wd=%s frozen=%d interval_ms=%d block_pause_ms=%d paused=%d generation=%d"
          % (inst.name, running, wd if running else "stopped", frozen, load["interval_ms"], load["block_pause_ms"],
             1 if load["paused"] else 0, gen))
    return 0


def dbcheck_main(argv):
    return dbfile.main(argv)


def fault_main(argv):
    from . import faults
    return faults.main(argv)


def ctl_main(argv):
    """irisemu-ctl INSTANCE rotate-log   (test-only controls that are not faults)"""
    import argparse
    p = argparse.ArgumentParser(prog="irisemu-ctl", description="test-only controls of an emulated instance")
    p.add_argument("instance")
    p.add_argument("action", choices=("rotate-log",),
                   help="rotate-log: rename messages.log (cconsole.log) to <log>.old_YYYYMMDD_HHMMSS, start a new one")
    a = p.parse_args(argv)
    inst = instance.find(a.instance)
    if inst is None:
        return _err("irisemu-ctl: instance %s not found" % a.instance)
    if a.action == "rotate-log":
        old = inst.rotate_log()
        print("%s -> %s" % (inst.log_path, old) if old else "%s started (there was none)" % inst.log_path)
    return 0
