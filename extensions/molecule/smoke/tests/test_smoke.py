"""testinfra checks of the smoke scenario: each container carries the emulated instances IRIS and CACHE.

Run by `molecule verify -s smoke` (molecule passes the inventory and the docker connection).
"""
import pytest

INSTANCES = [
    # name, control command, session argv, install dir, owner, cpf, console log, product field, parameters key
    ("IRIS", "iris", ["iris", "session", "IRIS"], "/usr/irissys", "irisowner", "iris.cpf", "messages.log",
     "IRIS", "iris_user"),
    ("CACHE", "ccontrol", ["csession", "CACHE"], "/usr/cachesys", "cacheusr", "cache.cpf", "cconsole.log",
     "", "cache_user"),
]
IDS = [i[0] for i in INSTANCES]


def qlist_fields(host, control, name):
    out = host.check_output("%s qlist %s", control, name)
    lines = out.splitlines()
    assert len(lines) == 1, "qlist %s printed %r" % (name, out)
    return lines[0].split("^")


def test_systemd_is_pid1_and_booted(host):
    assert host.process.get(pid=1).comm == "systemd"
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state == "running", "systemctl is-system-running: %s; failed units: %s" % (
        state, host.run("systemctl --failed --no-legend --plain").stdout)
    assert host.service("irisemu-instances.service").is_running


def test_no_network_but_own_name_resolves(host):
    links = host.check_output("ls /sys/class/net").split()
    assert links == ["lo"], links
    name = host.check_output("hostname")
    assert host.run("getent hosts %s", name).rc == 0
    assert host.run("sudo -n true").rc == 0  # sudo works (it resolves its own host name)


@pytest.mark.parametrize("name,control,session,inst_dir,owner,cpf,log,product,ownerkey", INSTANCES, ids=IDS)
def test_instance_tree(host, name, control, session, inst_dir, owner, cpf, log, product, ownerkey):
    d = host.file(inst_dir)
    assert d.is_directory and d.user == owner
    for rel in (cpf, "parameters.isc", "mgr", "mgr/" + log, "mgr/journal", "bin"):
        f = host.file("%s/%s" % (inst_dir, rel))
        assert f.exists, "%s/%s missing" % (inst_dir, rel)
        assert f.user == owner, "%s/%s belongs to %s" % (inst_dir, rel, f.user)
    params = host.file(inst_dir + "/parameters.isc").content_string
    assert "security_settings.%s: %s" % (ownerkey, owner) in params
    assert "security_settings.manager_user: %s" % owner in params
    assert host.file("%s/%s" % (inst_dir, cpf)).contains("^USER=")
    # the instance writes its console log (startup at boot)
    assert host.file("%s/mgr/%s" % (inst_dir, log)).contains("Startup")
    # at least one journal file was opened at startup
    journals = host.check_output("ls %s/mgr/journal", inst_dir).split()
    assert journals, "no journal file in %s/mgr/journal" % inst_dir


@pytest.mark.parametrize("name,control,session,inst_dir,owner,cpf,log,product,ownerkey", INSTANCES, ids=IDS)
def test_qlist_fields(host, name, control, session, inst_dir, owner, cpf, log, product, ownerkey):
    f = qlist_fields(host, control, name)
    assert len(f) >= 9, f
    assert f[0] == name
    assert f[1].rstrip("/") == inst_dir
    assert f[3].startswith("running, since "), f[3]
    assert f[4] == cpf
    assert f[5].isdigit() and f[6].isdigit()
    assert f[8] == "ok"
    if len(f) > 9:
        assert f[9] == product
    if len(f) > 11:
        assert f[10] == "" and f[11] == ""  # not mirrored


@pytest.mark.parametrize("name,control,session,inst_dir,owner,cpf,log,product,ownerkey", INSTANCES, ids=IDS)
def test_write_daemon_runs_as_owner(host, name, control, session, inst_dir, owner, cpf, log, product, ownerkey):
    procs = [p for p in host.process.filter(user=owner) if ("irisemu-wd %s" % name) in p.args]
    assert len(procs) == 1, "write daemon of %s as %s: %r" % (name, owner, [p.args for p in procs])


@pytest.mark.parametrize("name,control,session,inst_dir,owner,cpf,log,product,ownerkey", INSTANCES, ids=IDS)
def test_not_frozen_and_root_needs_credentials(host, name, control, session, inst_dir, owner, cpf, log, product,
                                               ownerkey):
    expr = '"##class(Backup.General).IsWDSuspendedExt()"'
    cmd = " ".join(session + ["-U", "%SYS", expr])
    as_owner = host.run("sudo -n -u %s %s </dev/null" % (owner, cmd))
    assert as_owner.rc == 3, (as_owner.rc, as_owner.stdout, as_owner.stderr)
    # root is no IRIS user: OS authentication must not let it in without credentials
    as_root = host.run(cmd + " </dev/null")
    assert as_root.rc not in (3, 5), (as_root.rc, as_root.stdout, as_root.stderr)
