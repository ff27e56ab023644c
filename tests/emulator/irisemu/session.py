"""`iris session` / `irissession` / `iris terminal` / `csession`: login, namespace, ObjectScript execution."""
import os
import sys
import time

from . import backup, config, instance, integrity, journal, util
from .objectscript import ByRef, Halt, Interpreter, ObjError, to_num
from .security import Security, hash_password, new_role, new_user


class LineReader(object):
    """Reads stdin line by line (credentials first, then a script)."""

    def __init__(self, stream):
        self.stream = stream

    def readline(self):
        if self.stream is None:
            return None
        line = self.stream.readline()
        if line == "":
            return None
        return line.rstrip("\r\n")


class Session(object):
    def __init__(self, inst, out=None):
        self.inst = inst
        self.out = out or sys.stdout
        self.col = 0
        self.username = None
        self.namespace = "USER"
        self.external = False
        self.objects = {}       # oref -> object (Journal.Restore, %Routine, lists)
        self.next_oref = 1
        self.globals = {}       # temporary globals (config.TEMP_GLOBAL_PREFIXES), private to the session

    # -- objects, routines, temporary globals (see objectscript.Interpreter) -----------------------------------
    def new_object(self, obj):
        oref = "%d@%s" % (self.next_oref, obj.CLASS)
        self.next_oref += 1
        self.objects[oref] = obj
        return oref

    def is_oref(self, value):
        return isinstance(value, str) and value in self.objects

    def _obj(self, oref):
        obj = self.objects.get(oref)
        if obj is None:
            raise ObjError("INVALID OREF")
        return obj

    def obj_get(self, oref, prop):
        return self._obj(oref).get(prop)

    def obj_set(self, oref, prop, value):
        self._obj(oref).set(prop, value)

    def obj_call(self, oref, meth, args):
        r = self._obj(oref).call(meth, args)
        return "" if r is None else r

    def temp_globals(self):
        return self.globals

    def is_temp_global(self, name):
        return any(name.startswith(p) for p in config.TEMP_GLOBAL_PREFIXES)

    def call_routine(self, label, routine, args, want_value):
        """System routines of %SYS the emulator knows: CheckList^Integrity, Display^Integrity, ^JRNSWTCH."""
        if self.namespace == "%SYS":
            r, lab = routine, label.lower()
            if r == "Integrity" and lab == "checklist":
                return integrity.checklist(self, args)
            if r == "Integrity" and lab == "display":
                integrity.display(self, args)
                return ""
            if r == "Integrity":
                raise ObjError("NOLINE", "*%s^Integrity (the emulator has CheckList and Display only)" % label)
            if r == "JRNSWTCH" and lab == "":
                journal.jrnswtch(self)
                return ""
        raise ObjError("NOROUTINE", "*%s^%s" % (label, routine))

    # -- principal device ---------------------------------------------------------------------------------------
    def write(self, text):
        if not text:
            return
        self.out.write(text)
        self.out.flush()
        nl = text.rfind("\n")
        self.col = len(text) - nl - 1 if nl >= 0 else self.col + len(text)

    def column(self):
        return self.col

    def newline_if_needed(self):
        if self.col:
            self.write("\n")

    # -- results of methods that halt when called from an OS command --------------------------------------------
    def external_result(self, sc, value=None):
        if self.external:
            raise Halt(config.RC_EXT_SUCCESS if str(sc).startswith("1") else config.RC_EXT_FAILURE)
        return sc if value is None else value

    # -- special variables --------------------------------------------------------------------------------------
    def special(self, name):
        if name in ("ZV", "ZVERSION"):
            v = self.inst.entry["version"]
            if self.inst.flavour == "iris":
                return "IRIS for UNIX (Debian Linux for x86-64) %s (Build %s) [irisemu]" % (
                    ".".join(v.split(".")[:2]), v.split(".")[3] if len(v.split(".")) > 3 else "0")
            return "Cache for UNIX (Debian Linux for x86-64) %s (Build %s) [irisemu]" % (
                ".".join(v.split(".")[:3]), v.split(".")[3] if len(v.split(".")) > 3 else "0")
        if name in ("NAMESPACE", "ZNSPACE", "ZNAMESPACE"):
            return self.namespace
        if name in ("USERNAME",):
            return self.username or ""
        if name in ("ROLES",):
            u = Security.find_user(Security(self.inst).read(), self.username)[1]
            return (u or {}).get("Roles", "")
        if name in ("J", "JOB"):
            return str(os.getpid())
        if name in ("H", "HOROLOG"):
            d, s = util.horolog()
            return "%d,%d" % (d, s)
        if name in ("X",):
            return str(self.col)
        if name in ("ZTIMESTAMP", "ZTS"):
            d, s = util.horolog(time.time())
            return "%d,%d" % (d, s)
        if name in ("IO", "PRINCIPAL", "P"):
            return "/dev/pts/0"
        raise ObjError("SYNTAX", "($%s is not in the emulator's subset)" % name)

    # -- class dispatch -----------------------------------------------------------------------------------------
    def require_sys(self, cls):
        if self.namespace != "%SYS":
            raise ObjError("CLASS DOES NOT EXIST", "*" + cls)

    def require_priv(self, needed, what):
        missing = Security(self.inst).missing(self.username, needed)
        if missing:
            self.inst.log(1, "Security: %s refused to user %s: lacks %s" % (what, self.username, ",".join(missing)),
                          "Utility.Event")
            raise ObjError("PROTECT", "*%s (user %s lacks %s)" % (what, self.username, ",".join(missing)))

    def call_class(self, cls, meth, args):
        c = cls.lower()
        m = meth.lower()
        if c == "backup.general":
            self.require_sys(cls)
            self.require_priv(config.BACKUP_GENERAL_PRIVILEGES, "%s,%s" % (meth, cls))
            r = backup.dispatch(self, meth, args)
            if r is None:
                raise ObjError("METHOD DOES NOT EXIST", "*%s,%s" % (meth, cls))
            return r
        if c in ("security.system", "security.services", "security.users", "security.roles"):
            self.require_sys(cls)
            if m not in ("exists",):
                self.require_priv(config.SECURITY_ADMIN_PRIVILEGES, "%s,%s" % (meth, cls))
            r = getattr(self, "_" + c.split(".")[1])(m, args)
            if r is None:
                raise ObjError("METHOD DOES NOT EXIST", "*%s,%s" % (meth, cls))
            return r
        if c == "%sys.journal.system":
            r = journal.journal_system(self, meth, args)
            if r is None:
                raise ObjError("METHOD DOES NOT EXIST", "*%s,%s" % (meth, cls))
            return r
        if c == "journal.restore":
            self.require_sys(cls)
            r = journal.restore_class(self, meth, args)
            if r is None:
                raise ObjError("METHOD DOES NOT EXIST", "*%s,%s" % (meth, cls))
            return r
        if c in ("%routine", "%library.routine"):
            r = journal.routine_class(self, meth, args)
            if r is None:
                raise ObjError("METHOD DOES NOT EXIST", "*%s,%s" % (meth, cls))
            return r
        if c == "%system.process":
            if m == "terminate":
                pid = _val(args, 0)
                if pid not in (None, "", str(os.getpid())):
                    return "0 ERROR #5001: the emulator only terminates its own process"
                code = int(to_num(_val(args, 1) or 0))
                raise Halt(code % 256)
            raise ObjError("METHOD DOES NOT EXIST", "*%s,%s" % (meth, cls))
        if c == "%system.security":
            if m == "check":
                # $SYSTEM.Security.Check(resource, permission): 1 when the current user holds it
                res = _val(args, 0) or ""
                perm = (_val(args, 1) or "").upper()
                perm = {"READ": "R", "WRITE": "W", "USE": "U"}.get(perm, perm)
                if not res or not perm:
                    raise ObjError("PARAMETER")
                return "0" if Security(self.inst).missing(self.username, ("%s:%s" % (res, perm),)) else "1"
            raise ObjError("METHOD DOES NOT EXIST", "*%s,%s" % (meth, cls))
        if c == "%system.mirror":
            mt, ms = self.inst.mirror()
            if m == "getmembertype":
                return mt or config.MIRROR_NOT_MEMBER_TYPE
            if m == "getstatus":
                return (ms or config.MIRROR_NOT_MEMBER_STATUS).upper()
            if m == "isprimary":
                return "1" if (ms or "").lower() == "primary" else "0"
            if m == "isbackup":
                return "1" if (ms or "").lower() == "backup" else "0"
            if m == "ismember":
                return "1" if mt else "0"
            if m == "isasyncmember":
                return "1" if mt and mt.lower() != "failover" else "0"
            if m == "mirrorname":
                return (self.inst.entry.get("mirror") or {}).get("name", "")
            raise ObjError("METHOD DOES NOT EXIST", "*%s,%s" % (meth, cls))
        if c == "sys.mirror":
            if m in ("distancefromprimaryjournalfiles", "distancefromprimarydatabases"):
                # 1 when there is no lag (reference 4.2); the emulator keeps one figure for both (Departures 14)
                mirror = self.inst.entry.get("mirror") or {}
                if not mirror:
                    return config.MIRROR_NOT_MEMBER_DISTANCE
                return str(mirror.get("journal_distance", 1))
            raise ObjError("METHOD DOES NOT EXIST", "*%s,%s" % (meth, cls))
        if c == "%system.status":
            sc = _val(args, 0) or ""
            if m == "isok":
                return "1" if sc.startswith("1") else "0"
            if m == "iserror":
                return "0" if sc.startswith("1") else "1"
            if m == "geterrortext":
                return "" if sc.startswith("1") else sc[2:]
            if m == "error":
                # $SYSTEM.Status.Error(code,text): an error %Status (the emulator's form "0 ERROR #code: text")
                return "0 ERROR #%s: %s" % (int(to_num(_val(args, 0) or 0)), _val(args, 1) or "")
            if m == "displayerror":
                if not sc.startswith("1"):
                    self.write(sc[2:])
                return "1"
            raise ObjError("METHOD DOES NOT EXIST", "*%s,%s" % (meth, cls))
        if c == "%system.version":
            if m == "getversion":
                return self.special("ZV")
            if m == "getnumber":
                return ".".join(self.inst.entry["version"].split(".")[:2])
            raise ObjError("METHOD DOES NOT EXIST", "*%s,%s" % (meth, cls))
        raise ObjError("CLASS DOES NOT EXIST", "*" + cls)

    # Security.System
    def _system(self, m, args):
        with Security(self.inst).edit() as data:
            sysp = data["system"]
            if m == "get":
                _export(_required_ref(args), sysp, skip=())
                return "1"
            if m == "modify":
                for k, v in _changes(_required_ref(args)):
                    sysp[k] = int(to_num(v)) if k == "AutheEnabled" else v
                return "1"
        return None

    # Security.Services
    def _services(self, m, args):
        name = _val(args, 0) or ""
        with Security(self.inst).edit() as data:
            key, svc = Security.find_service(data, name)
            if m == "exists":
                return "1" if svc else "0"
            if svc is None and m in ("get", "modify"):
                return "0 ERROR #409: Service %s does not exist" % name
            if m == "get":
                _export(_required_ref(args), svc)
                return "1"
            if m == "modify":
                for k, v in _changes(_required_ref(args)):
                    svc[k] = int(to_num(v)) if k in ("AutheEnabled", "Enabled") else v
                return "1"
        return None

    # Security.Users
    def _users(self, m, args):
        name = _val(args, 0) or ""
        with Security(self.inst).edit() as data:
            key, user = Security.find_user(data, name)
            if m == "exists":
                return "1" if user else "0"
            if m == "create":
                if not name:
                    return "0 ERROR #921: Username is required"
                if user:
                    return "0 ERROR #845: User %s already exists" % name
                v = [_val(args, i) for i in range(12)]
                enabled = v[8] if v[8] not in (None, "") else "1"
                u = new_user(name, v[1] or "", v[2] or None, v[3] or "", v[4] or "", int(to_num(enabled)),
                             v[9] or "")
                if v[7] not in (None, ""):
                    u["ChangePassword"] = int(to_num(v[7]))
                data["users"][name] = u
                self.inst.log(0, "Security: user %s created by %s" % (name, self.username), "Utility.Event")
                return "1"
            if user is None:
                return "0 ERROR #838: User %s does not exist" % name
            if m == "get":
                _export(_required_ref(args), user, skip=("Password", "Name"), name=key)
                return "1"
            if m == "modify":
                for k, v in _changes(_required_ref(args)):
                    if k == "Password":
                        user["Password"] = hash_password(v) if v != "" else None
                    elif k in ("Enabled", "ChangePassword", "PasswordNeverExpires", "AccountNeverExpires"):
                        user[k] = int(to_num(v))
                    else:
                        user[k] = v
                return "1"
            if m == "delete":
                del data["users"][key]
                return "1"
        return None

    # Security.Roles: Exists(Name), Create(Name, Description, Resources, GrantedRoles) or Create(Name, .Properties),
    # Get(Name, .Properties), Modify(Name, .Properties), Delete(Name).  Properties: Description, Resources,
    # GrantedRoles.  Role names are case-insensitive.
    def _roles(self, m, args):
        name = (_val(args, 0) or "").strip()
        sec = Security(self.inst)
        with sec.edit() as data:
            key, role = Security.find_role(data, name)
            if m == "exists":
                return "1" if role else "0"
            if m == "create":
                if not name or any(ch in name for ch in ",:*\"") or len(name) > config.ROLE_NAME_MAX \
                        or any(ord(ch) < 32 for ch in name):
                    return _err(config.ERR_ROLE_INVALID_NAME, "Invalid role name %s" % name)
                if role:
                    return _err(config.ERR_ROLE_EXISTS, "Role %s already exists" % key)
                ref = _ref(args, 1)
                if ref is not None:
                    props = _props(ref)
                else:
                    props = dict((k, _val(args, i)) for i, k in enumerate(config.ROLES_CREATE_ARGS) if i > 0)
                try:
                    new = _role_props(sec, data, name, props, new_role(name))
                except ValueError as exc:
                    return _err(*exc.args)
                data["roles"][name] = new
                self.inst.log(0, "Security: role %s created by %s (%s)" % (name, self.username, new["Resources"]),
                              "Utility.Event")
                return "1"
            if role is None:
                return _err(config.ERR_ROLE_NOT_EXISTS, "Role %s does not exist" % name)
            if m == "get":
                shown = dict((k, role.get(k, "")) for k in ("Description", "Resources", "GrantedRoles"))
                _export(_required_ref(args), shown, name=key)
                return "1"
            if m == "modify":
                ref = _required_ref(args)
                if key.lower() == config.SUPER_ROLE.lower():
                    return _err(config.ERR_ROLE_CANNOT_MODIFY, "Cannot modify role %s" % key)
                try:
                    data["roles"][key] = _role_props(sec, data, key, _props(ref), role)
                except ValueError as exc:
                    return _err(*exc.args)
                self.inst.log(0, "Security: role %s modified by %s (%s)"
                              % (key, self.username, data["roles"][key]["Resources"]), "Utility.Event")
                return "1"
            if m == "delete":
                if role.get("Predefined"):
                    return _err(config.ERR_ROLE_CANNOT_DELETE, "Cannot delete role %s" % key)
                del data["roles"][key]
                # members lose the role (users and roles that were granted it)
                for u in data["users"].values():
                    u["Roles"] = ",".join(r for r in Security.roles(u) if r.lower() != key.lower())
                for r in data["roles"].values():
                    r["GrantedRoles"] = ",".join(x.strip() for x in (r.get("GrantedRoles") or "").split(",")
                                                 if x.strip() and x.strip().lower() != key.lower())
                self.inst.log(0, "Security: role %s deleted by %s" % (key, self.username), "Utility.Event")
                return "1"
        return None


