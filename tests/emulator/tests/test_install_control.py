"""Install interface, instance tree, registry, qlist / qall / all / list, start / stop, irisstat."""
import os
import pwd
import re
import stat
import time

from conftest import FLAV, read_generation

LOG_RE = re.compile(r"^\d\d/\d\d/\d\d-\d\d:\d\d:\d\d:\d{3} \(\d+\) \d \[[A-Za-z.]+\] ")


def test_tree_both_flavours(emu, both, flavour):
    name, d = both[flavour]
    f = FLAV[flavour]
    params = open(os.path.join(d, "parameters.isc")).read()
    owner = "root" if flavour == "iris" else "daemon"
    assert "security_settings.manager_user: root\n" in params  # Caché: --manager-user root
    assert "security_settings.manager_group: " in params
    if flavour == "iris":
        assert "security_settings.iris_user: root\n" in params and "security_settings.iris_group: root\n" in params
        assert "cache_user" not in params
    else:
        assert "security_settings.cache_user: daemon\n" in params
        assert "security_settings.cache_group: daemon\n" in params
    cpf = open(os.path.join(d, f["cpf"])).read()
    assert "[Journal]" in cpf and "BackupsBeforePurge=2" in cpf
    assert "CurrentDirectory=%s/mgr/journal/" % d in cpf
    assert "AlternateDirectory=" in cpf
    assert "[Mirrors]" not in cpf
    sysdb, libdb, tempdb = (("IRISSYS", "IRISLIB", "IRISTEMP") if flavour == "iris"
                            else ("CACHESYS", "CACHELIB", "CACHETEMP"))
    assert "%s=%s/mgr/\n" % (sysdb, d) in cpf
    for db in (libdb, tempdb, "USER"):
        assert "%s=%s/mgr/%s/\n" % (db, d, db.lower()) in cpf
        assert os.path.isfile(os.path.join(d, "mgr", db.lower(), f["dat"]))
    assert os.path.isfile(os.path.join(d, "mgr", f["dat"]))
    if flavour == "iris":
        assert "APP=%s/mgr/app/\n" % d in cpf
    log = open(os.path.join(d, "mgr", f["log"])).read().splitlines()
    stamped = [line for line in log if LOG_RE.match(line)]
    assert stamped and len(stamped) >= len(log) - 5
    jfiles = os.listdir(os.path.join(d, "mgr", "journal"))
    assert jfiles and all(re.match(r"^\d{8}\.\d{3}$", j) for j in jfiles)
    assert os.access(os.path.join(d, "bin", f["stat"]), os.X_OK)
    for cmd in (f["control"], f["session_bin"], "irisemu-dbcheck", "irisemu-load"):
        assert os.access(emu.path("usr", "bin", cmd), os.X_OK)
    st = os.stat(os.path.join(d, "mgr", "user", f["dat"]))
    assert pwd.getpwuid(st.st_uid).pw_name == owner


def test_qlist_fields(emu, both, flavour):
    name, d = both[flavour]
    r = emu.run([FLAV[flavour]["control"], "qlist"], check_rc=0)
    lines = r.stdout.splitlines()
    other = both["cache" if flavour == "iris" else "iris"][0]
    assert not [x for x in lines if x.startswith(other + "^")]  # each control command sees only its flavour
    lines = [x for x in lines if x.startswith(name + "^")]
    assert len(lines) == 1
    f = lines[0].split("^")
    assert len(f) == 13
    assert f[0] == name
    assert f[1] == (d if flavour == "iris" else d + "/")
    assert re.match(r"^\d+\.\d+\.\d+\.\d+", f[2])
    assert re.match(r"^running, since \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$", f[3]), f[3]
    assert f[3].split(",")[0] == "running"
    assert f[4] == FLAV[flavour]["cpf"]
    assert f[5].isdigit() and f[6].isdigit() and f[7].isdigit()
    assert f[8] == "ok"
    assert f[9] == ("IRIS" if flavour == "iris" else "")
    assert f[10] == "" and f[11] == ""
    assert f[12] == (d if flavour == "iris" else "")
    r1 = emu.run([FLAV[flavour]["control"], "qlist", name], check_rc=0)
    assert r1.stdout == lines[0] + "\n"
    r2 = emu.run([FLAV[flavour]["control"], "qlist", "NOSUCH"])
    assert r2.returncode != 0 and r2.stdout == ""


