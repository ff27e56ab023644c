"""Emulated database files (IRIS.DAT / CACHE.DAT) and the consistency checker `irisemu-dbcheck`.

Every file is BLOCKS_PER_DB blocks of BLOCK_SIZE bytes.  Block layout:

    0    8   magic b"IRISEMU1"
    8    8   generation (u64, little endian)
    16   4   block number
    20   4   number of blocks in the file
    24   8   time of the write (ns since the epoch)
    32   16  instance uid (random, fixed at install)
    48   32  instance name (NUL padded)
    80   32  database name (NUL padded)
    112  ..  payload: sha256(uid, generation, block number) repeated
    -4   4   crc32 of everything before it

The write daemon stamps generation g into every block of every database of the instance, one block at a time with
a short pause between blocks.  A copy is consistent when every block of every file of an instance carries the same
generation and a valid checksum (the generation of IRISTEMP / CACHETEMP, never journalled, is not compared).
"""
import hashlib
import os
import struct
import sys
import zlib

from . import config

MAGIC = b"IRISEMU1"
HDR = struct.Struct("<QIIQ16s32s32s")
HDR_OFF = len(MAGIC)
PAYLOAD_OFF = HDR_OFF + HDR.size
DB_FILE_NAMES = ("IRIS.DAT", "CACHE.DAT")


