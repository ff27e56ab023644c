"""Security.Roles and the authorization model: roles -> privileges, what Backup.General / Security.* / the login need.

The required privileges are the UNCONFIRMED constants in irisemu/config.py; these tests read them from there, so
they keep testing the rule (not a copy of it) when a constant is corrected.
"""
import json
import os

import pytest

from conftest import FLAV
from irisemu import config

SYSDB = {"iris": "IRISSYS", "cache": "CACHESYS"}
IS_SUSPENDED = "##class(Backup.General).IsWDSuspendedExt()"
FREEZE = "##class(Backup.General).ExternalFreeze()"
THAW = "##class(Backup.General).ExternalThaw()"
SET_HISTORY = '##class(Backup.General).ExternalSetHistory("","irisemu roles test")'
PW = "Rol3s-Test-pw"


def prog(flavour):
    return FLAV[flavour]["session"]


def needed(flavour):
    """Everything a backup user needs: the login and Backup.General privileges, expanded for the flavour."""
    return [p.replace("{sysdb}", SYSDB[flavour]) for p in config.LOGIN_PRIVILEGES + config.BACKUP_GENERAL_PRIVILEGES]


@pytest.fixture(scope="module")
def rinst(emu):
    """owner daemon; quick write cycles so that freezes are acknowledged fast."""
    emu.install("iris", "ROLEI", owner="daemon", write_interval_ms=20)
    emu.install("cache", "ROLEC", owner="daemon", write_interval_ms=20)
    emu.set_load("ROLEI")
    emu.set_load("ROLEC")
    return {"iris": "ROLEI", "cache": "ROLEC"}


def admin(emu, name, flavour, script):
    """Script as the owner (an IRIS user with %All, OS authentication)."""
    r = emu.session(name, prog=prog(flavour), user="daemon", input=script + "\nHalt\n")
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def as_user(emu, name, flavour, user, expr):
    """Command-mode session as OS user nobody, logging in as ``user`` with the password on stdin."""
    return emu.session(name, expr, prog=prog(flavour), user="nobody", input="%s\n%s\n" % (user, PW))


def security_json(emu, name):
    with open(os.path.join(emu.path("inst", name.lower()), "mgr", "irisemu", "security.json")) as fh:
        return json.load(fh)


def make_user(emu, name, flavour, user, roles):
    out = admin(emu, name, flavour, 'Write "U=",##class(Security.Users).Create("%s","%s","%s"),!'
                % (user, roles, PW))
    assert "U=1" in out, out


def drop(emu, name, flavour, users=(), roles=()):
    lines = ['Do ##class(Security.Users).Delete("%s")' % u for u in users]
    lines += ['Do ##class(Security.Roles).Delete("%s")' % r for r in roles]
    admin(emu, name, flavour, "\n".join(lines))


def frozen(emu, name, flavour):
    return emu.session(name, IS_SUSPENDED, prog=prog(flavour), user="daemon").returncode == 5


# ---------------------------------------------------------------------------------------------------------------
# Security.Roles

