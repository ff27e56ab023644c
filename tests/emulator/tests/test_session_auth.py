"""Session command forms, the ObjectScript subset, authentication, Security.* classes, iris merge."""
import json
import os
import re

import pytest

from conftest import FLAV


def prog(flavour):
    return FLAV[flavour]["session"]


# ---------------------------------------------------------------------------------------------------------------
# command forms

def test_session_forms(emu, both, flavour):
    name, d = both[flavour]
    expr = "##class(Backup.General).IsWDSuspendedExt()"
    if flavour == "iris":
        forms = [["iris", "session", name, "-U", "%SYS", expr], ["iris", "session", name, "-U%SYS", expr],
                 ["iris", "session", name, "-U", '"%SYS"', expr], ["irissession", name, "-U", "%SYS", expr],
                 ["iris", "terminal", name, "-U%SYS", expr], ["iris", "session", name.lower(), "-U", "%SYS", expr]]
    else:
        forms = [["csession", name, "-U", "%SYS", expr], ["csession", name, "-U%SYS", expr],
                 ["ccontrol", "session", name, "-U", "%SYS", expr], ["ccontrol", "terminal", name, "-U%SYS", expr]]
    for argv in forms:
        r = emu.run(argv)
        assert r.returncode == 3, (argv, r.stdout, r.stderr)
    # the other flavour's command does not see the instance
    other = (["csession", name, "-U", "%SYS", expr] if flavour == "iris"
             else ["iris", "session", name, "-U", "%SYS", expr])
    assert emu.run(other).returncode not in (0, 3, 5)


def test_script_on_stdin(emu, both, flavour):
    name, d = both[flavour]
    script = "Set a=2,b=3\nWrite a*b,!\nWrite \"x\"\"y\",!\nHalt\nWrite \"not reached\"\n"
    r = emu.session(name, prog=prog(flavour), input=script)
    assert r.returncode == 0
    assert "Instance: %s" % name in r.stdout
    assert "%SYS>6\n" in r.stdout and 'x"y' in r.stdout and "not reached" not in r.stdout
    r = emu.session(name, prog=prog(flavour), ns="USER", input="Write $NAMESPACE,!\n")
    assert r.returncode == 0 and "USER>USER\n" in r.stdout


@pytest.mark.parametrize("expr,out", [
    ("Write 1+2*3", "9"),                      # strictly left to right
    ("Write 7\\2,\" \",7#3,\" \",-7#3", "3 1 2"),
    ('Write "a"_"b"_1.50', "ab1.5"),
    ("Write .5+0,\" \",\"3abc\"+1", ".5 4"),
    ("Write $zb(48,16,7),\" \",$zb(32,16,7),\" \",$zb(48,16,1),\" \",$zb(32,16,1),\" \",$zb(48,16,2)",
     "48 48 16 0 32"),
    ("Write $ZBOOLEAN(64,16,7)", "80"),
    ('Set p("x")=1 Write $D(p),$D(p("x")),$D(q),$G(p("y"),"dflt")', "1010dflt"),
    ('Set x=5 Kill x Write $G(x,"gone")', "gone"),
    ('Write 1=1,2\'=2,"b"]"a",3>2,2<1', "10110"),
    ('Write $P("a,b,c",",",2),$L("abc"),$E("hello",2,3)', "b3el"),
    ("Write 1 ; a comment", "1"),
    ("Write 1,! Write 2", "1\n2"),
])
def test_objectscript_subset(emu, both, expr, out):
    r = emu.session("IRIS", expr)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == out


@pytest.mark.parametrize("expr,err", [
    ("Write 1+", "<SYNTAX>"),
    ("Write foo", "<UNDEFINED> *foo"),
    ("Write 1/0", "<DIVIDE>"),
    ("If 1 Write 2", "<SYNTAX>"),
    ("Write:1 2", "<SYNTAX>"),
    ("Do ^%SS", "<NOROUTINE>"),
    ("Write ^SYS(1)", "<PROTECT>"),
    ("Write $$$OK", "<SYNTAX>"),
    ("Do ##class(No.Such).Thing()", "<CLASS DOES NOT EXIST> *No.Such"),
    ("Do ##class(Backup.General).NoSuch()", "<METHOD DOES NOT EXIST>"),
    ('Write "unterminated', "<SYNTAX>"),
])
def test_objectscript_errors(emu, both, expr, err):
    r = emu.session("IRIS", expr)
    assert r.returncode not in (0, 3, 5)
    assert r.stdout.strip().startswith(err), r.stdout