def test_qlist_while_mgr_is_moved_aside(emu):
    """A restore's swap moves mgr aside (and the emulator's state with it): qlist still lists the instance, down,
    as real qlist does from the registry; it used to end in a FileNotFoundError traceback."""
    d = emu.install("iris", "ASIDE", start=False)
    os.rename(os.path.join(d, "mgr"), os.path.join(d, "mgr.aside"))
    try:
        r = emu.run(["iris", "qlist", "ASIDE"], check_rc=0)
        f = r.stdout.strip().split("^")
        assert f[0] == "ASIDE" and f[3].startswith("down, last used "), r.stdout
        assert f[8] == ""
        r = emu.run(["iris", "all"], check_rc=0)
        assert [x for x in r.stdout.splitlines() if "ASIDE" in x and x.startswith("dn")], r.stdout
    finally:
        os.rename(os.path.join(d, "mgr.aside"), os.path.join(d, "mgr"))


def test_a_write_daemon_that_dies_says_why_in_messages_log(emu):
    d = emu.install("iris", "WDDIES", start=False, databases="USER")
    os.unlink(os.path.join(d, "mgr", "user", "IRIS.DAT"))     # its first cycle cannot open the database
    emu.run(["iris", "start", "WDDIES"])
    log = os.path.join(d, "mgr", "messages.log")
    deadline = time.time() + 20
    text = ""
    while time.time() < deadline and "died" not in text:
        time.sleep(0.2)
        with open(log) as fh:
            text = fh.read()
    died = [ln for ln in text.splitlines() if "write daemon (pid" in ln and " died: " in ln]
    assert died and "FileNotFoundError" in died[0] and " 3 [Generic.Event] " in died[0], text[-2000:]
    assert emu.run(["iris", "qlist", "WDDIES"], check_rc=0).stdout.split("^")[3].startswith("down")
    with open(log) as fh:
        text = fh.read()
    marked = [ln for ln in text.splitlines() if "of WDDIES not found (" in ln]   # gone, or a zombie not yet reaped
    assert len(marked) == 1 and "instance marked down by pid" in marked[0], text   # once: it is written back


def test_a_write_daemon_still_in_its_execve_is_alive(tmp_path, monkeypatch):
    """/proc/PID/cmdline is empty while a just-spawned process is still in execve: that is the daemon `iris start`
    has just started, not a dead one (the full run of 2026-12-07 caught the emulator marking SRC down that way)."""
    from irisemu import util
    monkeypatch.setattr(util, "pid_alive", lambda pid: True)
    (tmp_path / "4242").mkdir()
    cmdline = tmp_path / "4242" / "cmdline"
    cmdline.write_bytes(b"")
    assert util.wd_alive(4242, "SRC", proc=str(tmp_path))
    cmdline.write_bytes(b"/usr/bin/python3\0-c\0...\0irisemu-wd\0SRC\0")
    assert util.wd_alive(4242, "SRC", proc=str(tmp_path))
    assert not util.wd_alive(4242, "OTHER", proc=str(tmp_path))
    cmdline.write_bytes(b"/bin/sleep\0" + b"100\0")           # the pid reused by another program
    assert not util.wd_alive(4242, "SRC", proc=str(tmp_path))
    assert not util.wd_alive(4243, "SRC", proc=str(tmp_path))  # no /proc entry