def _err(code, text):
    return "0 ERROR #%d: %s" % (code, text)


def _props(ref):
    return dict((k, child.value) for k, child in ref.node.children.items() if child.value is not None)


def _role_props(sec, data, name, props, role):
    """A copy of ``role`` with Description / Resources / GrantedRoles from ``props`` (validated)."""
    out = dict(role)
    if props.get("Description") is not None:
        out["Description"] = props["Description"]
    if props.get("Resources") is not None:
        out["Resources"] = sec.validate_resources(props["Resources"])
    if props.get("GrantedRoles") is not None:
        granted = []
        for g in (x.strip() for x in props["GrantedRoles"].split(",")):
            if not g:
                continue
            gk = Security.find_role(data, g)[0]
            if gk is None or gk.lower() == name.lower():
                raise ValueError(config.ERR_ROLE_NOT_EXISTS, "Role %s does not exist" % g)
            granted.append(gk)
        out["GrantedRoles"] = ",".join(granted)
    return out


def _val(args, n):
    if len(args) > n and args[n] is not None:
        a = args[n]
        if isinstance(a, ByRef):
            return a.node.value
        return a
    return None


def _ref(args, n):
    if len(args) > n and isinstance(args[n], ByRef):
        return args[n]
    return None


def _required_ref(args, n=1):
    """The by-reference .Properties argument of a Get/Modify; <PARAMETER> when the caller passed none."""
    ref = _ref(args, n)
    if ref is None:
        raise ObjError("PARAMETER")
    return ref