def test_errors_in_script_continue(emu, both):
    r = emu.session("IRIS", input="Write 1/0\nWrite \"after\",!\n")
    assert r.returncode == 0 and "<DIVIDE>" in r.stdout and "after" in r.stdout


def test_terminate_exit_code_and_mirror(emu, both, flavour):
    name, d = both[flavour]
    assert emu.session(name, "##class(%SYSTEM.Process).Terminate(,42)", prog=prog(flavour)).returncode == 42
    assert emu.session(name, "Do $SYSTEM.Process.Terminate(,7)", prog=prog(flavour)).returncode == 7
    r = emu.session(name, 'Write $SYSTEM.Mirror.GetMemberType(),"|",$SYSTEM.Mirror.GetStatus(),"|",'
                          '$SYSTEM.Mirror.IsPrimary()', prog=prog(flavour))
    assert r.stdout == "Not Member|NOTINIT|0"
    assert emu.session(name, "Halt", prog=prog(flavour)).returncode == 0


def test_mirror_methods(emu):
    emu.install("iris", "MPRI", owner="root", mirror_member_type="Failover", mirror_status="Primary")
    emu.install("iris", "MDR", owner="root", mirror_member_type="Disaster Recovery", mirror_status="Connected")
    r = emu.session("MPRI", 'Write $SYSTEM.Mirror.GetMemberType(),"|",$SYSTEM.Mirror.GetStatus(),"|",'
                            '$system.Mirror.IsPrimary()')
    assert r.stdout == "Failover|PRIMARY|1"
    assert emu.session("MPRI", "##class(%SYSTEM.Process).Terminate(,$SYSTEM.Mirror.IsPrimary())").returncode == 1
    r = emu.session("MDR", 'Write $SYSTEM.Mirror.GetMemberType(),"|",$SYSTEM.Mirror.GetStatus(),"|",'
                           '$SYSTEM.Mirror.IsPrimary()')
    assert r.stdout == "Disaster Recovery|CONNECTED|0"
    for n in ("MPRI", "MDR"):
        emu.run(["iris", "force", n])


def test_mirror_set_lag_and_failover(emu):
    """A mirror set named at install, SYS.Mirror's distance from the primary (1: caught up), and a failover modelled
    by installing again with other roles (what the mirror scenario does between runs)."""
    emu.install("iris", "MBAK", owner="root", mirror_member_type="Failover", mirror_status="Backup",
                mirror_name="PRODSET", start=False)
    emu.install("iris", "MNOT", owner="root", start=False)
    for n in ("MBAK", "MNOT"):
        emu.run(["iris", "start", n], check_rc=0)
    expr = ('Write $SYSTEM.Mirror.MirrorName(),"|",$SYSTEM.Mirror.GetStatus(),"|",'
            '##class(SYS.Mirror).DistanceFromPrimaryJournalFiles(),"|",##class(SYS.Mirror).DistanceFromPrimaryDatabases()')
    assert emu.session("MBAK", expr).stdout == "PRODSET|BACKUP|1|1"
    assert emu.session("MNOT", expr).stdout == "|NOTINIT|0|0"
    d = emu.install("iris", "MBAK", owner="root", mirror_member_type="Failover", mirror_status="Primary",
                    dir=emu.path("inst", "mbak"), mirror_journal_distance=4, start=False)
    assert emu.session("MBAK", expr).stdout == "PRODSET|PRIMARY|4|4"
    f = emu.run(["iris", "qlist", "MBAK"], check_rc=0).stdout.strip().split("^")
    assert (f[10], f[11]) == ("Failover", "Primary") and d
    emu.install("iris", "MNOT", owner="root", mirror_member_type="Disaster Recovery", mirror_status="Connected",
                mirror_name="PRODSET", dir=emu.path("inst", "mnot"), start=False)
    assert emu.session("MNOT", expr).stdout == "PRODSET|CONNECTED|1|1"
    with open(os.path.join(emu.path("inst", "mnot"), "iris.cpf")) as fh:
        assert "\n[Mirrors]\nPRODSET=" in fh.read()
    for n in ("MBAK", "MNOT"):
        emu.run(["iris", "force", n])