def test_qall_all_list(emu, both, flavour):
    name, d = both[flavour]
    c = FLAV[flavour]["control"]
    for cmd in ("qall", "all"):
        out = emu.run([c, cmd], check_rc=0).stdout.splitlines()
        assert out[0].split() == ["Instance", "Name", "Version", "ID", "Port", "Directory"]
        assert set(out[1].replace(" ", "")) == {"-"}
        row = out[2]
        assert row.startswith("up >")
        assert row[4:].split()[0] == name  # `cut -c5- | awk '{print $1}'`
    out = emu.run([c, "list", name], check_rc=0).stdout
    assert out.startswith("Configuration '%s'   (default)\n" % name)
    assert re.search(r"^        status:       running, since ", out, re.M)
    assert "        state:        ok\n" in out
    assert "conf file:    %s  (SuperServer port = " % FLAV[flavour]["cpf"] in out
    assert "mirroring:" not in out


def test_start_stop_write_daemon(emu, flavour):
    name = "SS" + flavour.upper()
    owner = "daemon"
    d = emu.install(flavour, name, owner=owner, start=False)
    c = FLAV[flavour]["control"]
    q = emu.run([c, "qlist", name]).stdout.split("^")
    assert q[3].startswith("down, last used ") and q[8] == ""
    assert emu.run([c, "qall"]).stdout.splitlines()[-1].startswith("dn")
    lst = emu.run([c, "list", name]).stdout
    assert "status:       down, last used" in lst and "state:" not in lst
    # only root / owner / manager may start it
    r = emu.run([c, "start", name], user="nobody")
    assert r.returncode != 0
    emu.run([c, "start", name], check_rc=0)
    pid = emu.wd_pid(d)
    assert pid and os.path.exists("/proc/%d" % pid)
    assert pwd.getpwuid(os.stat("/proc/%d" % pid).st_uid).pw_name == owner
    assert "irisemu-wd" in open("/proc/%d/cmdline" % pid).read()
    assert emu.run([c, "qlist", name]).stdout.split("^")[3].startswith("running, since ")
    gen = emu.generation(d)
    emu.wait_generation(d, gen + 2)
    r = emu.run([c, "start", name], check_rc=0)
    assert "already up" in r.stdout and emu.wd_pid(d) == pid
    emu.run([c, "stop", name, "quietly"], check_rc=0)
    time.sleep(0.1)
    assert not os.path.exists("/proc/%d" % pid) or open("/proc/%d/stat" % pid).read().split()[2] == "Z"
    q = emu.run([c, "qlist", name]).stdout.split("^")
    assert q[3].startswith("down, last used ")
    # a clean stop leaves consistent databases
    assert emu.run(["irisemu-dbcheck", os.path.join(d, "mgr")]).returncode == 0
    r = emu.run([c, "session", name, "-U", "%SYS", "Write 1"] if flavour == "iris" else
                ["csession", name, "-U", "%SYS", "Write 1"])
    assert r.returncode not in (0, 3, 5) and "not running" in r.stdout


def test_reinstall_is_harmless(emu, both):
    name, d = both["iris"]
    pid = emu.wd_pid(d)
    r = emu.session(name, 'Set sc=##class(Security.Users).Create("keepme","%Operator","pw")')
    assert r.returncode == 0
    emu.wait_generation(d, (emu.generation(d) or 0) + 1)
    gen = emu.generation(d)
    emu.install("iris", "IRIS", owner="root", dir=d, databases="USER,APP", start=True, write_interval_ms=20)
    assert emu.wd_pid(d) == pid
    assert emu.generation(d) >= gen
    assert emu.session(name, 'Write ##class(Security.Users).Exists("keepme")').stdout == "1"
    assert [x[:5] for x in emu.run(["iris", "qlist"]).stdout.splitlines()].count("IRIS^") == 1