def _export(ref, record, skip=("Name",), name=None):
    """Get(): copy the properties of ``record`` (except ``skip``) into the caller's array, Name set to ``name``."""
    for k, v in record.items():
        if k not in skip:
            ref.node.set(k, v)
    if name is not None:
        ref.node.set("Name", name)


def _changes(ref):
    """Modify(): (property, value) of every property the caller set in its array (Name cannot be changed)."""
    return [(k, child.value) for k, child in ref.node.children.items() if child.value is not None and k != "Name"]


# ---------------------------------------------------------------------------------------------------------------
# login

def authenticate(inst, reader, session):
    """Return the IRIS username, or None (access denied)."""
    user = _authenticate(inst, reader, session)
    if user is None:
        return None
    # authorization of the login: the user must be allowed to use %Service_Terminal (config.LOGIN_PRIVILEGES)
    missing = Security(inst).missing(user, config.LOGIN_PRIVILEGES)
    if missing:
        inst.log(1, "Login failure: user %s lacks %s (OS user %s)" % (user, ",".join(missing), util.current_user()),
                 "Utility.Event")
        return None
    return user


def _authenticate(inst, reader, session):
    sec = Security(inst).read()
    sysa = int(sec["system"].get("AutheEnabled", 0))
    svc = Security.find_service(sec, "%Service_Terminal")[1]
    if not svc or not int(svc.get("Enabled", 0)):
        return None
    sva = int(svc.get("AutheEnabled", 0))
    osuser = util.current_user()
    if sysa & config.AUTHE_OS and sva & config.AUTHE_OS:
        u = Security.find_user(sec, osuser)[1]
        if u and int(u.get("Enabled", 1)):
            return u["Name"]
    if sysa & config.AUTHE_PASSWORD and sva & config.AUTHE_PASSWORD:
        for attempt in range(3):
            session.write("Username: ")
            name = reader.readline()
            if name is None:
                session.write("\n")
                return None
            session.write("\nPassword: ")
            pw = reader.readline()
            session.write("\n")
            if pw is None:
                return None
            u = Security.find_user(sec, name)[1]
            if u and int(u.get("Enabled", 1)) and from_hash_ok(u, pw):
                return u["Name"]
            if attempt < 2:
                session.write("Access Denied\n")
        return None
    if sysa & config.AUTHE_UNAUTHENTICATED and sva & config.AUTHE_UNAUTHENTICATED:
        return "UnknownUser"
    return None


