"""Journal records are replayable; Journal.Restore (redirection, stop points, gaps, database problems);
%SYS.Journal.System / ^JRNSWTCH; the integrity check API; a drill instance under another name and directories."""
import os
import re
import shutil
import sys
import time

import pytest

from conftest import EMU, read_generation

sys.path.insert(0, EMU)
from irisemu import journal as jmod  # noqa: E402


@pytest.fixture(scope="module")
def src(emu):
    """Source instance SRC (user databases on a second "volume") and a drill instance DRILL installed with
    --load off under other directories; both running."""
    data = emu.path("src_data")
    d = emu.install("iris", "SRC", owner="root", databases="USER,APP", database_dir=data, write_interval_ms=20)
    emu.set_load("SRC", interval_ms=20, block_pause_ms=0)
    ddata = emu.path("drill_data")
    for db in ("user", "app"):
        os.makedirs(os.path.join(ddata, db))
    dd = emu.install("iris", "DRILL", owner="root", databases="USER,APP", database_dir=ddata, load="off",
                     dir=emu.path("drill_inst"))
    return {"name": "SRC", "dir": d, "data": data, "drill": "DRILL", "drill_dir": dd, "drill_data": ddata}


def script(emu, name, lines, ns="%SYS"):
    return emu.session(name, ns=ns, input="\n".join(lines) + "\n")


def markers(out):
    return dict(m.groups() for m in re.finditer(r"IRISOPS\|([\w.]+)\|(.*)", out))


def freeze_copy(emu, s, dst):
    """ExternalFreeze, copy the source's user databases to ``dst``, ExternalThaw; returns the restore file."""
    r = emu.session(s["name"], '##class(Backup.General).ExternalFreeze(0)')
    assert r.returncode == 5, r.stdout
    try:
        if os.path.exists(dst):
            shutil.rmtree(dst)
        shutil.copytree(s["data"], dst)
    finally:
        assert emu.session(s["name"], "##class(Backup.General).ExternalThaw()").returncode == 5
    return re.search(r"journal file: (\S+)", r.stdout).group(1)


def switch(emu, name):
    r = script(emu, name, ["Do ^JRNSWTCH", ""])
    m = re.search(r"Switching from: (\S+)\s+To: (\S+)", r.stdout)
    assert m, r.stdout
    return m.group(1), m.group(2)


def last_gen(path, src_dir=None):
    gens = [int(r["value"]) for r in jmod.read_records(path)
            if r["sub"] == "gen" and (src_dir is None or r["dir"] == src_dir)]
    return gens[-1] if gens else None


def ship(files, dst):
    if os.path.exists(dst):
        shutil.rmtree(dst)
    os.makedirs(dst)
    for f in files:
        shutil.copy2(f, dst)
    return [os.path.join(dst, os.path.basename(f)) for f in files]


def restore_lines(first, last, redirects, extra=(), location=None):
    lines = ["Set r=##class(Journal.Restore).%New()", 'Set r.FirstFile="%s"' % first]
    if last:
        lines.append('Set r.LastFile="%s"' % last)
    if location:
        lines.append('Do r.UseJournalLocation("%s")' % location)
    for s_, t in redirects:
        lines.append('Set sc=r.RedirectDatabase("%s","%s"),sc=r.SelectUpdates("%s")' % (s_, t, s_))
    lines += list(extra)
    lines += ["Set sc=r.Run()", 'Write "IRISOPS|sc|",sc,!',
              "Do ##class(%SYSTEM.Process).Terminate(,$Select($SYSTEM.Status.IsOK(sc):5,1:3))"]
    return lines


def drill_targets(s, restored):
    """Put the restored copy in place as the drill's databases; returns the redirections source -> drill."""
    red = []
    for db in ("user", "app"):
        tgt = os.path.join(s["drill_data"], db)
        shutil.copy2(os.path.join(restored, db, "IRIS.DAT"), os.path.join(tgt, "IRIS.DAT"))
        red.append((os.path.join(s["data"], db) + "/", tgt + "/"))
    return red


