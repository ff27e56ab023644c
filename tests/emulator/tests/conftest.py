"""Fixtures for the emulator's own tests.

Each test module gets a fresh root (IRISEMU_ROOT) under /tmp, world-traversable so that `runuser -u nobody` can run
the installed commands.  Nothing is installed outside that root; no OS users are created (owners are root/daemon).
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EMU = os.path.dirname(HERE)
INSTALL = os.path.join(EMU, "install.py")
sys.path.insert(0, EMU)

from irisemu import dbfile, instance, util  # noqa: E402


class Emu(object):
    def __init__(self, root):
        self.root = root
        self.env = dict(os.environ)
        self.env.update({"IRISEMU_ROOT": root,
                         "PATH": os.path.join(root, "usr", "bin") + ":" + os.environ.get("PATH", "/usr/bin:/bin")})
        for k in ("IRISEMU_REGISTRY", "IRISEMU_BINDIR", "IRISEMU_CODEDIR", "ISC_CPF_MERGE_FILE"):
            self.env.pop(k, None)

    def path(self, *p):
        return os.path.join(self.root, *p)

    def install(self, flavour, name, owner="root", start=True, **opts):
        d = opts.pop("dir", None) or self.path("inst", name.lower())
        argv = [sys.executable, INSTALL, "--flavour", flavour, "--instance", name, "--dir", d, "--owner", owner]
        for k, v in opts.items():
            argv += ["--" + k.replace("_", "-"), str(v)]
        if start:
            argv.append("--start")
        r = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        return d

    def run(self, argv, input=None, user=None, timeout=30, check_rc=None):
        if isinstance(argv, str):
            argv = [argv]
        if user:
            argv = ["runuser", "-u", user, "--", "env", "PATH=" + self.env["PATH"]] + list(argv)
        r = subprocess.run(argv, env=self.env, input=input, capture_output=True, text=True, timeout=timeout,
                           cwd="/", check=False)
        if check_rc is not None:
            assert r.returncode == check_rc, "rc=%s\nstdout:\n%s\nstderr:\n%s" % (r.returncode, r.stdout, r.stderr)
        return r

    def session(self, inst, expr=None, ns="%SYS", prog=("iris", "session"), **kw):
        argv = list(prog) + [inst, "-U", ns]
        if expr is not None:
            argv.append(expr)
        return self.run(argv, **kw)

    def state(self, inst_dir):
        emudir = os.path.join(inst_dir, "mgr", "irisemu")
        with util.locked(os.path.join(emudir, "state.lock"), exclusive=False):
            return util.read_json(os.path.join(emudir, "state.json"))

    def wd_pid(self, inst_dir):
        return self.state(inst_dir).get("wd_pid")

    def generation(self, inst_dir):
        return self.state(inst_dir).get("generation")

    def wait_generation(self, inst_dir, at_least, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            if (self.generation(inst_dir) or 0) >= at_least:
                return
            time.sleep(0.05)
        raise AssertionError("generation did not reach %d" % at_least)

    def instance(self, name):
        return instance.Instance(util.read_json(self.path("usr", "local", "etc", "irisemu", name.upper() + ".json")))

    def set_load(self, name, interval_ms=50, block_pause_ms=0, paused=False):
        with self.instance(name).state() as st:
            st["load"] = {"interval_ms": interval_ms, "block_pause_ms": block_pause_ms, "paused": paused}

    def reset(self, name, **load):
        """Back to 'not frozen' without going through the CLI (fast test teardown)."""
        inst = self.instance(name)
        with inst.state() as st:
            st["freeze"] = None
            st["freeze_ended"] = None
        self.set_load(name, **load)

    def shutdown(self):
        reg = self.path("usr", "local", "etc", "irisemu")
        if not os.path.isdir(reg):
            return
        for f in os.listdir(reg):
            ent = util.read_json(os.path.join(reg, f))
            if not ent:
                continue
            try:
                st = self.state(ent["dir"]) or {}
            except (OSError, ValueError):
                continue
            pid = st.get("wd_pid")
            if pid and util.pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _make_root():
    root = tempfile.mkdtemp(prefix="irisemu-test-")
    os.chmod(root, 0o755)
    return root


@pytest.fixture(scope="module")
def emu():
    root = _make_root()
    e = Emu(root)
    try:
        yield e
    finally:
        e.shutdown()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def both(emu):
    """An IRIS instance (owner root) and a Caché instance (owner daemon, manager root), both running."""
    iris_dir = emu.install("iris", "IRIS", owner="root", databases="USER,APP", write_interval_ms=20)
    cache_dir = emu.install("cache", "CACHE", owner="daemon", manager_user="root", write_interval_ms=20)
    # quick cycles (no pause between blocks) keep freezes fast; the consistency tests set their own load
    emu.set_load("IRIS")
    emu.set_load("CACHE")
    return {"iris": ("IRIS", iris_dir), "cache": ("CACHE", cache_dir)}


FLAV = {
    "iris": {"control": "iris", "session": ("iris", "session"), "session_bin": "irissession", "stat": "irisstat",
             "log": "messages.log", "cpf": "iris.cpf", "dat": "IRIS.DAT"},
    "cache": {"control": "ccontrol", "session": ("csession",), "session_bin": "csession", "stat": "cstat",
              "log": "cconsole.log", "cpf": "cache.cpf", "dat": "CACHE.DAT"},
}


@pytest.fixture(params=["iris", "cache"])
def flavour(request):
    return request.param


def dbcheck(emu, *paths):
    return emu.run(["irisemu-dbcheck"] + list(paths))


def read_generation(path):
    return dbfile.read_generation(path)