def from_hash_ok(user, pw):
    from .security import check_password
    return check_password(user.get("Password"), pw)


def wait_until_login_allowed(inst):
    """Past ExternalFreezeTimeOut new logins hang until the system is thawed (documented IRIS behaviour)."""
    announced = False
    while True:
        st = inst.read_state()
        if not inst.past_freeze_timeout(st):
            return st
        if not announced:
            announced = True
            inst.log(2, "Login of pid %d (%s) paused: system suspended past ExternalFreezeTimeOut"
                     % (os.getpid(), util.current_user()))
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------------------------

def parse_session_args(argv, prog):
    """INST [-U NS | -UNS] [-B] ["expr"] in any order."""
    inst = None
    ns = None
    expr = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-U" or a == "-u":
            if i + 1 >= len(argv):
                raise instance.EmuError("%s: -U needs a namespace" % prog, config.RC_USAGE)
            ns = argv[i + 1]
            i += 2
            continue
        if (a.startswith("-U") or a.startswith("-u")) and len(a) > 2:
            ns = a[2:]
            i += 1
            continue
        if a in ("-B", "-b"):
            i += 1
            continue
        if inst is None:
            inst = a
        elif expr is None:
            expr = a
        else:
            raise instance.EmuError("%s: too many arguments: %s" % (prog, a), config.RC_USAGE)
        i += 1
    if inst is None:
        raise instance.EmuError("usage: %s INSTANCE [-U NAMESPACE] [\"command\"]" % prog, config.RC_USAGE)
    if ns is not None:
        ns = ns.strip('"').strip("'")
    return inst, ns, expr