@pytest.fixture(scope="module")
def chain(emu, src):
    """A backup under freeze, then three completed journal files written under load and shipped."""
    s = src
    emu.wait_generation(s["dir"], 3)
    first = freeze_copy(emu, s, emu.path("backup1"))
    g_backup = read_generation(os.path.join(emu.path("backup1"), "user", "IRIS.DAT"))
    files = [first]
    for _round in range(3):
        g = emu.generation(s["dir"])
        emu.wait_generation(s["dir"], g + 5)
        old, new = switch(emu, s["name"])
        assert old == files[-1]
        files.append(new)
    completed = files[:-1]  # the last one is the current file
    shipped = ship(completed, emu.path("ship"))
    return {"first": first, "files": files, "completed": completed, "shipped": shipped, "g_backup": g_backup}


# ---------------------------------------------------------------------------------------------------------------
# journal files and records

def test_records_carry_what_redoes_a_cycle(emu, src, chain):
    recs = jmod.read_records(chain["completed"][1])
    sets = [r for r in recs if r["sub"] == "gen"]
    dirs = {r["dir"] for r in sets}
    assert os.path.join(src["data"], "user") + "/" in dirs and os.path.join(src["data"], "app") + "/" in dirs
    assert not any("iristemp" in d for d in dirs)  # IRISTEMP is never journalled
    assert all(re.match(r"^\d+,\d+$", r["horolog"]) for r in recs)
    # one cycle = one record per journalled database, never split over two files
    per_gen = {}
    for r in sets:
        per_gen.setdefault(int(r["value"]), set()).add(r["dir"])
    full = len(max(per_gen.values(), key=len))
    assert all(len(v) == full for v in per_gen.values())
    # the freeze's marker is the first record of the restore file
    first = jmod.read_records(chain["first"])
    assert first[0]["type"] == "JRNMARK"
    # a completed file is never written again (the header names the previous file: the chain)
    size = os.path.getsize(chain["completed"][-1])
    emu.wait_generation(src["dir"], emu.generation(src["dir"]) + 3)
    assert os.path.getsize(chain["completed"][-1]) == size
    hdrs = [jmod.read_header(f)["prev"] for f in chain["files"][1:]]
    assert hdrs == chain["files"][:-1]


def test_current_file_and_switch(emu, src):
    name = src["name"]
    r = script(emu, name, ['Write "IRISOPS|cur|",##class(%SYS.Journal.System).GetCurrentFileName(),!',
                           'Write "IRISOPS|sw|",##class(%SYS.Journal.System).SwitchFile(),!',
                           'Write "IRISOPS|cur2|",##class(%SYS.Journal.System).GetCurrentFileName(),!',
                           'Write "IRISOPS|dir|",##class(%SYS.Journal.System).GetPrimaryDirectory(),!'])
    m = markers(r.stdout)
    assert m["sw"] == "1" and m["cur"] != m["cur2"] and m["cur2"] == emu.state(src["dir"])["journal"]["current"]
    assert m["dir"] == os.path.join(src["dir"], "mgr", "journal") + "/"
    assert jmod.read_header(m["cur2"])["prev"] == m["cur"]
    old, new = switch(emu, name)
    assert old == m["cur2"] and new == emu.state(src["dir"])["journal"]["current"]
    log = open(os.path.join(src["dir"], "mgr", "messages.log")).read()
    assert "Journaling switched to: %s" % new in log
    # the percent class answers in every namespace
    r = script(emu, name, ['Write "IRISOPS|cur|",##class(%SYS.Journal.System).GetCurrentFileName(),!'], ns="USER")
    assert markers(r.stdout)["cur"] == new


# ---------------------------------------------------------------------------------------------------------------
# Journal.Restore

