"""testinfra checks of the iris_community scenario (real intersystems/iris-community image; not run on the rig)."""

NAME, INST_DIR, OWNER = "IRIS", "/usr/irissys", "irisowner"


def test_connected_as_owner(host):
    assert host.user().name == OWNER


def test_instance_tree(host):
    assert host.file(INST_DIR).is_directory
    assert host.file(INST_DIR + "/iris.cpf").exists
    params = host.file(INST_DIR + "/parameters.isc")
    assert params.exists
    assert "security_settings.iris_user: %s" % OWNER in params.content_string
    assert host.file(INST_DIR + "/mgr").user == OWNER


def test_qlist_fields(host):
    f = host.check_output("iris qlist %s", NAME).split("^")
    assert f[0] == NAME
    assert f[1].rstrip("/") == INST_DIR
    assert f[3].startswith("running"), f[3]
    assert f[4] == "iris.cpf"
    assert f[8] == "ok"


def test_instance_processes_run_as_owner(host):
    procs = [p for p in host.process.filter(user=OWNER) if p.comm == "irisdb"]
    assert procs, "no irisdb process owned by %s" % OWNER


def test_not_frozen(host):
    r = host.run('iris session %s -U %%SYS "##class(Backup.General).IsWDSuspendedExt()" </dev/null', NAME)
    assert r.rc == 3, (r.rc, r.stdout, r.stderr)