def test_namespace_and_class_visibility(emu, both):
    r = emu.session("IRIS", "Write 1", ns="NOSUCH")
    assert r.returncode not in (0, 3, 5) and "<NAMESPACE>" in r.stdout
    r = emu.session("IRIS", "##class(Backup.General).IsWDSuspendedExt()", ns="USER")
    assert r.returncode not in (0, 3, 5) and "<CLASS DOES NOT EXIST>" in r.stdout
    assert emu.session("IRIS", "Write $NAMESPACE", ns="APP").stdout == "APP"


# ---------------------------------------------------------------------------------------------------------------
# authentication and Security.*

@pytest.fixture(scope="module")
def authinst(emu):
    """owner daemon: root and nobody are not IRIS users; default security like the official container."""
    emu.install("iris", "AUTH", owner="daemon", start=True)
    emu.install("cache", "CAUTH", owner="daemon", start=True)
    return {"iris": "AUTH", "cache": "CAUTH"}


def test_os_auth_owner_and_prompt(emu, authinst, flavour):
    name = authinst[flavour]
    expr = "##class(Backup.General).IsWDSuspendedExt()"
    # the owner is an IRIS user with %All: OS authentication, no prompt
    r = emu.session(name, expr, prog=prog(flavour), user="daemon")
    assert r.returncode == 3 and "Username" not in r.stdout
    # root and nobody are not IRIS users: prompted, and refused without credentials
    for user in (None, "nobody"):
        r = emu.session(name, expr, prog=prog(flavour), user=user, input="")
        assert r.returncode not in (0, 3, 5)
        assert "Username:" in r.stdout and "Access Denied" in r.stdout
    # wrong credentials
    r = emu.session(name, expr, prog=prog(flavour), user="nobody", input="SuperUser\nwrong\n")
    assert r.returncode not in (0, 3, 5) and "Password:" in r.stdout and "Access Denied" in r.stdout
    # credentials fed on stdin before the command work
    r = emu.session(name, expr, prog=prog(flavour), user="nobody", input="SuperUser\nSYS\n")
    assert r.returncode == 3
    r = emu.session(name, prog=prog(flavour), user="nobody", input="_SYSTEM\nSYS\nWrite $USERNAME,!\nHalt\n")
    assert r.returncode == 0 and "_SYSTEM\n" in r.stdout


def test_users_crud_hashed_and_roles(emu, authinst, flavour):
    name = authinst[flavour]
    p = prog(flavour)
    own = {"prog": p, "user": "daemon"}
    assert emu.session(name, 'Write ##class(Security.Users).Exists("bkp")', **own).stdout == "0"
    r = emu.session(name, 'Write ##class(Security.Users).Create("bkp","%Manager","S3cret!pw","Backup",,,,,1)',
                    **own)
    assert r.stdout == "1"
    assert emu.session(name, 'Write ##class(Security.Users).Exists("bkp")', **own).stdout == "1"
    r = emu.session(name, 'Write ##class(Security.Users).Create("bkp","%Manager","x")', **own)
    assert r.stdout.startswith("0 ") and "already exists" in r.stdout
    sec = open(os.path.join(emu.path("inst", name.lower()), "mgr", "irisemu", "security.json")).read()
    assert "S3cret!pw" not in sec and json.loads(sec)["users"]["bkp"]["Password"]["hash"]
    expr = "##class(Backup.General).IsWDSuspendedExt()"
    assert emu.session(name, expr, prog=p, user="nobody", input="bkp\nS3cret!pw\n").returncode == 3
    # Get / Modify by reference: roles, enabled, password
    r = emu.session(name, prog=p, user="daemon", input=(
        'Do ##class(Security.Users).Get("bkp",.u)\n'
        'Write "R=",u("Roles"),"|E=",u("Enabled"),!\n'
        'Kill u Set u("Roles")="%Operator",u("Password")="N3w"\n'
        'Write ##class(Security.Users).Modify("bkp",.u),!\n'
        'Halt\n'))
    assert "R=%Manager|E=1" in r.stdout and "\n1\n" in r.stdout.replace("%SYS>", "")
    r = emu.session(name, expr, prog=p, user="nobody", input="bkp\nN3w\n")
    assert r.returncode not in (0, 3, 5) and "<PROTECT>" in r.stdout  # %Operator lacks the privilege
    r = emu.session(name, "Write 1", prog=p, user="nobody", input="bkp\nS3cret!pw\n")
    assert "Access Denied" in r.stdout
    emu.session(name, prog=p, user="daemon", input='Set u("Enabled")=0,u("Roles")="%Manager"\n'
                                                   'Do ##class(Security.Users).Modify("bkp",.u)\n')
    r = emu.session(name, expr, prog=p, user="nobody", input="bkp\nN3w\n")
    assert r.returncode not in (0, 3, 5) and "Access Denied" in r.stdout
    assert emu.session(name, 'Write ##class(Security.Users).Delete("bkp")', **own).stdout == "1"
    assert emu.session(name, 'Write ##class(Security.Users).Exists("bkp")', **own).stdout == "0"