def make_block(uid, instance, dbname, generation, blockno, nblocks, time_ns):
    head = MAGIC + HDR.pack(generation, blockno, nblocks, time_ns, uid,
                            instance.encode()[:32], dbname.encode()[:32])
    digest = hashlib.sha256(uid + struct.pack("<QI", generation, blockno)).digest()
    plen = config.BLOCK_SIZE - len(head) - 4
    payload = (digest * (plen // len(digest) + 1))[:plen]
    body = head + payload
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def create_db(path, uid, instance, dbname, generation=0, nblocks=None):
    import time
    nblocks = nblocks or config.BLOCKS_PER_DB
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        for b in range(nblocks):
            fh.write(make_block(uid, instance, dbname, generation, b, nblocks, time.time_ns()))
    os.replace(tmp, path)


def write_block(fd, uid, instance, dbname, generation, blockno, nblocks, time_ns):
    os.pwrite(fd, make_block(uid, instance, dbname, generation, blockno, nblocks, time_ns),
              blockno * config.BLOCK_SIZE)


def parse_block(data, index):
    """Return dict or raise ValueError(reason)."""
    if len(data) != config.BLOCK_SIZE:
        raise ValueError("short block (%d bytes)" % len(data))
    if data[:len(MAGIC)] != MAGIC:
        raise ValueError("bad magic (not an emulator database block)")
    crc = struct.unpack("<I", data[-4:])[0]
    if zlib.crc32(data[:-4]) & 0xFFFFFFFF != crc:
        raise ValueError("checksum mismatch (torn block)")
    gen, blockno, nblocks, tns, uid, inst, db = HDR.unpack(data[HDR_OFF:PAYLOAD_OFF])
    if blockno != index:
        raise ValueError("block number %d found at position %d" % (blockno, index))
    return {"generation": gen, "nblocks": nblocks, "time_ns": tns, "uid": uid,
            "instance": inst.rstrip(b"\0").decode(errors="replace"),
            "database": db.rstrip(b"\0").decode(errors="replace")}


def read_generation(path):
    """Generation of block 0 (used by tests and `irisemu-load --status`)."""
    with open(path, "rb") as fh:
        return parse_block(fh.read(config.BLOCK_SIZE), 0)["generation"]


def read_identity(path):
    """(uid, instance, database, nblocks) from block 0 of an existing database file; ValueError when block 0 is
    not a valid block (the file is then damaged or not an emulator database)."""
    with open(path, "rb") as fh:
        data = fh.read(config.BLOCK_SIZE)
    size = os.path.getsize(path)
    if size == 0 or size % config.BLOCK_SIZE:
        raise ValueError("size %d is not a multiple of the block size %d" % (size, config.BLOCK_SIZE))
    b = parse_block(data, 0)
    return b["uid"], b["instance"], b["database"], size // config.BLOCK_SIZE


def validate_file(path):
    """Every block of ``path`` is a valid block (magic, checksum, position, block count): [] or the problems as
    ``(block, reason)`` (block None for the file as a whole).  Generations are not compared."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return [(None, "cannot read: %s" % exc.strerror)]
    if not data or len(data) % config.BLOCK_SIZE:
        return [(None, "size %d is not a multiple of the block size %d" % (len(data), config.BLOCK_SIZE))]
    n = len(data) // config.BLOCK_SIZE
    problems = []
    for i in range(n):
        try:
            b = parse_block(data[i * config.BLOCK_SIZE:(i + 1) * config.BLOCK_SIZE], i)
        except ValueError as exc:
            problems.append((i, str(exc)))
            continue
        if b["nblocks"] != n:
            problems.append((i, "block says the file has %d blocks, found %d" % (b["nblocks"], n)))
    return problems


def integrity_file(path):
    """The emulator's structural integrity check of one database file: invalid blocks (validate_file) and blocks
    whose generation differs from the one most blocks carry (a torn write).  Returns (nblocks, generation, problems)
    with problems as ``(block, reason)``."""
    problems = validate_file(path)
    if problems and problems[0][0] is None:
        return 0, None, problems
    with open(path, "rb") as fh:
        data = fh.read()
    n = len(data) // config.BLOCK_SIZE
    bad = {b for b, _msg in problems}
    gens = {}
    for i in range(n):
        if i in bad:
            continue
        gens[i] = parse_block(data[i * config.BLOCK_SIZE:(i + 1) * config.BLOCK_SIZE], i)["generation"]
    counts = {}
    for g in gens.values():
        counts[g] = counts.get(g, 0) + 1
    # the file's generation: the one most blocks carry (the newest on a tie); the others are out of step
    newest = max(counts, key=lambda g: (counts[g], g)) if counts else None
    for i, g in sorted(gens.items()):
        if g != newest:
            problems.append((i, "generation %d, the other blocks have %s (torn write)" % (g, newest)))
    problems.sort(key=lambda p: (-1 if p[0] is None else p[0]))
    return n, newest, problems


def rewrite_generation(path, generation, time_ns=None):
    """Redo a write cycle on ``path``: every block gets ``generation``, with the file's own identity (instance uid,
    instance name, database name from block 0), i.e. exactly the blocks the source instance wrote in that cycle."""
    import time
    uid, inst, db, n = read_identity(path)
    fd = os.open(path, os.O_RDWR)
    try:
        for b in range(n):
            write_block(fd, uid, inst, db, generation, b, n, time_ns or time.time_ns())
    finally:
        os.close(fd)


def find_db_files(paths):
    found = []
    for p in paths:
        if os.path.isdir(p):
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames.sort()
                for f in sorted(filenames):
                    if f in DB_FILE_NAMES:
                        found.append(os.path.join(dirpath, f))
        elif os.path.isfile(p):
            found.append(p)
        else:
            raise FileNotFoundError(p)
    return found


def check(paths):
    """Return (rc, lines).  rc 0 consistent, 1 torn/corrupt, 2 nothing to check."""
    try:
        files = find_db_files(paths)
    except FileNotFoundError as exc:
        return 2, ["irisemu-dbcheck: %s: no such file or directory" % exc]
    if not files:
        return 2, ["irisemu-dbcheck: no database files (%s) under %s" % ("/".join(DB_FILE_NAMES), " ".join(paths))]
    problems = []
    per_uid = {}  # uid -> {"instance":..., "blocks": [(file, blockno, gen)]}
    for f in files:
        with open(f, "rb") as fh:
            data = fh.read()
        if not data or len(data) % config.BLOCK_SIZE:
            problems.append("%s: size %d is not a multiple of the block size %d" % (f, len(data), config.BLOCK_SIZE))
            continue
        n = len(data) // config.BLOCK_SIZE
        for i in range(n):
            try:
                b = parse_block(data[i * config.BLOCK_SIZE:(i + 1) * config.BLOCK_SIZE], i)
            except ValueError as exc:
                problems.append("%s: block %d: %s" % (f, i, exc))
                continue
            if b["nblocks"] != n:
                problems.append("%s: block %d says the file has %d blocks, found %d" % (f, i, b["nblocks"], n))
            ent = per_uid.setdefault(b["uid"], {"instance": b["instance"], "blocks": []})
            ent["blocks"].append((f, i, b["generation"], b["database"]))
    lines = []
    for uid, ent in per_uid.items():
        gens = {}
        only_temp = all(blk[3] in config.TEMP_DATABASES for blk in ent["blocks"])
        for f, i, g, db in ent["blocks"]:
            if db in config.TEMP_DATABASES and not only_temp:
                continue  # never journalled: a journal restore does not bring it forward (still checked above)
            gens.setdefault(g, []).append((f, i))
        newest = max(gens)
        if len(gens) == 1:
            nfiles = len({b[0] for b in ent["blocks"]})
            lines.append("consistent: instance %s generation %d (%d files, %d blocks)"
                         % (ent["instance"], newest, nfiles, len(ent["blocks"])))
        else:
            out = sorted((f, i, g) for g, fl in gens.items() if g != newest for f, i in fl)
            problems.append("instance %s: %d of %d blocks out of step with generation %d (generations found: %s)"
                            % (ent["instance"], len(out), len(ent["blocks"]), newest,
                               ", ".join(str(g) for g in sorted(gens))))
            for f, i, g in out[:10]:
                problems.append("%s: block %d has generation %d, expected %d" % (f, i, g, newest))
            if len(out) > 10:
                problems.append("... %d more blocks out of step" % (len(out) - 10))
    if problems:
        return 1, ["TORN: " + p for p in problems] + lines
    return 0, lines


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: irisemu-dbcheck PATH...   (database files or directories holding IRIS.DAT/CACHE.DAT)")
        return 2 if not argv else 0
    rc, lines = check(argv)
    for line in lines:
        print(line)
    return rc