def test_roles_crud(emu, rinst, flavour):
    name = rinst[flavour]
    sysdb = SYSDB[flavour]
    out = admin(emu, name, flavour, "\n".join([
        'Write "E0=",##class(Security.Roles).Exists("BkRole"),!',
        'Write "C1=",##class(Security.Roles).Create("BkRole","backup","%%Admin_Operate:U,%%DB_%s:wr","")' % sysdb,
        'Write !,"E1=",##class(Security.Roles).Exists("bkrole"),!',
        'Write "C2=",##class(Security.Roles).Create("BKROLE","again","%Admin_Operate:U")',
        'Kill p Write !,"G=",##class(Security.Roles).Get("bkROLE",.p),"|",p("Name"),"|",p("Description"),"|",'
        'p("Resources"),"|",p("GrantedRoles"),!',
        'Kill p Set p("Resources")="%%DB_%s:RW,%%Service_Terminal:U,%%Admin_Operate:U",p("Description")="b2"' % sysdb,
        'Write "M=",##class(Security.Roles).Modify("BkRole",.p),!',
        'Kill p Do ##class(Security.Roles).Get("BkRole",.p) Write "G2=",p("Description"),"|",p("Resources"),!',
        'Kill p Set p("Resources")="%Admin_Operate:U",p("GrantedRoles")="%Operator"',
        'Write "C3=",##class(Security.Roles).Create("BkByRef",.p),!',
        'Kill p Do ##class(Security.Roles).Get("BkByRef",.p) Write "G3=",p("Resources"),"|",p("GrantedRoles"),!',
        'Write "D=",##class(Security.Roles).Delete("BkRole"),!',
        'Write "E2=",##class(Security.Roles).Exists("BkRole"),!',
        'Write "D2=",##class(Security.Roles).Delete("BkRole"),!',
        'Kill p Write "G4=",##class(Security.Roles).Get("BkRole",.p),!',
        'Kill p Set p("Resources")="" Write "M2=",##class(Security.Roles).Modify("BkRole",.p),!',
        'Write "D3=",##class(Security.Roles).Delete("BkByRef"),!',
    ]))
    assert "E0=0" in out and "C1=1" in out and "E1=1" in out
    assert "C2=0 ERROR #884: Role BkRole already exists" in out
    # name as created, permissions in canonical R W U order
    assert "G=1|BkRole|backup|%%Admin_Operate:U,%%DB_%s:RW|\n" % sysdb in out
    assert "M=1" in out and "G2=b2|%%DB_%s:RW,%%Service_Terminal:U,%%Admin_Operate:U" % sysdb in out
    assert "C3=1" in out and "G3=%Admin_Operate:U|%Operator" in out
    assert "D=1" in out and "E2=0" in out
    assert "D2=0 ERROR #883: Role BkRole does not exist" in out
    assert "G4=0 ERROR #883" in out and "M2=0 ERROR #883" in out and "D3=1" in out
    log = open(os.path.join(emu.path("inst", name.lower()), "mgr", FLAV[flavour]["log"])).read()
    assert "role BkRole created by daemon" in log and "role BkRole deleted by daemon" in log


@pytest.mark.parametrize("call,err", [
    ('Create("Bad,Name","","")', "#887: Invalid role name Bad,Name"),
    ('Create("","","")', "#887"),
    ('Create("BadRes","","%NoSuchResource:U")', "#892: Resource %NoSuchResource does not exist"),
    ('Create("BadPerm","","%Admin_Operate:X")', "#897: Invalid permission X for resource name %Admin_Operate"),
    ('Create("BadPerm2","","%Admin_Operate")', "#897"),
    ('Create("BadGrant","","","%NoSuchRole")', "#883: Role %NoSuchRole does not exist"),
    ('Delete("%Manager")', "#880: Cannot delete role %Manager"),
])
def test_roles_errors(emu, rinst, call, err):
    out = admin(emu, rinst["iris"], "iris", 'Write "R=",##class(Security.Roles).%s,!' % call)
    assert "R=0 ERROR " + err in out, out
    assert "BadRes" not in security_json(emu, rinst["iris"])["roles"]


def test_all_cannot_be_modified_and_predefined_roles(emu, rinst, flavour):
    name = rinst[flavour]
    out = admin(emu, name, flavour, 'Kill p Set p("Description")="x" '
                                    'Write "M=",##class(Security.Roles).Modify("%All",.p),!\n'
                                    'Kill p Do ##class(Security.Roles).Get("%DB_USER",.p) Write "U=",p("Resources"),!')
    assert "M=0 ERROR #886: Cannot modify role %All" in out
    assert "U=%DB_USER:RW" in out
    roles = security_json(emu, name)["roles"]
    for r in ("%All", "%Manager", "%Operator", "%DB_" + SYSDB[flavour]):
        assert r in roles and roles[r]["Predefined"] == 1