def test_options_dirs_mirror_ports(emu):
    dbdir = emu.path("lvdata")
    jdir = emu.path("lvjournal")
    d = emu.install("iris", "MIRR", owner="root", databases="USER,APP,HIS", database_dir=dbdir, journal_dir=jdir,
                    mirror_member_type="Failover", mirror_status="Primary", qos_timeout=16000,
                    superserver_port=51773, version="2023.1.2.450.0", start=False)
    cpf = open(os.path.join(d, "iris.cpf")).read()
    for db in ("user", "app", "his"):
        assert os.path.isfile(os.path.join(dbdir, db, "IRIS.DAT"))
        assert "%s=%s/%s/" % (db.upper(), dbdir, db) in cpf
    assert "CurrentDirectory=%s/" % jdir in cpf
    assert any(re.match(r"^\d{8}\.\d{3}$", f) for f in os.listdir(jdir))
    assert "[MirrorMember]" in cpf
    mline = [line for line in cpf.split("[Mirrors]")[1].splitlines() if "=" in line][0]
    assert mline.split("=", 1)[1].split(",")[4] == "16000"
    q = emu.run(["iris", "qlist", "MIRR"]).stdout.strip().split("^")
    assert q[2] == "2023.1.2.450.0" and q[5] == "51773"
    assert q[10] == "Failover" and q[11] == "Primary"
    lst = emu.run(["iris", "list", "MIRR"]).stdout
    assert "        mirroring: Member Type = Failover; Status = Primary\n" in lst
    d2 = emu.install("iris", "MIRR2", owner="root", mirror_member_type="Disaster Recovery",
                     mirror_status="Connected", start=False)
    cpf2 = open(os.path.join(d2, "iris.cpf")).read()
    mline = [line for line in cpf2.split("[Mirrors]")[1].splitlines() if "=" in line][0]
    assert mline.split("=", 1)[1].split(",")[4] == "8000"  # default QoS
    assert "Disaster Recovery^Connected^" in emu.run(["iris", "qlist", "MIRR2"]).stdout
    ports = [line.split("^")[5] for line in emu.run(["iris", "qlist"]).stdout.splitlines()]
    assert len(ports) == len(set(ports))


def test_irisstat_and_permissions(emu, both, flavour):
    name, d = both[flavour]
    f = FLAV[flavour]
    r = emu.run([os.path.join(d, "bin", f["stat"])], check_rc=0)
    assert "WDSUSPD" not in r.stdout and name in r.stdout
    r = emu.run([f["control"], "stat", name], check_rc=0)
    assert "WDSUSPD" not in r.stdout
    r = emu.run([os.path.join(d, "bin", f["stat"]), "-s" + os.path.join(d, "mgr")], check_rc=0)
    assert name in r.stdout
    # shared state files are usable by other users (permissive modes, see README)
    emudir = os.path.join(d, "mgr", "irisemu")
    assert stat.S_IMODE(os.stat(emudir).st_mode) == 0o777
    for fn in ("state.json", "security.json", "buhistory.json", "state.lock"):
        assert stat.S_IMODE(os.stat(os.path.join(emudir, fn)).st_mode) == 0o666


def test_generation_advances_in_all_files(emu, both):
    name, d = both["iris"]
    dat = os.path.join(d, "mgr", "app", "IRIS.DAT")
    g0 = read_generation(dat)
    emu.wait_generation(d, g0 + 3)
    assert read_generation(dat) >= g0 + 2
    assert read_generation(os.path.join(d, "mgr", "IRIS.DAT")) >= g0 + 2
    jf = sorted(os.listdir(os.path.join(d, "mgr", "journal")))[-1]
    text = open(os.path.join(d, "mgr", "journal", jf), errors="replace").read()
    assert 'SET ^["^^%s/"]IRISEMU("gen")=' % os.path.join(d, "mgr", "app") in text


def test_stale_pid_after_restart_is_down(emu):
    """After a container restart the recorded pid may belong to another process: the instance is down."""
    d = emu.install("iris", "STALE", owner="root", start=False)
    with emu.instance("STALE").state() as st:
        st["running"] = True
        st["wd_pid"] = os.getpid()  # alive, but not a write daemon
        st["started_at"] = time.time()
    assert emu.run(["iris", "qlist", "STALE"]).stdout.split("^")[3].startswith("down, last used")
    r = emu.run(["iris", "start", "STALE"], check_rc=0)
    assert "already up" not in r.stdout
    assert emu.run(["iris", "qlist", "STALE"]).stdout.split("^")[3].startswith("running")
    emu.run(["iris", "stop", "STALE"], check_rc=0)
