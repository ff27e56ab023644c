"""The instance's background "write daemon" (one process per running instance, runs as the instance owner).

Each cycle stamps generation g+1 into every block of every database, with a short pause between blocks, then
records g+1 as the instance's generation and appends the cycle's journal records (one SET per journalled
database, enough to redo the cycle: see journal.py).  Before each cycle it looks at the state:
while a freeze is pending it acknowledges the suspension (the freeze returns only after that) and makes no
database writes; journal records keep being appended.
"""
import os
import signal
import sys
import time
import traceback

from . import dbfile, instance

_stop = False
_signal = None


def _on_term(signum, frame):
    global _stop, _signal
    _stop = True
    _signal = signum


def _sleep(seconds):
    end = time.time() + seconds
    while not _stop:
        left = end - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 0.02))


def run(name):
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    inst = instance.get(name)
    me = os.getpid()
    fds = {}
    try:
        while not _stop:
            with inst.state() as st:
                if st.get("wd_pid") != me:
                    # stopped (forced), or replaced by another start: said in messages.log, like every other end
                    inst.log(0, "irisemu: write daemon pid %d ends: the instance's state names pid %s"
                             % (me, st.get("wd_pid")), "Generic.Event")
                    return 0
                now = time.time()
                st["wd"]["heartbeat"] = now
                fr = st.get("freeze")
                load = st["load"]
                if fr:
                    fr["acked"] = True
                    if st["wd"].get("state") != "suspended":
                        st["wd"]["state"] = "suspended"
                        st["wd"]["suspended_at"] = now
                else:
                    st["wd"]["state"] = "running"
                gen = st["generation"] + 1
                interval = max(0, load.get("interval_ms", 100)) / 1000.0
                pause = max(0, load.get("block_pause_ms", 2)) / 1000.0
                paused = load.get("paused")
            if paused:
                _sleep(min(interval, 0.05) or 0.05)
                continue
            if fr:
                # database writes stop; journal writes continue (a record that changes no database block)
                with inst.state() as st:
                    if st.get("wd_pid") == me:
                        inst.journal_append_current(st, 'SET ^["^^%s"]IRISEMU("frozen")=%d'
                                                    % (inst.sysdb_dir(), int(now)))
                _sleep(max(min(interval, 0.5), 0.02))
                continue
            for db in inst.databases:
                path = inst.db_file(db)
                fd = fds.get(path)
                if fd is None:
                    fd = fds[path] = os.open(path, os.O_RDWR)
                n = os.fstat(fd).st_size // dbfile.config.BLOCK_SIZE or dbfile.config.BLOCKS_PER_DB
                for b in range(n):
                    dbfile.write_block(fd, inst.uid, inst.name, db["name"], gen, b, n, time.time_ns())
                    if pause:
                        time.sleep(pause)
            with inst.state() as st:
                if st.get("wd_pid") == me:
                    st["generation"] = gen
                    # the cycle's records, one write, under the state lock: a journal switch (which holds the
                    # lock) never leaves a cycle split over two files or a record appended to a closed file
                    inst.journal_append_current(st, inst.gen_records(gen))
            _sleep(interval)
        inst.log(0, "irisemu: write daemon pid %d ends on signal %s" % (me, _signal), "Generic.Event")
    except Exception:
        # a write daemon that dies says why in messages.log (its stderr is /dev/null): the instance is down from now
        # on, and a test that then finds it "not running" shows this line
        try:
            inst.log(3, "irisemu: write daemon (pid %d) died: %s" % (
                me, traceback.format_exc(limit=4).strip().replace("\n", " | ")), "Generic.Event")
        except Exception:  # pylint: disable=broad-except  # the log itself may be what fails
            pass
        raise
    finally:
        for fd in fds.values():
            os.close(fd)
    return 0


def main():
    return run(sys.argv[1])


if __name__ == "__main__":
    sys.exit(main())