def test_os_user_as_iris_user(emu, authinst, flavour):
    """The documented procedure: an IRIS user named like the OS user logs in by OS authentication."""
    name = authinst[flavour]
    p = prog(flavour)
    expr = "##class(Backup.General).IsWDSuspendedExt()"
    assert emu.session(name, 'Set x=##class(Security.Users).Create("nobody","%Manager","",,,,,,1)',
                       prog=p, user="daemon").returncode == 0
    try:
        r = emu.session(name, expr, prog=p, user="nobody", input="")
        assert r.returncode == 3 and "Username" not in r.stdout
    finally:
        emu.session(name, 'Do ##class(Security.Users).Delete("nobody")', prog=p, user="daemon")


def test_system_and_service_os_auth_switches(emu, authinst, flavour):
    name = authinst[flavour]
    p = prog(flavour)
    expr = "##class(Backup.General).IsWDSuspendedExt()"
    # system-wide OS authentication off (bit 16 cleared): even the owner is prompted
    r = emu.session(name, prog=p, user="daemon", input=(
        'Do ##class(Security.System).Get(,.p)\nWrite "A=",p("AutheEnabled"),!\n'
        'Set p("AutheEnabled")=$zb(p("AutheEnabled"),16,2)\nDo ##class(Security.System).Modify(,.p)\n'))
    assert "A=48" in r.stdout
    r = emu.session(name, expr, prog=p, user="daemon", input="")
    assert r.returncode not in (0, 3, 5) and "Username:" in r.stdout
    # turn it back on with the documented $zb(...,16,7) idiom, logging in with a password
    r = emu.session(name, prog=p, user="daemon", input=(
        'SuperUser\nSYS\nDo ##class(Security.System).Get(,.p)\n'
        'Set p("AutheEnabled")=$zb(p("AutheEnabled"),16,7)\nDo ##class(Security.System).Modify(,.p)\n'))
    assert r.returncode == 0
    assert emu.session(name, expr, prog=p, user="daemon").returncode == 3
    # %Service_Terminal without OS authentication
    r = emu.session(name, prog=p, user="daemon", input=(
        'Kill s Do ##class(Security.Services).Get("%Service_Terminal",.s)\n'
        'Write "S=",s("Enabled"),"/",s("AutheEnabled"),!\n'
        'Set s("AutheEnabled")=32\nDo ##class(Security.Services).Modify("%Service_Terminal",.s)\n'))
    assert "S=1/48" in r.stdout
    assert emu.session(name, expr, prog=p, user="daemon", input="").returncode not in (0, 3, 5)
    r = emu.session(name, prog=p, user="daemon", input=(
        'SuperUser\nSYS\nSet s("AutheEnabled")=$zb(32,16,7)\n'
        'Do ##class(Security.Services).Modify("%Service_Terminal",.s)\n'))
    assert emu.session(name, expr, prog=p, user="daemon").returncode == 3


def test_locked_down_instance(emu):
    emu.install("iris", "LOCK", owner="daemon", os_auth="off")
    expr = "##class(Backup.General).IsWDSuspendedExt()"
    r = emu.session("LOCK", expr, user="daemon", input="")
    assert r.returncode not in (0, 3, 5) and "Access Denied" in r.stdout
    assert emu.session("LOCK", expr, user="daemon", input="SuperUser\nSYS\n").returncode == 3
    emu.run(["iris", "force", "LOCK"])


