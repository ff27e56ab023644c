"""`iris merge INSTANCE [merge-file] [target-CPF]` (IRIS only; Caché has no CPF merge)."""
import os
import re

from . import config, instance
from .security import Security, hash_password, new_user, parse_password_hash

# Values of the security macros.  16/32/64 are CONFIRMED; the others follow the documented order of the list and
# are UNCONFIRMED (only used if a merge file names them).
MACROS = {
    "AutheK5CCache": 1, "AutheK5Prompt": 2, "AutheK5API": 4, "AutheK5KeyTab": 8, "AutheOS": 16,
    "AuthePassword": 32, "AutheUnauthenticated": 64, "AutheKB": 128, "AutheKBEncryption": 256,
    "AutheKBIntegrity": 512, "AutheLDAP": 2048, "AutheLDAPCache": 4096, "AutheDelegated": 8192,
    "AutheLoginToken": 16384, "AutheKerberosDelegated": 32768, "AutheOSDelegated": 65536, "AutheOSLDAP": 131072,
    "AutheTwoFactorSMS": 262144, "AutheTwoFactorPW": 524288, "AutheAlwaysTryDelegated": 1048576,
    "AutheMutualTLS": 2097152,
}

KNOWN_NOT_EMULATED = {
    "CreateRole", "ModifyRole", "DeleteRole", "CreateResource", "ModifyResource", "DeleteResource",
    "CreateApplication", "ModifyApplication", "DeleteApplication", "CreateSSLConfig", "ModifySSLConfig",
    "DeleteSSLConfig", "CreateLDAPConfig", "ModifyLDAPConfig", "DeleteLDAPConfig", "CreateEvent", "ModifyEvent",
    "DeleteEvent", "CreateDatabase", "ModifyDatabase", "DeleteDatabase", "CreateNamespace", "ModifyNamespace",
    "DeleteNamespace", "GrantAdminPrivilege", "GrantPrivilege", "ConfigMirror", "ModifyConfig", "Execute",
}


class MergeError(Exception):
    pass


def split_props(text):
    """Key=Value,Key="a,b",... -> dict (quotes removed)."""
    props = {}
    for m in re.finditer(r'\s*([A-Za-z0-9_%]+)\s*=\s*("(?:[^"]|"")*"|[^,]*)\s*(?:,|$)', text):
        k, v = m.group(1), m.group(2)
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = v[1:-1].replace('""', '"')
        props[k] = v
    return props


def eval_value(v):
    if "$$$" not in v:
        return v
    total = 0
    for term in v.split("+"):
        term = term.strip()
        if term.startswith("$$$"):
            name = term[3:]
            if name not in MACROS:
                raise MergeError("unknown macro $$$%s" % name)
            total += MACROS[name]
        elif re.match(r"^\d+$", term):
            total += int(term)
        else:
            raise MergeError("cannot evaluate %r" % v)
    return str(total)


def parse_merge(text):
    sections = []
    cur = None
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith(";"):
            continue
        m = re.match(r"^\[(.+)\]$", s)
        if m:
            cur = (m.group(1), [])
            sections.append(cur)
            continue
        if cur is not None:
            cur[1].append(s)
    return sections


def apply_action(inst, line):
    if ":" not in line:
        raise MergeError("malformed action %r" % line)
    verb, rest = line.split(":", 1)
    verb = verb.strip()
    props = {k: eval_value(v) for k, v in split_props(rest).items()}
    if verb in KNOWN_NOT_EMULATED:
        return "action %s is not emulated (ignored)" % verb
    if verb not in ("CreateUser", "ModifyUser", "DeleteUser", "ModifyService", "ModifySystem"):
        raise MergeError("unknown action %s" % verb)
    name = props.pop("Name", None)
    with Security(inst).edit() as data:
        if verb == "ModifySystem":
            for k, v in props.items():
                data["system"][k] = int(v) if k == "AutheEnabled" else v
            return "ModifySystem applied"
        if verb == "ModifyService":
            key, svc = Security.find_service(data, name or "")
            if svc is None:
                raise MergeError("service %s does not exist" % name)
            for k, v in props.items():
                svc[k] = int(v) if k in ("Enabled", "AutheEnabled") else v
            return "ModifyService %s applied" % key
        if not name:
            raise MergeError("%s needs Name=" % verb)
        key, user = Security.find_user(data, name)
        if verb == "DeleteUser":
            if user is not None:
                del data["users"][key]
                return "DeleteUser %s applied" % key
            return "DeleteUser %s: no such user (nothing to do)" % name
        if verb == "CreateUser":
            if user is not None:
                return "CreateUser %s: user exists (nothing to do)" % key
            user = new_user(name, "", None)
            data["users"][name] = user
            key = name
        elif user is None:
            raise MergeError("ModifyUser: user %s does not exist" % name)
        for k, v in props.items():
            if k == "Password":
                user["Password"] = hash_password(v) if v else None
            elif k == "PasswordHash":
                user["Password"] = parse_password_hash(v)
            elif k in ("Enabled", "ChangePassword", "PasswordNeverExpires", "AccountNeverExpires"):
                user[k] = int(v) if v != "" else 0
            else:
                user[k] = v
        return "%s %s applied" % (verb, key)


def run_merge(inst, path, target_cpf=None):
    """Apply a merge file.  Returns nothing: like IRIS, the caller always reports success (see README)."""
    if path is None:
        path = os.environ.get("ISC_CPF_MERGE_FILE")
    if not path:
        inst.log(1, "Merge: no merge file given and ISC_CPF_MERGE_FILE is not set", "Config.CPF")
        return
    if not os.path.isabs(path):
        inst.log(1, "Merge: %s is not an absolute path, nothing merged" % path, "Config.CPF")
        return
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as exc:
        inst.log(1, "Merge: cannot read %s (%s), nothing merged" % (path, exc.strerror), "Config.CPF")
        return
    cpf = target_cpf or inst.cpf_path
    inst.log(0, "Merging %s into %s" % (path, cpf), "Config.CPF")
    for section, lines in parse_merge(text):
        if section == "Actions":
            for line in lines:
                try:
                    inst.log(0, "Merge [Actions] %s" % apply_action(inst, line), "Config.CPF")
                except (MergeError, ValueError) as exc:
                    inst.log(2, "Merge [Actions] failed: %s: %s" % (line.split(":", 1)[0], exc), "Config.CPF")
            continue
        if section.lower() == "actions":
            inst.log(1, "Merge: section [%s] ignored (section names are case-sensitive)" % section, "Config.CPF")
            continue
        for line in lines:
            if "=" not in line:
                continue
            k, v = line.split("=", 1)
            instance.set_cpf_value(cpf, section, k.strip(), v.strip())
            inst.log(0, "Merge: [%s] %s=%s" % (section, k.strip(), v.strip()), "Config.CPF")


def merge_ok_message(inst):
    return config.FLAVOURS[inst.flavour]["merge_ok"]
