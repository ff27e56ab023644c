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
# Emulator choice (real IRIS: UNCONFIRMED): an ExternalFreeze whose freeze was ended by another process
# (ExternalThaw, irisstat -W, WDSuspendLimit) during an injected --freeze-delay, i.e. after the write daemon
# acknowledged but before "System suspended", fails with 3 (like one ended before the acknowledgement always does).
# False: it logs "System suspended" and returns 5 although the system is no longer suspended.
FREEZE_FAILS_WHEN_ENDED_DURING_DELAY = True
DEFAULT_PASSWORD = "SYS"                    # _SYSTEM / SuperUser / Admin, like the official images
PBKDF2_ITERATIONS = 10000

# ---------------------------------------------------------------------------------------------------------------
# Authorization: roles hold privileges "Resource:Permissions" (permissions from R, W, U); a user holds the union of
# the privileges of its roles and of the roles they grant (GrantedRoles).  "{sysdb}" / "{libdb}" stand for the
# flavour's system / library database (IRISSYS / IRISLIB, CACHESYS / CACHELIB).

SUPER_ROLE = "%All"   # holds every privilege (documented for %All)
# UNCONFIRMED (reference 3.4: the minimum privilege of Backup.General is not documented anywhere; the reference
# suggests trying %Admin_Operate:U + %DB_IRISSYS:RW).  Checked on EVERY Backup.General method (ExternalFreeze,
# ExternalThaw, ExternalSetHistory, IsWDSuspendedExt, ...); a user lacking one of them gets <PROTECT>.
BACKUP_GENERAL_PRIVILEGES = ("%Admin_Operate:U", "%DB_{sysdb}:RW")
# UNCONFIRMED: what Security.System / Services / Users / Roles need for everything except Exists().
SECURITY_ADMIN_PRIVILEGES = ("%Admin_Secure:U",)
# UNCONFIRMED: what a login through %Service_Terminal (iris session / csession / iris terminal, and the logins of
# iris freeze / thaw / merge) needs.  %Service_Terminal is documented as a resource-based service; public
# permissions of resources are not modelled, so the user's roles must hold it.
LOGIN_PRIVILEGES = ("%Service_Terminal:U",)
# UNCONFIRMED: the privileges of the predefined roles (only %All's "everything" is documented).  Each database
# also gets a role %DB_<NAME> with %DB_<NAME>:RW.  Predefined roles cannot be deleted; %All cannot be modified.
PREDEFINED_ROLES = {
    "%All": ("The Super-User Role", ""),
    "%Manager": ("A Role owned by all System Managers",
                 "%Admin_Manage:U,%Admin_Operate:U,%Admin_Secure:U,%Admin_Task:U,%DB_{sysdb}:RW,%DB_{libdb}:R,"
                 "%Development:U,%Service_CallIn:U,%Service_Console:U,%Service_Login:U,%Service_Terminal:U"),
    "%Operator": ("System Operators",
                  "%Admin_Operate:U,%Admin_Task:U,%DB_{libdb}:R,%Service_Console:U,%Service_Terminal:U"),
    "%SecurityAdministrator": ("Security Administrators", "%Admin_Secure:U,%Service_Terminal:U"),
    "%Developer": ("Developers", "%Development:U,%DB_{libdb}:R,%Service_Console:U,%Service_Terminal:U"),
    "%SQL": ("SQL users", "%Service_SQL:U"),
}
# Resources that exist besides %DB_<NAME> (one per database) and the %Service_* ones (security.SERVICES).
# Security.Roles.Create/Modify refuse any other resource name (ERROR #892).
PREDEFINED_RESOURCES = ("%Admin_Journal", "%Admin_Manage", "%Admin_Operate", "%Admin_Secure", "%Admin_Task",
                        "%Development", "%System_CallOut", "%Service_Native", "%Service_Object", "%Service_SQL")
ROLE_NAME_MAX = 64    # UNCONFIRMED length limit of role names
# UNCONFIRMED positional signature of Security.Roles.Create (seen in many public scripts, not in the reference; the
# class reference could not be read).  Create(Name, .Properties) is accepted too.
ROLES_CREATE_ARGS = ("Name", "Description", "Resources", "GrantedRoles")
# Error numbers and texts from the InterSystems Error Reference (General Error Codes 0-999), read in a public copy of
# that PDF; not in /work/shared/reference, so UNCONFIRMED as far as this project goes.
ERR_ROLE_CANNOT_DELETE = 880    # Cannot delete role %1.
ERR_ROLE_NOT_EXISTS = 883       # Role %1 does not exist.
ERR_ROLE_EXISTS = 884           # Role %1 already exists.
ERR_ROLE_CANNOT_MODIFY = 886    # Cannot modify role %1.
ERR_ROLE_INVALID_NAME = 887     # Invalid role name %1.
ERR_RESOURCE_NOT_EXISTS = 892   # Resource %1 does not exist.
ERR_PERMISSION_INVALID = 897    # Invalid permission %1 for resource name %2.