def run_session(flavour, prog, argv, stdin=None, stdout=None):
    stdin = sys.stdin if stdin is None else stdin
    out = sys.stdout if stdout is None else stdout
    try:
        name, ns, expr = parse_session_args(argv, prog)
    except instance.EmuError as exc:
        sys.stderr.write(str(exc) + "\n")
        return exc.rc
    inst = instance.find(name, flavour)
    if inst is None:
        sys.stderr.write("%s: Instance %s not found\n" % (prog, name))
        return config.RC_ERROR
    st = inst.read_state()
    if not inst.is_running(st):
        out.write("<%s Startup Error>: instance %s is not running\n"
                  % ("IRIS" if flavour == "iris" else "Cache", inst.name))
        return config.RC_ERROR
    wait_until_login_allowed(inst)
    sess = Session(inst, out)
    reader = LineReader(stdin)
    script_mode = expr is None
    if script_mode:
        import socket
        sess.write("\nNode: %s, Instance: %s\n\n" % (socket.gethostname().split(".")[0], inst.name))
    user = authenticate(inst, reader, sess)
    if user is None:
        sess.newline_if_needed()
        sess.write("Access Denied\n")
        inst.log(1, "Login failure: Access Denied (OS user %s, %s)" % (util.current_user(), prog),
                 "Utility.Event")
        return config.RC_ACCESS_DENIED
    sess.username = user
    u = Security.find_user(Security(inst).read(), user)[1]
    target = ns or (u or {}).get("NameSpace") or "USER"
    if target.upper() not in [n.upper() for n in inst.namespaces()]:
        sess.newline_if_needed()
        sess.write("<NAMESPACE> %s\n" % target)
        return config.RC_ERROR
    sess.namespace = [n for n in inst.namespaces() if n.upper() == target.upper()][0]
    interp = Interpreter(sess)
    try:
        if not script_mode:
            sess.external = True
            line = expr
            # a bare method call or entry reference is run as if by DO
            if line.lstrip().startswith("##") or line.lstrip().startswith("$") or line.lstrip().startswith("^"):
                line = "Do " + line.lstrip()
            try:
                interp.run_line(line)
            except ObjError as exc:
                sess.newline_if_needed()
                sess.write(exc.text() + "\n")
                return config.RC_ERROR
            return 0
        while True:
            sess.newline_if_needed()
            sess.write("%s>" % sess.namespace)
            line = reader.readline()
            if line is None:
                sess.write("\n")
                return 0
            try:
                interp.run_line(line)
            except ObjError as exc:
                sess.newline_if_needed()
                sess.write(exc.text() + "\n")
    except Halt as h:
        if script_mode:
            sess.newline_if_needed()
        return h.code