def test_roles_need_privileges_except_exists(emu, rinst, flavour):
    name = rinst[flavour]
    admin(emu, name, flavour, 'Do ##class(Security.Roles).Create("BkOnly","","%s","")' % ",".join(needed(flavour)))
    make_user(emu, name, flavour, "bkonly", "BkOnly")
    try:
        assert as_user(emu, name, flavour, "bkonly", 'Write ##class(Security.Roles).Exists("BkOnly")').stdout \
            .endswith("1")
        for expr in ('Do ##class(Security.Roles).Get("BkOnly",.p)',
                     'Do ##class(Security.Roles).Create("Mine","","%Admin_Secure:U")',
                     'Do ##class(Security.Users).Create("x","%All","y")'):
            r = as_user(emu, name, flavour, "bkonly", expr)
            assert r.returncode == config.RC_ERROR and "<PROTECT>" in r.stdout and "%Admin_Secure:U" in r.stdout, \
                (expr, r.stdout)
        assert "Mine" not in security_json(emu, name)["roles"] and "x" not in security_json(emu, name)["users"]
    finally:
        drop(emu, name, flavour, users=["bkonly"], roles=["BkOnly"])


# ---------------------------------------------------------------------------------------------------------------
# Authorization of Backup.General and of the login

def test_custom_role_with_exactly_the_needed_privileges(emu, rinst, flavour):
    """Login, IsWDSuspendedExt, a real freeze/thaw and ExternalSetHistory with a role holding only what is needed."""
    name = rinst[flavour]
    admin(emu, name, flavour, 'Do ##class(Security.Roles).Create("BkLeast","","%s","")' % ",".join(needed(flavour)))
    make_user(emu, name, flavour, "bkleast", "BkLeast")
    try:
        assert as_user(emu, name, flavour, "bkleast", IS_SUSPENDED).returncode == config.RC_EXT_FAILURE
        r = as_user(emu, name, flavour, "bkleast", FREEZE)
        assert r.returncode == config.RC_EXT_SUCCESS, r.stdout
        assert frozen(emu, name, flavour)
        assert as_user(emu, name, flavour, "bkleast", IS_SUSPENDED).returncode == config.RC_EXT_SUCCESS
        assert as_user(emu, name, flavour, "bkleast", THAW).returncode == config.RC_EXT_SUCCESS
        assert not frozen(emu, name, flavour)
        assert as_user(emu, name, flavour, "bkleast", SET_HISTORY).returncode == config.RC_EXT_SUCCESS
        r = as_user(emu, name, flavour, "bkleast", 'Write $SYSTEM.Security.Check("%Admin_Operate","USE"),'
                                                   '$SYSTEM.Security.Check("%Admin_Secure","U")')
        assert r.stdout.endswith("10")
    finally:
        emu.session(name, THAW, prog=prog(flavour), user="daemon")
        drop(emu, name, flavour, users=["bkleast"], roles=["BkLeast"])


@pytest.mark.parametrize("which", range(len(config.LOGIN_PRIVILEGES) + len(config.BACKUP_GENERAL_PRIVILEGES)))
def test_role_lacking_one_privilege_is_refused(emu, rinst, flavour, which):
    """Drop each needed privilege in turn: the login is refused, or every Backup.General method fails with
    <PROTECT> naming the missing privilege; nothing is frozen and no backup is recorded."""
    name = rinst[flavour]
    privs = needed(flavour)
    lacking = privs[which]
    res, dummy, perms = lacking.partition(":")
    rest = [p for p in privs if p != lacking]
    if len(perms) > 1:  # keep part of it: R without W still lacks RW
        rest.append("%s:%s" % (res, perms[0]))
    admin(emu, name, flavour, 'Do ##class(Security.Roles).Create("BkLess","","%s","")' % ",".join(rest))
    make_user(emu, name, flavour, "bkless", "BkLess")
    hist = os.path.join(emu.path("inst", name.lower()), "mgr", "irisemu", "buhistory.json")
    before = open(hist).read()
    log = os.path.join(emu.path("inst", name.lower()), "mgr", FLAV[flavour]["log"])
    try:
        for expr in (IS_SUSPENDED, FREEZE, THAW, SET_HISTORY):
            r = as_user(emu, name, flavour, "bkless", expr)
            assert r.returncode not in (0, config.RC_EXT_SUCCESS, config.RC_EXT_FAILURE), (expr, r.stdout)
            if which < len(config.LOGIN_PRIVILEGES):
                assert "Access Denied" in r.stdout
                assert "Login failure: user bkless lacks %s" % lacking in open(log).read()
            else:
                assert "<PROTECT>" in r.stdout and "lacks %s" % lacking in r.stdout, r.stdout
                assert "Backup.General" in r.stdout
            assert not frozen(emu, name, flavour)
        assert open(hist).read() == before
    finally:
        drop(emu, name, flavour, users=["bkless"], roles=["BkLess"])


