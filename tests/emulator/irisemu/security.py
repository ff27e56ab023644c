"""Security.System / Services / Users / Roles state of one instance (passwords stored hashed only) and the
authorization model (roles -> privileges "Resource:Permissions", see config.py)."""
import contextlib
import hashlib
import hmac
import os

from . import config, util

SERVICES = ("%Service_Terminal", "%Service_CallIn", "%Service_Console", "%Service_Bindings", "%Service_WebGateway",
            "%Service_ComPort", "%Service_ECP", "%Service_Mirror", "%Service_Login", "%Service_Shadow",
            "%Service_Telnet", "%Service_DataCheck", "%Service_Monitor")


def hash_password(password, salt=None, iterations=None):
    salt = salt or os.urandom(16)
    iterations = iterations or config.PBKDF2_ITERATIONS
    dk = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return {"hash": dk.hex(), "salt": salt.hex(), "iterations": iterations, "algorithm": "SHA512"}


def parse_password_hash(text):
    """CPF merge PasswordHash="<hash>,<salt>,<iterations>,<algorithm>" (hex)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) < 2:
        raise ValueError("PasswordHash needs hash,salt[,iterations[,algorithm]]")
    it = int(parts[2]) if len(parts) > 2 and parts[2] else config.PBKDF2_ITERATIONS
    alg = parts[3].upper() if len(parts) > 3 and parts[3] else "SHA512"
    return {"hash": parts[0].lower(), "salt": parts[1].lower(), "iterations": it, "algorithm": alg}


def check_password(entry, password):
    if not entry or not entry.get("hash"):
        return False
    alg = {"SHA512": "sha512", "SHA256": "sha256", "SHA1": "sha1"}.get(entry.get("algorithm", "SHA512"), "sha512")
    dk = hashlib.pbkdf2_hmac(alg, password.encode(), bytes.fromhex(entry["salt"]), int(entry["iterations"]))
    return hmac.compare_digest(dk.hex(), entry["hash"])


PERMISSIONS = "RWU"


def expand(text, flavour):
    fl = config.FLAVOURS[flavour]
    return text.replace("{sysdb}", fl["sysdb"]).replace("{libdb}", fl["libdb"])


def parse_privileges(text):
    """"%DB_USER:RW,%Admin_Operate:U" -> [(resource, perms)]; raises ValueError(code, text) on a bad item."""
    out = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        res, sep, perms = item.partition(":")
        res = res.strip()
        perms = perms.strip().upper()
        if not res or any(c in res for c in " \t\"'"):
            raise ValueError(config.ERR_RESOURCE_NOT_EXISTS, "Resource %s does not exist" % res)
        if not sep or not perms or any(c not in PERMISSIONS for c in perms):
            raise ValueError(config.ERR_PERMISSION_INVALID, "Invalid permission %s for resource name %s" % (perms, res))
        out.append((res, "".join(c for c in PERMISSIONS if c in perms)))
    return out


def format_privileges(pairs):
    """Canonical resource string: one item per resource (permissions merged, in R W U order), input order kept."""
    merged = []
    index = {}
    for res, perms in pairs:
        k = res.lower()
        if k in index:
            i = index[k]
            have = merged[i][1] + perms
            merged[i] = (merged[i][0], "".join(c for c in PERMISSIONS if c in have))
        else:
            index[k] = len(merged)
            merged.append((res, perms))
    return ",".join("%s:%s" % rp for rp in merged)


def default_roles(flavour, databases=()):
    roles = {}
    for name, (desc, res) in config.PREDEFINED_ROLES.items():
        roles[name] = new_role(name, desc, expand(res, flavour), predefined=True)
    for db in databases:
        n = "%DB_" + db
        roles[n] = new_role(n, "R/W access for this resource", "%s:RW" % n, predefined=True)
    return roles


def new_role(name, description="", resources="", granted="", predefined=False):
    return {"Name": name, "Description": description or "", "Resources": resources or "",
            "GrantedRoles": granted or "", "Predefined": 1 if predefined else 0}


def default_security(owner, manager, os_auth=True, flavour="iris", databases=()):
    both = config.AUTHE_OS + config.AUTHE_PASSWORD if os_auth else config.AUTHE_PASSWORD
    sec = {
        "system": {"Name": "SYSTEM", "AutheEnabled": both},
        "services": {},
        "users": {},
        "roles": default_roles(flavour, databases),
    }
    enabled = ("%Service_Terminal", "%Service_CallIn", "%Service_Console", "%Service_Bindings",
               "%Service_WebGateway", "%Service_Login")
    os_capable = ("%Service_Terminal", "%Service_CallIn", "%Service_Console")
    for s in SERVICES:
        sec["services"][s] = {"Name": s, "Enabled": 1 if s in enabled else 0,
                              "AutheEnabled": both if s in os_capable else config.AUTHE_PASSWORD}
    for u, full in (("_SYSTEM", "SQL System Manager"), ("SuperUser", "SuperUser"), ("Admin", "Administrator")):
        sec["users"][u] = new_user(u, "%All", config.DEFAULT_PASSWORD, full)
    sec["users"]["UnknownUser"] = new_user("UnknownUser", "", None, "Unknown user")
    for u in sorted({owner, manager} - {None, ""}):
        if u:
            # the instance owner is an IRIS user with %All and no password (like irisowner in the official images)
            sec["users"][u] = new_user(u, "%All", None, "Instance owner")
    return sec


def new_user(name, roles, password, fullname="", namespace="", enabled=1, comment=""):
    return {"Name": name, "Roles": roles or "", "FullName": fullname or "", "NameSpace": namespace or "",
            "Enabled": int(enabled) if str(enabled) != "" else 1, "Comment": comment or "",
            "Password": hash_password(password) if password else None,
            "PasswordNeverExpires": 0, "AccountNeverExpires": 0, "ChangePassword": 0}


class Security(object):
    def __init__(self, inst):
        self.inst = inst

    @contextlib.contextmanager
    def edit(self):
        with util.locked(self.inst.lock_path):
            data = util.read_json(self.inst.security_path)
            if data is None:
                data = default_security(self.inst.owner, self.inst.manager, flavour=self.inst.flavour,
                                        databases=self.db_names())
            before = repr(data)
            if "roles" not in data:   # security.json written before roles were emulated
                data["roles"] = default_roles(self.inst.flavour, self.db_names())
            yield data
            if repr(data) != before:
                util.write_json_inplace(self.inst.security_path, data)

    def read(self):
        with self.edit() as d:
            return d

    @staticmethod
    def find_user(data, name):
        for k, v in data["users"].items():
            if k.lower() == (name or "").lower():
                return k, v
        return None, None

    @staticmethod
    def find_service(data, name):
        for k, v in data["services"].items():
            if k.lower() == (name or "").lower():
                return k, v
        return None, None

    @staticmethod
    def roles(user):
        return [r.strip() for r in (user.get("Roles") or "").split(",") if r.strip()]

    def db_names(self):
        return [d["name"] for d in self.inst.databases]

    @staticmethod
    def find_role(data, name):
        for k, v in data.get("roles", {}).items():
            if k.lower() == (name or "").lower():
                return k, v
        return None, None

    def known_resources(self):
        names = list(config.PREDEFINED_RESOURCES) + list(SERVICES) + ["%DB_" + n for n in self.db_names()]
        return dict((n.lower(), n) for n in names)

    def validate_resources(self, text):
        """Canonical resource string, or raise ValueError(code, text)."""
        pairs = parse_privileges(text)
        known = self.known_resources()
        out = []
        for res, perms in pairs:
            if res.lower() not in known:
                raise ValueError(config.ERR_RESOURCE_NOT_EXISTS, "Resource %s does not exist" % res)
            out.append((known[res.lower()], perms))
        return format_privileges(out)

    @staticmethod
    def privileges(data, username):
        """{resource.lower(): set(perms)} of a user, or None for "every privilege" (%All)."""
        u = Security.find_user(data, username)[1]
        if not u:
            return {}
        held = {}
        seen = set()
        todo = list(Security.roles(u))
        while todo:
            r = todo.pop()
            if r.lower() in seen:
                continue
            seen.add(r.lower())
            if r.lower() == config.SUPER_ROLE.lower():
                return None
            role = Security.find_role(data, r)[1]
            if not role:
                continue   # an unknown role grants nothing
            for res, perms in parse_privileges(role.get("Resources")):
                held.setdefault(res.lower(), set()).update(perms)
            todo.extend(x.strip() for x in (role.get("GrantedRoles") or "").split(",") if x.strip())
        return held

    def missing(self, username, needed, data=None):
        """The privileges of ``needed`` (config tuples, "{sysdb}" expanded here) that ``username`` lacks."""
        data = data if data is not None else self.read()
        held = self.privileges(data, username)
        if held is None:
            return []
        out = []
        for item in needed:
            item = expand(item, self.inst.flavour)
            res, _sep, perms = item.partition(":")
            have = held.get(res.lower(), set())
            if any(c not in have for c in perms):
                out.append(item)
        return out
