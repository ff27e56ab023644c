"""The integrity check API of ^Integrity: $$CheckList^Integrity(outputglobal,dirlist,stopafteranyerror,
listofglolist,maxproc,partialcheck) and Do Display^Integrity(integritout,flags,dirsum) [CONFIRMED: IRIS Data
Integrity Guide, "Integrity Check API"].

What the emulator checks in each database file (its stand-in for IRIS's structural check): every block has the
magic, a valid checksum, its own block number and the file's block count, and every block carries the same
generation (a block from another write cycle is a torn write).  Each problem names the file and the block.

Results are kept in the output global (default ^IRIS.TempIntegrityOutput(+$JOB), Caché ^CacheTempIntegrityOutput
(+$JOB)) of the session: a temporary global, gone when the session ends or when it is killed.
"""
import json
import os
import socket
import time

from . import config, dbfile, instance
from .objectscript import ByRef, ObjError, listitems, to_num


def _arg(args, n):
    if len(args) > n and args[n] is not None:
        a = args[n]
        return a.node.value if isinstance(a, ByRef) else a
    return None


def _output_node(session, glo):
    """The Node of the output global reference ``glo`` (a string such as ``^IRIS.TempIntegrityOutput(+$JOB)`` is
    not evaluated: the default global with the session's $JOB is used when ``glo`` is empty)."""
    name = config.INTEGRITY_OUTPUT_GLOBAL[session.inst.flavour]
    sub = str(os.getpid())
    if glo:
        g = str(glo).lstrip("^")
        if "(" in g:
            name, rest = g.split("(", 1)
            sub = rest.rstrip(")").strip('"')
        else:
            name, sub = g, None
    if not session.is_temp_global(name):
        raise ObjError("PROTECT", "(only temporary globals can hold integrity check output in the emulator)")
    store = session.temp_globals()
    node = store.get(name)
    if node is None:
        from .objectscript import Node
        node = store[name] = Node()
    return node.child(sub) if sub is not None else node


def check_dir(session, d):
    """Check one database directory: dict(dir, file, blocks, generation, errors=[text], problem=text|None)."""
    dat = os.path.join(d, session.inst.fl["dat"])
    res = {"dir": d, "file": dat, "blocks": 0, "generation": None, "errors": [], "problem": None}
    if not os.path.isfile(dat):
        res["problem"] = "no database in %s" % d
        return res
    n, gen, problems = dbfile.integrity_file(dat)
    res["blocks"], res["generation"] = n, gen
    for blk, why in problems:
        if blk is None:
            res["errors"].append("Error: %s: %s" % (dat, why))
        else:
            res["errors"].append("Error: %s: block %d: %s" % (dat, blk, why))
    return res


def checklist(session, args):
    """$$CheckList^Integrity(outputglobal,dirlist,stopafteranyerror,listofglolist,maxproc,partialcheck)."""
    inst = session.inst
    dirlist = _arg(args, 1)
    stop = bool(to_num(_arg(args, 2) or 0))
    if dirlist:
        dirs = [instance.canon_dir(x) for x in listitems(dirlist) if x]
    else:
        dirs = [instance.canon_dir(db["dir"]) for db in inst.databases]
    node = _output_node(session, _arg(args, 0))
    results = []
    for d in dirs:
        r = check_dir(session, d)
        if stop and len(r["errors"]) > 1:
            r["errors"] = r["errors"][:1]
        results.append(r)
    node.value = json.dumps({"time": time.time(), "results": results})
    errors = sum(len(r["errors"]) for r in results)
    problems = [r["problem"] for r in results if r["problem"]]
    inst.log(0 if not (errors or problems) else 1, "Integrity check of %d database(s): %s" % (
        len(dirs), "no errors" if not (errors or problems) else "%d error(s)%s" % (
            errors, (", " + "; ".join(problems)) if problems else "")))
    if problems:
        return "0 ERROR #%d: Integrity check could not check %s" % (config.ERR_INTEGRITY_PROBLEM, "; ".join(problems))
    if errors:
        bad = [r["dir"] for r in results if r["errors"]]
        return "0 ERROR #%d: Integrity check found errors in %s" % (config.ERR_INTEGRITY_ERRORS, ", ".join(bad))
    return "1"


def display(session, args):
    """Do Display^Integrity(integritout,flags,dirsum): 0 all messages, 1 errors and warnings, 2 errors only."""
    node = _output_node(session, _arg(args, 0))
    if node.value is None:
        return
    data = json.loads(node.value)
    flags = int(to_num(_arg(args, 1) or 0))
    dirsum = bool(to_num(_arg(args, 2) or 0))
    w = session.write
    session.newline_if_needed()
    if flags == 0:
        w("%s Database Integrity Check on %s\n" % (
            "Intersystems IRIS" if session.inst.flavour == "iris" else "Cache",
            time.strftime("%m/%d/%Y at %H:%M:%S", time.localtime(data["time"]))))
        w("System: %s  Configuration: %s\n" % (socket.gethostname().split(".")[0], session.inst.name))
    any_error = False
    for r in data["results"]:
        if flags != 2:
            w("\n---Directory %s---\n\n" % r["dir"])
        if r["problem"]:
            any_error = True
            w("Error: %s\n" % r["problem"])
            continue
        for e in r["errors"]:
            any_error = True
            w(e + "\n")
        if flags == 2:
            continue
        if dirsum or flags == 0:
            w("\n---Total for directory %s---\n" % r["dir"])
            w("%10d Total blocks %14dkb (generation %s)\n"
              % (r["blocks"], r["blocks"] * config.BLOCK_SIZE // 1024, r["generation"]))
        w("\n%s\n" % ("No Errors were found in this directory." if not r["errors"]
                      else "Errors were found in this directory."))
    if flags != 2:
        w("\n%s\n" % ("No Errors were found." if not any_error else "Errors were found."))