@pytest.mark.parametrize("roles", ["%Manager", "%All", "%Operator,BkPart"])
def test_predefined_and_combined_roles_keep_working(emu, rinst, flavour, roles):
    """%Manager and %All can freeze and thaw; %Operator alone cannot, but together with a role granting the rest
    (privileges are the union over the user's roles) it can."""
    name = rinst[flavour]
    admin(emu, name, flavour, 'Do ##class(Security.Roles).Create("BkPart","","%%DB_%s:RW","")' % SYSDB[flavour])
    make_user(emu, name, flavour, "bkpre", roles)
    try:
        assert as_user(emu, name, flavour, "bkpre", FREEZE).returncode == config.RC_EXT_SUCCESS
        assert as_user(emu, name, flavour, "bkpre", THAW).returncode == config.RC_EXT_SUCCESS
    finally:
        emu.session(name, THAW, prog=prog(flavour), user="daemon")
        drop(emu, name, flavour, users=["bkpre"], roles=["BkPart"])
    make_user(emu, name, flavour, "bkop", "%Operator")
    try:
        r = as_user(emu, name, flavour, "bkop", FREEZE)
        assert r.returncode == config.RC_ERROR and "<PROTECT>" in r.stdout and "%DB_" + SYSDB[flavour] in r.stdout
        assert not frozen(emu, name, flavour)
    finally:
        drop(emu, name, flavour, users=["bkop"])


def test_granted_roles_and_role_deletion(emu, rinst, flavour):
    """A role granted to another role passes its privileges on; deleting a role takes it away from its members."""
    name = rinst[flavour]
    admin(emu, name, flavour, "\n".join([
        'Do ##class(Security.Roles).Create("BkInner","","%s","")' % ",".join(needed(flavour)),
        'Do ##class(Security.Roles).Create("BkOuter","","","BkInner")']))
    make_user(emu, name, flavour, "bkouter", "BkOuter")
    try:
        assert as_user(emu, name, flavour, "bkouter", IS_SUSPENDED).returncode == config.RC_EXT_FAILURE
        assert "=1" in admin(emu, name, flavour, 'Write "D=",##class(Security.Roles).Delete("BkInner"),!')
        sec = security_json(emu, name)
        assert sec["roles"]["BkOuter"]["GrantedRoles"] == ""
        r = as_user(emu, name, flavour, "bkouter", IS_SUSPENDED)
        assert r.returncode == config.RC_ACCESS_DENIED and "Access Denied" in r.stdout
        admin(emu, name, flavour, 'Do ##class(Security.Roles).Delete("BkOuter")')
        assert security_json(emu, name)["users"]["bkouter"]["Roles"] == ""
    finally:
        drop(emu, name, flavour, users=["bkouter"], roles=["BkOuter", "BkInner"])


def test_old_security_json_without_roles_gets_the_predefined_ones(emu, rinst):
    """security.json written before roles were emulated: the predefined roles are added on first use."""
    name = rinst["iris"]
    path = os.path.join(emu.path("inst", name.lower()), "mgr", "irisemu", "security.json")
    sec = security_json(emu, name)
    del sec["roles"]
    with open(path, "w") as fh:
        json.dump(sec, fh)
    assert emu.session(name, IS_SUSPENDED, user="daemon").returncode == config.RC_EXT_FAILURE
    assert "%Manager" in security_json(emu, name)["roles"]