def test_drill_restore_reaches_last_generation(emu, src, chain):
    """Backup at generation g + every shipped record = the last generation of the shipped files, in a second
    instance (other name, other directories, no write load): irisemu-dbcheck and the integrity check agree."""
    s = src
    red = drill_targets(s, emu.path("backup1"))
    assert emu.run(["irisemu-dbcheck", s["drill_data"]]).stdout.startswith(
        "consistent: instance SRC generation %d " % chain["g_backup"])
    time.sleep(0.3)  # the drill has no write load: its databases stay as restored
    assert read_generation(os.path.join(s["drill_data"], "user", "IRIS.DAT")) == chain["g_backup"]
    shipped = chain["shipped"]
    r = script(emu, s["drill"], restore_lines(shipped[0], shipped[-1], red, location=os.path.dirname(shipped[0])))
    assert r.returncode == 5, r.stdout
    assert markers(r.stdout)["sc"] == "1"
    want = last_gen(shipped[-1])
    assert want > chain["g_backup"]
    out = r.stdout
    assert "Journal file being applied: %s" % shipped[0] in out
    for f in shipped:
        assert re.search(re.escape(f) + r"\n +(\d+\.\d\d% )*100\.00%\n", out), out
    assert re.search(r"\[Journal restore completed at \d{8} \d\d:\d\d:\d\d\]", out)
    assert "The following databases have been updated:\n\n1. %s\n2. %s\n" % (red[0][1], red[1][1]) in out
    ck = emu.run(["irisemu-dbcheck", s["drill_data"]])
    assert ck.returncode == 0 and ck.stdout.startswith("consistent: instance SRC generation %d " % want), ck.stdout
    # the source is untouched by the drill and kept running
    assert read_generation(os.path.join(s["data"], "user", "IRIS.DAT")) > want
    log = open(os.path.join(s["drill_dir"], "mgr", "messages.log")).read()
    assert "Journal restore of %s .. %s completed" % (shipped[0], shipped[-1]) in log


def test_gap_stops_at_the_point_reached(emu, src, chain):
    """A missing journal file: the files before it are applied, Run() fails naming the missing file and the
    point reached; nothing after the gap is applied."""
    s = src
    red = drill_targets(s, emu.path("backup1"))
    shipped = ship([chain["completed"][0], chain["completed"][2]], emu.path("ship_gap"))
    r = script(emu, s["drill"], restore_lines(shipped[0], shipped[-1], red))
    assert r.returncode == 3, r.stdout
    sc = markers(r.stdout)["sc"]
    missing = os.path.basename(chain["completed"][1])
    assert sc.startswith("0 ERROR #") and "after %s is missing" % os.path.basename(shipped[0]) in sc, sc
    assert "names %s as its previous file" % missing in sc
    assert "offset" in sc and shipped[0] in sc
    assert "[Journal restore aborted at" in r.stdout and shipped[1] + "\n" not in r.stdout
    reached = last_gen(shipped[0])
    ck = emu.run(["irisemu-dbcheck", s["drill_data"]])
    assert ck.stdout.startswith("consistent: instance SRC generation %d " % reached), ck.stdout
    # the same without LastFile: the later file still shows the gap
    red = drill_targets(s, emu.path("backup1"))
    r = script(emu, s["drill"], restore_lines(shipped[0], None, red))
    assert r.returncode == 3 and "after %s is missing" % os.path.basename(shipped[0]) in markers(r.stdout)["sc"]
    # AbortOnJournalError=0 (the ALTERNATE action) skips the gap and goes on
    red = drill_targets(s, emu.path("backup1"))
    r = script(emu, s["drill"], restore_lines(shipped[0], shipped[-1], red, extra=["Set r.AbortOnJournalError=0"]))
    assert r.returncode == 5, r.stdout
    assert read_generation(os.path.join(s["drill_data"], "user", "IRIS.DAT")) == last_gen(shipped[-1])