def test_state_usable_by_other_users(emu, authinst):
    """A password login by nobody can freeze and thaw (journal switch, logs, state) although daemon owns the tree."""
    r = emu.session("AUTH", "##class(Backup.General).ExternalFreeze(0)", user="nobody", input="SuperUser\nSYS\n")
    assert r.returncode == 5, r.stdout
    r = emu.session("AUTH", "##class(Backup.General).ExternalThaw(0)", user="nobody", input="SuperUser\nSYS\n")
    assert r.returncode == 5, r.stdout


# ---------------------------------------------------------------------------------------------------------------
# iris merge

def _shared_dir(emu):
    import pathlib
    p = pathlib.Path(emu.path("merge"))
    p.mkdir(mode=0o755, exist_ok=True)
    return p


def test_merge_actions(emu, authinst):
    tmp_path = _shared_dir(emu)
    f = tmp_path / "merge.cpf"
    f.write_text("[Actions]\n"
                 "ModifyService:Name=%Service_Terminal,Enabled=1,AutheEnabled=$$$AuthePassword\n"
                 'CreateUser:Name=svc1,Roles="%Manager,%DB_USER",Enabled=1,PasswordNeverExpires=1,Password=Pw1\n'
                 "CreateUser:Name=svc2,Roles=%Operator,Password=x\n"
                 "DeleteUser:Name=svc2\n"
                 "ModifyUser:Name=svc1,FullName=Service one\n"
                 "[Journal]\nBackupsBeforePurge=5\n")
    r = emu.run(["iris", "merge", "AUTH", str(f)], user="daemon")
    assert r.returncode == 0 and r.stdout.strip() == "IRIS Merge completed successfully"
    own = {"user": "daemon"}
    # OS auth is now off on the service: the owner is prompted, a password login works
    assert emu.session("AUTH", "Write 1", input="", **own).returncode not in (0, 3, 5)
    r = emu.session("AUTH", 'Write ##class(Security.Users).Exists("svc1"),##class(Security.Users).Exists("svc2")',
                    input="svc1\nPw1\n", **own)
    assert r.stdout.endswith("10"), r.stdout
    cpf = open(os.path.join(emu.path("inst", "auth"), "iris.cpf")).read()
    assert "BackupsBeforePurge=5" in cpf and "BackupsBeforePurge=2" not in cpf
    log = open(os.path.join(emu.path("inst", "auth"), "mgr", "messages.log")).read()
    assert "CreateUser svc1 applied" in log
    # merge itself needs a login now (no OS auth on the terminal service)
    f2 = tmp_path / "merge2.cpf"
    f2.write_text("[Actions]\nModifyService:Name=%Service_Terminal,AutheEnabled=$$$AutheOS+$$$AuthePassword\n")
    r = emu.run(["iris", "merge", "AUTH", str(f2)], user="daemon", input="")
    assert r.returncode != 0 and "Access Denied" in r.stdout
    r = emu.run(["iris", "merge", "AUTH", str(f2)], user="daemon", input="svc1\nPw1\n")
    assert r.returncode == 0
    assert emu.session("AUTH", "##class(Backup.General).IsWDSuspendedExt()", **own).returncode == 3


def test_merge_gotchas(emu, authinst):
    tmp_path = _shared_dir(emu)
    lower = tmp_path / "lower.cpf"
    lower.write_text("[actions]\nCreateUser:Name=ghost,Roles=%All\n")
    bad = tmp_path / "bad.cpf"
    bad.write_text("[Actions]\nModifyService:Name=%Service_Terminal,AutheEnabled=$$$AutheSystem\n"
                   "CreateUser:Name=ok2,Roles=%Operator\n")
    for path in (str(lower), str(bad), "/nonexistent/merge.cpf", "relative.cpf"):
        r = emu.run(["iris", "merge", "AUTH", path], user="daemon")
        assert r.returncode == 0 and r.stdout.strip() == "IRIS Merge completed successfully", path
    own = {"user": "daemon"}
    assert emu.session("AUTH", 'Write ##class(Security.Users).Exists("ghost")', **own).stdout == "0"
    assert emu.session("AUTH", 'Write ##class(Security.Users).Exists("ok2")', **own).stdout == "1"
    log = open(os.path.join(emu.path("inst", "auth"), "mgr", "messages.log")).read()
    assert re.search(r"\) 2 \[Config\.CPF\] Merge \[Actions\] failed: ModifyService: unknown macro", log)
    assert "case-sensitive" in log
    assert emu.run(["ccontrol", "merge", "CAUTH", str(bad)]).returncode not in (0,)
