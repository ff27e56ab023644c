"""Write load and the consistency checker: copies under freeze are consistent, copies without freeze are torn."""
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import read_generation


@pytest.fixture(scope="module")
def vols(emu):
    """An instance whose user databases live on a second "volume" (--database-dir), owner daemon."""
    dbdir = emu.path("vol_data")
    d = emu.install("iris", "CONS", owner="daemon", manager_user="root", databases="USER,APP,HIS",
                    database_dir=dbdir, write_interval_ms=0)
    return "CONS", d, dbdir


def copy(src, dst):
    if os.path.exists(dst):
        shutil.rmtree(dst)
    subprocess.run(["cp", "-r", src, dst], check=True)


def check(emu, *paths):
    return emu.run(["irisemu-dbcheck"] + list(paths))


def test_copy_under_freeze_is_consistent(emu, vols):
    name, d, dbdir = vols
    emu.set_load(name, interval_ms=0, block_pause_ms=2)
    r = emu.session(name, "##class(Backup.General).ExternalFreeze()")
    assert r.returncode == 5
    try:
        for i in range(3):
            copy(os.path.join(d, "mgr"), emu.path("snap_mgr"))
            time.sleep(0.15)  # volumes snapshotted one after another, all while frozen
            copy(dbdir, emu.path("snap_data"))
            r = check(emu, emu.path("snap_mgr"), emu.path("snap_data"))
            assert r.returncode == 0, r.stdout
            m = re.match(r"^consistent: instance CONS generation (\d+) \((\d+) files, (\d+) blocks\)$", r.stdout.strip())
            assert m and m.group(2) == "6", r.stdout
    finally:
        assert emu.session(name, "##class(Backup.General).ExternalThaw()").returncode == 5


def test_sequential_volume_copies_without_freeze_are_torn(emu, vols):
    name, d, dbdir = vols
    emu.set_load(name, interval_ms=0, block_pause_ms=2)
    emu.wait_generation(d, (emu.generation(d) or 0) + 1)
    copy(os.path.join(d, "mgr"), emu.path("torn_mgr"))
    g = emu.generation(d)
    emu.wait_generation(d, g + 2)  # the next "volume" is snapshotted a little later
    copy(dbdir, emu.path("torn_data"))
    r = check(emu, emu.path("torn_mgr"), emu.path("torn_data"))
    assert r.returncode == 1, r.stdout
    assert re.search(r"^TORN: .*IRIS\.DAT: block \d+ has generation \d+, expected \d+$", r.stdout, re.M)


def test_live_cp_r_is_torn(emu, vols):
    """A plain `cp -r` of the live databases (default load settings) is torn with high probability."""
    name, d, dbdir = vols
    emu.set_load(name, interval_ms=100, block_pause_ms=2)  # the defaults
    results = []
    for i in range(20):
        copy(dbdir, emu.path("live_data"))
        results.append(check(emu, emu.path("live_data")).returncode)
        if results.count(1) >= 2:
            break
        time.sleep(0.037)
    assert results.count(1) >= 2, results
    assert set(results) <= {0, 1}


def test_checker_detects_damage(emu, vols):
    name, d, dbdir = vols
    assert emu.session(name, "##class(Backup.General).ExternalFreeze()").returncode == 5
    try:
        copy(dbdir, emu.path("dmg"))
    finally:
        assert emu.session(name, "##class(Backup.General).ExternalThaw()").returncode == 5
    dat = os.path.join(emu.path("dmg"), "app", "IRIS.DAT")
    assert check(emu, emu.path("dmg")).returncode == 0
    assert check(emu, dat).returncode == 0  # a single file works too
    with open(dat, "r+b") as fh:
        fh.seek(3 * 8192 + 500)
        b = fh.read(1)
        fh.seek(3 * 8192 + 500)
        fh.write(bytes([b[0] ^ 0xFF]))
    r = check(emu, emu.path("dmg"))
    assert r.returncode == 1 and "app/IRIS.DAT: block 3: checksum mismatch" in r.stdout
    with open(dat, "r+b") as fh:
        fh.truncate(8192 * 5 + 100)
    r = check(emu, dat)
    assert r.returncode == 1 and "not a multiple of the block size" in r.stdout
    junk = emu.path("dmg", "junk", "IRIS.DAT")
    os.makedirs(os.path.dirname(junk))
    with open(junk, "wb") as fh:
        fh.write(b"\0" * 8192)
    assert "bad magic" in check(emu, junk).stdout
    os.makedirs(emu.path("empty"), exist_ok=True)
    assert check(emu, emu.path("empty")).returncode == 2
    assert check(emu, emu.path("nonexistent")).returncode == 2


def test_load_control(emu, vols):
    name, d, dbdir = vols
    r = emu.run(["irisemu-load", name, "--interval-ms", "30", "--block-pause-ms", "1"], check_rc=0)
    assert "interval_ms=30 block_pause_ms=1 paused=0" in r.stdout and "running=1" in r.stdout
    emu.run(["irisemu-load", name, "--pause"], check_rc=0)
    time.sleep(0.3)
    g = emu.generation(d)
    dat = os.path.join(dbdir, "user", "IRIS.DAT")
    data = open(dat, "rb").read()
    time.sleep(0.4)
    assert emu.generation(d) == g and open(dat, "rb").read() == data
    r = emu.run(["irisemu-load", name, "--status"], check_rc=0)
    assert "paused=1" in r.stdout and "generation=%d" % g in r.stdout
    assert check(emu, os.path.join(d, "mgr"), dbdir).returncode == 0  # idle load: the live files are consistent
    emu.run(["irisemu-load", name, "--resume"], check_rc=0)
    emu.wait_generation(d, g + 2)
    assert read_generation(dat) > g
    assert emu.run(["irisemu-load", "NOSUCH", "--status"]).returncode != 0


def test_write_daemon_runs_as_owner_and_writes_journal(emu, vols):
    name, d, dbdir = vols
    pid = emu.wd_pid(d)
    assert os.stat("/proc/%d" % pid).st_uid == 1  # daemon
    assert os.stat(os.path.join(dbdir, "app", "IRIS.DAT")).st_uid == 1
    jf = emu.state(d)["journal"]["current"]
    s1 = os.path.getsize(jf)
    emu.wait_generation(d, emu.generation(d) + 2)
    assert os.path.getsize(jf) > s1