def test_missing_first_file_and_bad_order(emu, src, chain):
    s = src
    red = drill_targets(s, emu.path("backup1"))
    r = script(emu, s["drill"], restore_lines("/nonexistent/20000101.001", None, red))
    assert r.returncode == 3 and "not found" in markers(r.stdout)["sc"]
    shipped = chain["shipped"]
    r = script(emu, s["drill"], restore_lines(shipped[-1], shipped[0], red))
    assert r.returncode == 3 and "older than FirstFile" in markers(r.stdout)["sc"]
    assert read_generation(os.path.join(s["drill_data"], "user", "IRIS.DAT")) == chain["g_backup"]


def filter_lines(body):
    rt = ("ZIRISOPSJF(jidsys,dir,glo,type,restmode,addr,time) %s Quit" % body).replace('"', '""')
    return ['Set rt=##class(%%Routine).%%New("ZIRISOPSJF.INT") Do rt.WriteLine("%s")' % rt,
            'Set sc=rt.Save() Write "IRISOPS|save|",sc,!', 'Set sc=rt.Compile() Write "IRISOPS|compile|",sc,!']


def test_stop_at_offset_and_time_with_a_filter(emu, src, chain):
    """A stop point inside a file: a filter routine (^ZJRNFILT interface) named by the Filter property."""
    s = src
    shipped = chain["shipped"]
    recs = [r for r in jmod.read_records(shipped[1]) if r["sub"] == "gen"]
    stop = recs[len(recs) // 2]
    # run 1: the files before the stop file; run 2: the stop file with the filter addr <= offset
    red = drill_targets(s, emu.path("backup1"))
    lines = filter_lines("Set restmode=(addr'>%d)" % stop["offset"])
    lines += restore_lines(shipped[0], shipped[0], red)[:-1]
    lines += ["Set r2=##class(Journal.Restore).%New()", 'Set r2.FirstFile="%s",r2.LastFile="%s"' % (
        shipped[1], shipped[1]), 'Set r2.Filter="^ZIRISOPSJF"']
    lines += ['Set sc2=r2.RedirectDatabase("%s","%s")' % x for x in red]
    lines += ["Set sc2=r2.Run()", 'Write "IRISOPS|sc2|",sc2,!']
    r = script(emu, s["drill"], lines)
    m = markers(r.stdout)
    assert m["save"] == "1" and m["compile"] == "1" and m["sc"] == "1" and m["sc2"] == "1", r.stdout
    want = max(int(x["value"]) for x in recs if x["offset"] <= stop["offset"] and x["dir"] == red[0][0])
    assert read_generation(os.path.join(s["drill_data"], "user", "IRIS.DAT")) == want
    # time: records whose $H time is not after T (one run over every file)
    times = sorted({x["horolog"] for x in recs})
    t = times[len(times) // 2]
    tsec = int(t.split(",")[0]) * 86400 + int(t.split(",")[1])
    red = drill_targets(s, emu.path("backup1"))
    lines = filter_lines("Set restmode=(($Piece(time,\",\")*86400+$Piece(time,\",\",2))'>%d)" % tsec)
    lines += restore_lines(shipped[0], shipped[-1], red, extra=['Set r.Filter="^ZIRISOPSJF"'])
    r = script(emu, s["drill"], lines)
    assert r.returncode == 5, r.stdout
    allrecs = [x for f in shipped for x in jmod.read_records(f) if x["sub"] == "gen" and x["dir"] == red[0][0]]
    want = max(int(x["value"]) for x in allrecs
               if int(x["horolog"].split(",")[0]) * 86400 + int(x["horolog"].split(",")[1]) <= tsec)
    assert read_generation(os.path.join(s["drill_data"], "user", "IRIS.DAT")) == want
    # an error in the filter aborts the restore
    red = drill_targets(s, emu.path("backup1"))
    lines = filter_lines("Set restmode=nosuchvar")
    lines += restore_lines(shipped[0], shipped[-1], red, extra=['Set r.Filter="^ZIRISOPSJF"'])
    r = script(emu, s["drill"], lines)
    assert r.returncode == 3 and "error in the journal filter" in markers(r.stdout)["sc"]
    assert read_generation(os.path.join(s["drill_data"], "user", "IRIS.DAT")) == chain["g_backup"]
    r = script(emu, s["drill"], ['Write "IRISOPS|del|",##class(%Routine).Delete("ZIRISOPSJF.INT"),'
                                 '##class(%Routine).Exists("ZIRISOPSJF"),!'])
    assert markers(r.stdout)["del"] == "10"


def test_database_problems(emu, src, chain):
    """A target that is a database of another running instance cannot be mounted; a damaged target is a database
    problem: with AbortOnDatabaseError nothing is written, without it the database is skipped."""
    s = src
    shipped = chain["shipped"]
    prod = os.path.join(s["data"], "user") + "/"
    r = script(emu, s["drill"], restore_lines(shipped[0], shipped[-1], [(prod, prod)],
                                              extra=["Set r.AbortOnDatabaseError=1"]))
    assert r.returncode == 3, r.stdout
    assert "running instance SRC (cannot mount it)" in markers(r.stdout)["sc"]
    assert "no record was applied" in markers(r.stdout)["sc"]
    red = drill_targets(s, emu.path("backup1"))
    dat = os.path.join(red[1][1], "IRIS.DAT")
    with open(dat, "r+b") as fh:
        fh.seek(2 * 8192 + 100)
        fh.write(b"\xff\xff")
    r = script(emu, s["drill"], restore_lines(shipped[0], shipped[-1], red))
    assert r.returncode == 5, r.stdout  # default: continue, skipping the damaged database
    assert "The following databases have been skipped:" in r.stdout and "block 2: checksum mismatch" in r.stdout
    assert read_generation(os.path.join(red[0][1], "IRIS.DAT")) == last_gen(shipped[-1])
    r = script(emu, s["drill"], restore_lines(shipped[0], shipped[-1], red, extra=["Set r.AbortOnDatabaseError=1"]))
    assert r.returncode == 3 and "<DATABASE>" in markers(r.stdout)["sc"]


def test_check_journal_integrity_lists_source_databases(emu, src, chain):
    s = src
    shipped = chain["shipped"]
    r = script(emu, s["drill"], [
        "Set r=##class(Journal.Restore).%New()", 'Set r.FirstFile="%s",r.LastFile="%s"' % (shipped[0], shipped[-1]),
        'Set sc=r.CheckJournalIntegrity(1) Write "IRISOPS|sc|",sc,!',
        "Set l=r.SourceDatabases,key=\"\",all=\"\"",
        'Set d=l.GetNext(.key),all=all_d_";" Set d=l.GetNext(.key),all=all_d_";"',
        'Write "IRISOPS|n|",l.Count(),!,"IRISOPS|all|",all,!,"IRISOPS|obj|",$IsObject(l),$IsObject(1),!'])
    m = markers(r.stdout)
    assert m["sc"] == "1" and int(m["n"]) >= 4 and m["obj"] == "10"
    assert m["all"].count("/") > 2
    r = script(emu, s["drill"], ["Set r=##class(Journal.Restore).%New()", 'Write r.NoSuch,!', 'Do r.NoSuch()',
                                 'Set x=1 Write x.Foo,!', 'Set r.FirstFile="a",v=r.FirstFile Write "IRISOPS|v|",v,!'])
    assert "<PROPERTY DOES NOT EXIST>" in r.stdout and "<METHOD DOES NOT EXIST>" in r.stdout
    assert "<INVALID OREF>" in r.stdout and markers(r.stdout)["v"] == "a"
    # Journal.Restore lives in %SYS only
    r = emu.session(s["drill"], ns="USER", input="Set r=##class(Journal.Restore).%New()\n")
    assert "<CLASS DOES NOT EXIST> *Journal.Restore" in r.stdout


# ---------------------------------------------------------------------------------------------------------------
# integrity check

def integrity_lines(dirs, flags=1):
    lb = "$ListBuild(%s)" % ",".join('"%s"' % d for d in dirs)
    return ["Set sc=$$CheckList^Integrity(,%s,0,,1)" % lb, "Do Display^Integrity(,%d)" % flags,
            'Write "IRISOPS|sc|",sc,!', 'Write "IRISOPS|data|",$Data(^IRIS.TempIntegrityOutput(+$JOB)),!',
            "Kill ^IRIS.TempIntegrityOutput(+$JOB)",
            'Write "IRISOPS|data2|",$Data(^IRIS.TempIntegrityOutput(+$JOB)),!',
            "Do ##class(%SYSTEM.Process).Terminate(,$Select($SYSTEM.Status.IsOK(sc):5,1:3))"]


def test_integrity_check(emu, src, chain):
    s = src
    red = drill_targets(s, emu.path("backup1"))
    dirs = [t for _src, t in red]
    r = script(emu, s["drill"], integrity_lines(dirs, flags=0))
    assert r.returncode == 5, r.stdout
    m = markers(r.stdout)
    assert m["sc"] == "1" and m["data"] == "1" and m["data2"] == "0"
    for d in dirs:
        assert "---Directory %s---" % d in r.stdout
    assert r.stdout.count("No Errors were found in this directory.") == 2 and "\nNo Errors were found.\n" in r.stdout
    assert "Database Integrity Check on" in r.stdout and "Total blocks" in r.stdout
    # a damaged block: the file and the block are named
    user_dat = os.path.join(dirs[0], "IRIS.DAT")
    with open(user_dat, "r+b") as fh:
        fh.seek(7 * 8192 + 4000)
        b = fh.read(1)
        fh.seek(7 * 8192 + 4000)
        fh.write(bytes([b[0] ^ 1]))
    r = script(emu, s["drill"], integrity_lines(dirs))
    assert r.returncode == 3, r.stdout
    assert "Error: %s: block 7: checksum mismatch" % user_dat in r.stdout
    assert "Errors were found in this directory." in r.stdout and "\nErrors were found.\n" in r.stdout
    sc = markers(r.stdout)["sc"]
    assert sc.startswith("0 ERROR #1107:") and dirs[0] in sc and dirs[1] not in sc
    # a generation mix inside one file (a block from another write cycle) is a torn write
    shutil.copy2(os.path.join(emu.path("backup1"), "user", "IRIS.DAT"), user_dat)
    other = open(os.path.join(s["data"], "user", "IRIS.DAT"), "rb").read()
    with open(user_dat, "r+b") as fh:
        fh.seek(3 * 8192)
        fh.write(other[3 * 8192:4 * 8192])
    r = script(emu, s["drill"], integrity_lines(dirs, flags=2))
    assert r.returncode == 3
    assert re.search(re.escape(user_dat) + r": block 3: generation \d+, the other blocks have \d+ \(torn write\)",
                     r.stdout), r.stdout
    assert "---Directory" not in r.stdout  # flags 2: errors only
    # a directory without a database: the check could not run there (another error code)
    r = script(emu, s["drill"], integrity_lines([emu.path("nodb")]))
    assert r.returncode == 3 and markers(r.stdout)["sc"].startswith("0 ERROR #1108:")
    # without a list: every database of the instance
    r = script(emu, s["drill"], ["Set sc=$$CheckList^Integrity() Do Display^Integrity(,1)", 'Write "IRISOPS|sc|",sc,!'])
    assert r.stdout.count("---Directory ") == 5  # IRISSYS, IRISLIB, IRISTEMP, USER, APP
    # the routines are in %SYS only; other entry points are not emulated
    r = emu.session(s["drill"], ns="USER", input="Set sc=$$CheckList^Integrity()\n")
    assert "<NOROUTINE>" in r.stdout
    r = script(emu, s["drill"], ["Do ^Integrity"])
    assert "<NOLINE>" in r.stdout
    shutil.copy2(os.path.join(emu.path("backup1"), "user", "IRIS.DAT"), user_dat)


def test_interpreter_additions(emu, src):
    r = script(emu, src["drill"], [
        'Write "IRISOPS|sel|",$Select(0:"a",1=2:"b",1:"c"),$S(1:"x",1:1/0),!',
        'Set l=$ListBuild("a",,"ccc") Write "IRISOPS|lb|",$ListLength(l),$List(l,3),$LG(l,2,"d"),$LI(l),!',
        'Set ^IRIS.TempX(1)=5 Write "IRISOPS|tg|",^IRIS.TempX(1),$D(^IRIS.TempX),!',
        'Write ^SYS(1)', 'Write $Select(0:1)'])
    m = markers(r.stdout)
    assert m["sel"] == "cx" and m["lb"] == "3cccda" and m["tg"] == "510"
    assert "<PROTECT>" in r.stdout and "<SELECT>" in r.stdout


# ---------------------------------------------------------------------------------------------------------------
# the drill instance

def test_drill_instance_install(emu, src):
    """A second instance on the same host, under another name and directories, with restored databases: its
    write daemon leaves them alone (--load off), and re-running install keeps them."""
    s = src
    st = emu.state(s["drill_dir"])
    assert st["load"]["paused"] is True and st["running"] is True
    dat = os.path.join(s["drill_data"], "user", "IRIS.DAT")
    data = open(dat, "rb").read()
    time.sleep(0.3)
    assert open(dat, "rb").read() == data
    r = emu.run(["iris", "qlist", "DRILL"], check_rc=0)
    assert r.stdout.split("^")[1] == s["drill_dir"]
    cpf = open(os.path.join(s["drill_dir"], "iris.cpf")).read()
    assert "USER=%s/" % os.path.join(s["drill_data"], "user") in cpf
    emu.install("iris", "DRILL", owner="root", databases="USER,APP", database_dir=s["drill_data"],
                dir=s["drill_dir"], start=False)
    assert open(dat, "rb").read() == data
    emu.run(["irisemu-load", "DRILL", "--resume"], check_rc=0)
    emu.wait_generation(s["drill_dir"], 2)
    emu.run(["irisemu-load", "DRILL", "--pause"], check_rc=0)
    time.sleep(0.2)
    assert emu.run(["irisemu-dbcheck", s["drill_data"]]).stdout.startswith("consistent: instance DRILL ")


def test_cache_flavour(emu, both):
    """The same APIs through csession on Caché (CACHE.DAT, ^CacheTempIntegrityOutput)."""
    name, d = both["cache"]
    r = emu.session(name, prog=("csession",), input="\n".join([
        'Write "IRISOPS|cur|",##class(%SYS.Journal.System).GetCurrentFileName(),!',
        "Do ^JRNSWTCH", "",
        'Set sc=$$CheckList^Integrity(,$ListBuild("%s"),0,,1) Write "IRISOPS|sc|",sc,!' % os.path.join(d, "mgr", "user"),
        'Write "IRISOPS|tg|",$Data(^CacheTempIntegrityOutput(+$JOB)),!',
        'Set r=##class(Journal.Restore).%New() Write "IRISOPS|obj|",$IsObject(r),!']) + "\n")
    m = markers(r.stdout)
    assert m["cur"].startswith(os.path.join(d, "mgr", "journal")) and "Switching from: %s" % m["cur"] in r.stdout
    assert m["sc"] == "1" and m["tg"] == "1" and m["obj"] == "1", r.stdout