AUTHE_OS = 16
AUTHE_PASSWORD = 32
AUTHE_UNAUTHENTICATED = 64

# Mirror answers for non-members (UNCONFIRMED strings)
MIRROR_NOT_MEMBER_TYPE = "Not Member"
MIRROR_NOT_MEMBER_STATUS = "NOTINIT"
# what SYS.Mirror.DistanceFromPrimary*() returns on a non-member (UNCONFIRMED)
MIRROR_NOT_MEMBER_DISTANCE = "0"

# Database file format
BLOCK_SIZE = 8192
BLOCKS_PER_DB = 16
DEFAULT_WRITE_INTERVAL_MS = 100   # pause between two write cycles
DEFAULT_BLOCK_PAUSE_MS = 2        # pause between two block writes inside a cycle

# ---------------------------------------------------------------------------------------------------------------
# messages.log / cconsole.log rotation (test-only `irisemu-ctl INST rotate-log`).  UNCONFIRMED: the Caché
# documentation of [Startup] MaxConsoleLogSize says the next startup renames a full console log to
# "filename.old_Date"; the exact name (and whether IRIS rotates while running) is not in the reference notes.  The
# emulator renames <log> to <log> + this strftime suffix, e.g. messages.log.old_20250131_235959.
LOG_ROTATE_SUFFIX = ".old_%Y%m%d_%H%M%S"

# ---------------------------------------------------------------------------------------------------------------
# Journal restore, journal switch and integrity check (journal.py, integrity.py).  CONFIRMED in the IRIS class
# reference / Data Integrity Guide: the class Journal.Restore (%SYS) with FirstFile, LastFile, JournalLocation,
# Filter, AbortOnDatabaseError (InitialExpression 0), AbortOnJournalError, ...; RedirectDatabase(), SelectUpdates(),
# UseJournalLocation(), CheckJournalIntegrity(), Run() returning a %Status; %SYS.Journal.System.GetCurrentFileName();
# ^JRNSWTCH; $$CheckList^Integrity(outputglobal,dirlist,stopafteranyerror,listofglolist,maxproc,partialcheck)
# returning a %Status and Display^Integrity(integritout,flags,dirsum); results in ^IRIS.TempIntegrityOutput(+$JOB).
# Everything below is a choice where the sources say nothing (UNCONFIRMED).

# Initial value of Journal.Restore's AbortOnJournalError: ^JRNRESTO's default action is to abort on journal-related
# problems ("some cases of missing journal files"); the property's InitialExpression is not in the sources.
RESTORE_ABORT_ON_JOURNAL_ERROR = "1"
# A chain with a missing journal file: the files before the gap are applied, then Run() stops with an error
# naming the missing file and the point reached (False: nothing at all is applied).
RESTORE_APPLIES_UP_TO_GAP = True
# %Status error numbers of the emulator's Journal.Restore / CheckList^Integrity failures (the real numbers, e.g.
# $$$IntegrityCheckErrors, are not in the sources).
ERR_JOURNAL_RESTORE = 1105           # journal-related problem (missing or unreadable journal file)
ERR_JOURNAL_RESTORE_DATABASE = 1106  # database-related problem with AbortOnDatabaseError
ERR_INTEGRITY_ERRORS = 1107          # $$$IntegrityCheckErrors: the check ran and found errors
ERR_INTEGRITY_PROBLEM = 1108         # the check could not run on a directory (no database there)
# The output global of CheckList^Integrity when none is given: IRIS ^IRIS.TempIntegrityOutput(+$JOB)
# [CONFIRMED]; Caché's name is UNCONFIRMED (IRIS renamed the CacheTemp* globals to IRIS.Temp*).
INTEGRITY_OUTPUT_GLOBAL = {"iris": "IRIS.TempIntegrityOutput", "cache": "CacheTempIntegrityOutput"}
# Global names (without ^) a session may set and kill: temporary globals, kept in the session's memory only.
TEMP_GLOBAL_PREFIXES = ("IRIS.Temp", "CacheTemp")
# ^JRNSWTCH output: the Data Integrity Guide shows "Switching from: <old> To: <new>" (line breaks not visible in
# the source); the emulator prints two lines.
JRNSWTCH_FORMAT = "Switching from: %s\nTo: %s\n"
# Databases whose generation irisemu-dbcheck ignores when it judges consistency: never journalled, so a journal
# restore never brings them forward (IRISTEMP is re-created at startup on a real instance).
TEMP_DATABASES = ("IRISTEMP", "CACHETEMP")
