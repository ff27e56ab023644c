"""Security.System / Security.Services / Security.Users state of one instance (passwords stored hashed only)."""
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


def default_security(owner, manager, os_auth=True):
    both = config.AUTHE_OS + config.AUTHE_PASSWORD if os_auth else config.AUTHE_PASSWORD
    sec = {
        "system": {"Name": "SYSTEM", "AutheEnabled": both},
        "services": {},
        "users": {},
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
                data = default_security(self.inst.owner, self.inst.manager)
            before = repr(data)
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

    def is_privileged(self, username):
        data = self.read()
        u = self.find_user(data, username)[1]
        if not u:
            return False
        return any(r.lower() in [p.lower() for p in config.PRIVILEGED_ROLES] for r in self.roles(u))
