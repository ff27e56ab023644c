"""Paths, flavour tables and every constant that encodes a choice (UNCONFIRMED facts live here, one place each).

TEST-ONLY emulator of the InterSystems IRIS / Caché command line.  Never shipped with the collection.
"""
import os

# ---------------------------------------------------------------------------------------------------------------
# Paths.  Everything can be moved with IRISEMU_ROOT (a prefix, default "/") or with the individual variables.
# The wrappers written by install.py bake the values used at install time in as defaults (environment still wins).


def root():
    return os.environ.get("IRISEMU_ROOT") or "/"


def _under_root(*parts):
    return os.path.join(root(), *parts)


def registry_dir():
    """One JSON file per instance: <registry>/<NAME>.json (the emulator's equivalent of iris.reg / cache.reg)."""
    return os.environ.get("IRISEMU_REGISTRY") or _under_root("usr", "local", "etc", "irisemu")


def bin_dir():
    return os.environ.get("IRISEMU_BINDIR") or _under_root("usr", "bin")


def code_dir():
    return os.environ.get("IRISEMU_CODEDIR") or _under_root("opt", "irisemu")


# ---------------------------------------------------------------------------------------------------------------
# Flavour tables

FLAVOURS = {
    "iris": {
        "control": "iris",
        "session": "irissession",
        "stat": "irisstat",
        "cpf": "iris.cpf",
        "log": "messages.log",
        "dat": "IRIS.DAT",
        "product": "IRIS",                     # qlist field 10
        "product_long": "InterSystems IRIS",   # iris list "product:"
        "sysdb": "IRISSYS",
        "libdb": "IRISLIB",
        "tempdb": "IRISTEMP",
        "owner_keys": ("iris_user", "iris_group"),
        "version": "2024.1.0.267.2",
        "superserver": 1972,
        "webserver": 52773,
        "jdbc": 53773,
        "journal_banner": "INTERSYSTEMS IRIS JOURNALING SYSTEM MESSAGE",
        "merge_ok": "IRIS Merge completed successfully",
        "trailing_slash": False,
    },
    "cache": {
        "control": "ccontrol",
        "session": "csession",
        "stat": "cstat",
        "cpf": "cache.cpf",
        "log": "cconsole.log",
        "dat": "CACHE.DAT",
        "product": "",
        "product_long": "",
        "sysdb": "CACHESYS",
        "libdb": "CACHELIB",
        "tempdb": "CACHETEMP",
        "owner_keys": ("cache_user", "cache_group"),
        "version": "2018.1.5.659.0",
        "superserver": 1972,
        "webserver": 57772,
        "jdbc": 62972,
        # UNCONFIRMED: the Caché banner of the journal switch message.
        "journal_banner": "INTERSYSTEMS CACHE JOURNALING SYSTEM MESSAGE",
        "merge_ok": None,  # Caché has no CPF merge
        "trailing_slash": True,
    },
}

# ---------------------------------------------------------------------------------------------------------------
# Exit codes

RC_EXT_SUCCESS = 5   # ExternalFreeze/ExternalThaw success, IsWDSuspendedExt "suspended"   [CONFIRMED]
RC_EXT_FAILURE = 3   # failure / not suspended                                                [CONFIRMED]
RC_CMDLINE_OK = 0    # `iris freeze` / `iris thaw` success   UNCONFIRMED ("binary success/failure")
RC_CMDLINE_FAIL = 1  # `iris freeze` / `iris thaw` failure   UNCONFIRMED
RC_ACCESS_DENIED = 1  # login refused ("Access Denied")       UNCONFIRMED exact number (only "not 5/3" matters)
RC_ERROR = 1          # ObjectScript error (<SYNTAX> ...), unknown namespace, instance down   UNCONFIRMED
RC_USAGE = 2          # emulator-only: bad command line

# ---------------------------------------------------------------------------------------------------------------
# Backup behaviour choices

EFT_DEFAULT = 600        # ExternalFreezeTimeOut effective default (s)                       [CONFIRMED]
EFT_MAX = 1200           # larger values are capped (secondary source only)                  UNCONFIRMED
FREEZE_ACK_MAX_WAIT = 60  # s the freeze waits for the write daemon to finish its cycle (emulator choice)
THAW_WHEN_NOT_FROZEN_RC = RC_EXT_SUCCESS   # UNCONFIRMED: a thaw of a thawed system is harmless and reports 5
THAW_AFTER_AUTO_RESUME_RC = RC_EXT_FAILURE  # UNCONFIRMED: thaw after WDSuspendLimit / irisstat -W reports 3
FREEZE_WHEN_FROZEN_RC = RC_EXT_FAILURE     # UNCONFIRMED: second freeze fails
SETHISTORY_HALTS = True   # UNCONFIRMED: ExternalSetHistory from an OS command exits 5 (recorded) / 3 (failed)
PRIVILEGED_ROLES = ("%All", "%Manager")     # UNCONFIRMED minimum privilege for Backup.General / Security.*
DEFAULT_PASSWORD = "SYS"                    # _SYSTEM / SuperUser / Admin, like the official images
PBKDF2_ITERATIONS = 10000

AUTHE_OS = 16
AUTHE_PASSWORD = 32
AUTHE_UNAUTHENTICATED = 64

# Mirror answers for non-members (UNCONFIRMED strings)
MIRROR_NOT_MEMBER_TYPE = "Not Member"
MIRROR_NOT_MEMBER_STATUS = "NOTINIT"

# Database file format
BLOCK_SIZE = 8192
BLOCKS_PER_DB = 16
DEFAULT_WRITE_INTERVAL_MS = 100   # pause between two write cycles
DEFAULT_BLOCK_PAUSE_MS = 2        # pause between two block writes inside a cycle
