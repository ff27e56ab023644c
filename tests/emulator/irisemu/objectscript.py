"""A small ObjectScript interpreter: the subset the collection sends (see README "ObjectScript subset").

Values are strings (ObjectScript's only type); numbers are kept in canonical form.  Operators are evaluated strictly
left to right, as in ObjectScript.  Anything outside the subset raises an IRIS-style error such as <SYNTAX>.
"""
import math
import re
import time


class ObjError(Exception):
    """An ObjectScript run-time or syntax error, e.g. <SYNTAX>."""

    def __init__(self, name, detail=""):
        Exception.__init__(self, name)
        self.name = name
        self.detail = detail

    def text(self):
        return "<%s>%s" % (self.name, (" " + self.detail) if self.detail else "")


class Halt(Exception):
    def __init__(self, code=0):
        Exception.__init__(self, code)
        self.code = code


class QuitLine(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------------
# values

_NUM_RE = re.compile(r"(\d+\.?\d*|\.\d+)([Ee][+-]?\d+)?")


def to_num(v):
    if isinstance(v, (int, float)):
        return v
    s = str(v)
    m = re.match(r"^([+-]*)(\d*\.?\d*)([Ee][+-]?\d+)?", s)
    signs, digits, exp = m.group(1), m.group(2), m.group(3) or ""
    if digits in ("", "."):
        return 0
    neg = signs.count("-") % 2 == 1
    try:
        if "." in digits or exp:
            n = float(digits + exp)
            if n.is_integer() and abs(n) < 1e18:
                n = int(n)
        else:
            n = int(digits)
    except ValueError:
        return 0
    return -n if neg else n


def canon(n):
    if isinstance(n, float):
        if math.isnan(n) or math.isinf(n):
            raise ObjError("ILLEGAL VALUE")
        if n.is_integer() and abs(n) < 1e18:
            return str(int(n))
        s = repr(round(n, 18))
        if "e" in s:
            s = "%.18f" % n
            s = s.rstrip("0").rstrip(".")
        if s.startswith("0."):
            s = s[1:]
        elif s.startswith("-0."):
            s = "-" + s[2:]
        return s
    return str(int(n))


def num(v):
    return canon(to_num(v))


def truth(v):
    return to_num(v) != 0


class Node(object):
    """A local variable (value plus subscripts)."""

    def __init__(self):
        self.value = None
        self.children = {}

    def child(self, key, create=True):
        key = _subkey(key)
        n = self.children.get(key)
        if n is None and create:
            n = self.children[key] = Node()
        return n

    def defined(self):
        return self.value is not None

    def data(self):
        d = 1 if self.value is not None else 0
        if any(c.data() for c in self.children.values()):
            d += 10
        return d

    def get(self, key, default=None):
        c = self.children.get(_subkey(key))
        return default if c is None or c.value is None else c.value

    def set(self, key, value):
        self.child(key).value = str(value)

    def items(self):
        """Subscripts in collation order: canonical numbers first (numerically), then strings."""
        def order(k):
            if re.match(r"^-?(\d+|\d*\.\d+)$", k) and canon(to_num(k)) == k:
                return (0, to_num(k), "")
            return (1, 0, k)
        return sorted(self.children.items(), key=lambda kv: order(kv[0]))


def _subkey(k):
    s = str(k)
    if re.match(r"^[+-]?(\d+\.?\d*|\.\d+)$", s):
        try:
            c = canon(to_num(s))
            if c == s:
                return c
        except ObjError:
            pass
    return s


class ByRef(object):
    def __init__(self, node, name):
        self.node = node
        self.name = name


def quote(s):
    return '"' + str(s).replace('"', '""') + '"'


def zwrite_value(v):
    s = str(v)
    if re.match(r"^-?(\d+|\d*\.\d+)$", s) and canon(to_num(s)) == s:
        return s
    return quote(s)


# ---------------------------------------------------------------------------------------------------------------

COMMANDS = {
    "W": "WRITE", "WRITE": "WRITE", "S": "SET", "SET": "SET", "D": "DO", "DO": "DO", "K": "KILL", "KILL": "KILL",
    "H": "H", "HALT": "HALT", "HANG": "HANG", "Q": "QUIT", "QUIT": "QUIT", "ZW": "ZWRITE", "ZWRITE": "ZWRITE",
}


class Interpreter(object):
    """ctx must provide: write(text), column(), call_class(classname, method, args), special(name), namespace,
    call_routine(label, routine, args, want_value), obj_get/obj_set/obj_call(oref, ...), is_oref(value),
    temp_globals() (a dict name -> Node) and is_temp_global(name)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.vars = {}
        self.s = ""
        self.i = 0
        self.quit_seen = False   # set when a QUIT ended the last line (routine bodies stop there)

    # -- scanning helpers -------------------------------------------------------------------------------------------
    def peek(self, n=1):
        return self.s[self.i:self.i + n]

    def eol(self):
        return self.i >= len(self.s)

    def expect(self, ch):
        if self.peek(len(ch)) != ch:
            raise ObjError("SYNTAX")
        self.i += len(ch)

    def name(self):
        m = re.compile(r"%?[A-Za-z][A-Za-z0-9]*").match(self.s, self.i)
        if not m:
            raise ObjError("SYNTAX")
        self.i = m.end()
        return m.group(0)

    # -- lines ------------------------------------------------------------------------------------------------------
    def run_line(self, line):
        self.s = line.rstrip("\r\n")
        self.i = 0
        self.quit_seen = False
        try:
            while True:
                while self.peek() in (" ", "\t") and not self.eol():
                    self.i += 1
                if self.eol():
                    return
                if self.peek() == ";" or self.peek(2) == "//" or self.peek(2) == "#;":
                    return
                self.command()
                if not self.eol() and self.peek() not in (" ", "\t"):
                    raise ObjError("SYNTAX")
        except QuitLine:
            self.quit_seen = True
            return

    def command(self):
        m = re.compile(r"[A-Za-z]+").match(self.s, self.i)
        if not m:
            raise ObjError("SYNTAX")
        word = m.group(0).upper()
        cmd = COMMANDS.get(word)
        if cmd is None:
            raise ObjError("SYNTAX")
        self.i = m.end()
        if self.peek() == ":":
            raise ObjError("SYNTAX", "(postconditionals are not in the emulator's subset)")
        argless = self.eol() or self.peek(2) in ("  ", " ;") or self.s[self.i:].strip() == "" \
            or (self.peek() == " " and self.s[self.i + 1:self.i + 3] == "//")
        if not argless:
            if self.peek() != " ":
                raise ObjError("SYNTAX")
            self.i += 1
        if cmd == "H":
            cmd = "HALT" if argless else "HANG"
        getattr(self, "cmd_" + cmd.lower())(argless)

    def arglist(self, one):
        while True:
            one()
            if self.peek() == ",":
                self.i += 1
                continue
            return

    # -- commands ---------------------------------------------------------------------------------------------------
    def cmd_write(self, argless):
        if argless:
            return self.cmd_zwrite(True)

        def one():
            c = self.peek()
            if c == "!" or (c == "#" and self.peek(2) != "##"):
                while self.peek() == "!" or (self.peek() == "#" and self.peek(2) != "##"):
                    self.ctx.write("\n" if self.peek() == "!" else "\f")
                    self.i += 1
                if self.eol() or self.peek() in (",", " "):
                    return
            if self.peek() == "?":
                self.i += 1
                col = int(to_num(self.expr()))
                x = self.ctx.column()
                if col > x:
                    self.ctx.write(" " * (col - x))
                return
            self.ctx.write(str(self.expr()))
        self.arglist(one)

    def cmd_zwrite(self, argless):
        def dump(prefix, node, subs):
            if node.value is not None:
                if subs:
                    text = "%s(%s)=%s\n" % (prefix, ",".join(zwrite_value(s) for s in subs),
                                            zwrite_value(node.value))
                    self.ctx.write(text)
                else:
                    self.ctx.write("%s=%s\n" % (prefix, zwrite_value(node.value)))
            for k, c in node.items():
                dump(prefix, c, subs + [k])
        if argless:
            for n in sorted(self.vars):
                dump(n, self.vars[n], [])
            return

        def one():
            nm = self.name()
            node = self.vars.get(nm)
            if node is not None:
                dump(nm, node, [])
        self.arglist(one)

    def cmd_set(self, argless):
        if argless:
            raise ObjError("SYNTAX")

        def one():
            target = self.member_target()
            if target is not None:
                oref, prop = target
                self.expect("=")
                self.ctx.obj_set(oref, prop, str(self.expr()))
                return
            node = self.lvalue(create=True)
            self.expect("=")
            node.value = str(self.expr())
        self.arglist(one)

    def cmd_kill(self, argless):
        if argless:
            self.vars.clear()
            return

        def one():
            if self.peek() == "^":
                nm = self.global_name()
                store = self.ctx.temp_globals()
                subs = self.subscripts() if self.peek() == "(" else []
                if not subs:
                    store.pop(nm, None)
                    return
                parent = store.get(nm)
                for s in subs[:-1]:
                    if parent is None:
                        return
                    parent = parent.child(s, create=False)
                if parent is not None:
                    parent.children.pop(_subkey(subs[-1]), None)
                return
            nm = self.name()
            if self.peek() == "(":
                subs = self.subscripts()
                parent = self.vars.get(nm)
                for s in subs[:-1]:
                    if parent is None:
                        return
                    parent = parent.child(s, create=False)
                if parent is not None:
                    parent.children.pop(_subkey(subs[-1]), None)
            else:
                self.vars.pop(nm, None)
        self.arglist(one)

    def cmd_do(self, argless):
        if argless:
            raise ObjError("SYNTAX", "(argumentless DO blocks are not in the emulator's subset)")

        def one():
            if self.peek() == "^" or re.match(r"[%A-Za-z][A-Za-z0-9]*\^", self.s[self.i:]):
                label, routine = self.entryref()
                args = self.call_args() if self.peek() == "(" else []
                self.ctx.call_routine(label, routine, args, False)
                return
            if self.peek(2) == "##" or self.peek().lower() == "$" or self.peek(2) == "..":
                self.primary(statement=True)
                return
            if re.match(r"%?[A-Za-z][A-Za-z0-9]*\.[%A-Za-z]", self.s[self.i:]):
                self.primary(statement=True)
                return
            raise ObjError("SYNTAX")
        self.arglist(one)

    def cmd_halt(self, argless):
        raise Halt(0)

    def cmd_hang(self, argless):
        def one():
            t = to_num(self.expr())
            if t > 0:
                time.sleep(t)
        self.arglist(one)

    def cmd_quit(self, argless):
        if not argless:
            self.expr()
        raise QuitLine()

    # -- variables --------------------------------------------------------------------------------------------------
    def subscripts(self):
        self.expect("(")
        subs = []
        while True:
            v = str(self.expr())
            if v == "":
                raise ObjError("SUBSCRIPT", "(null subscript)")
            subs.append(v)
            if self.peek() == ",":
                self.i += 1
                continue
            self.expect(")")
            return subs

    def global_name(self):
        """^name (dots allowed, e.g. ^IRIS.TempIntegrityOutput); only temporary globals are emulated."""
        m = re.compile(r"\^(%?[A-Za-z][A-Za-z0-9.]*)").match(self.s, self.i)
        if not m:
            raise ObjError("SYNTAX")
        self.i = m.end()
        nm = m.group(1)
        if not self.ctx.is_temp_global(nm):
            raise ObjError("PROTECT", "(globals are not emulated)")
        return nm

    def entryref(self):
        """label^routine, ^routine or label^%routine: returns (label, routine)."""
        m = re.compile(r"(%?[A-Za-z0-9]*)\^(%?[A-Za-z][A-Za-z0-9.]*)").match(self.s, self.i)
        if not m:
            raise ObjError("SYNTAX")
        self.i = m.end()
        return m.group(1), m.group(2)

    def member_target(self):
        """``name.Prop`` or ``name.A.Prop`` at the cursor (an object property to set): returns (oref, prop), or
        None (the cursor is not moved) when the cursor is not at such a reference."""
        m = re.compile(r"(%?[A-Za-z][A-Za-z0-9]*)((?:\.%?[A-Za-z][A-Za-z0-9]*)+)").match(self.s, self.i)
        if not m:
            return None
        self.i = m.end()
        node = self.vars.get(m.group(1))
        value = node.value if node is not None else None
        what = m.group(1)
        path = m.group(2)[1:].split(".")
        for prop in path[:-1]:
            value = self.ctx.obj_get(self.need_oref(value, what), prop)
            what = prop
        return self.need_oref(value, what), path[-1]

    def need_oref(self, value, what):
        if value is None:
            raise ObjError("UNDEFINED", "*" + what)
        if not self.ctx.is_oref(value):
            raise ObjError("INVALID OREF", "*" + what)
        return value

    def member(self, value, what):
        """``.Prop`` / ``.Method(args)`` chains after an object reference."""
        while self.peek() == "." and re.match(r"\.%?[A-Za-z]", self.s[self.i:]):
            self.i += 1
            nm = self.name()
            oref = self.need_oref(value, what)
            if self.peek() == "(":
                value = self.ctx.obj_call(oref, nm, self.call_args())
            else:
                value = self.ctx.obj_get(oref, nm)
            what = nm
        return value

    def lvalue(self, create):
        if self.peek() == "^":
            nm = self.global_name()
            store = self.ctx.temp_globals()
            node = store.get(nm)
            if node is None:
                node = Node()
                if create:
                    store[nm] = node
            if self.peek() == "(":
                for s in self.subscripts():
                    node = node.child(s, create=True) if create else (node.child(s, create=False) or Node())
            return node
        nm = self.name()
        node = self.vars.get(nm)
        if node is None:
            if not create:
                node = Node()
            else:
                node = self.vars[nm] = Node()
        if self.peek() == "(":
            for s in self.subscripts():
                node = node.child(s, create=True) if create else (node.child(s, create=False) or Node())
        return node

    def varref(self):
        """A variable reference for $GET/$DATA: returns the node or None."""
        if self.peek() == "^":
            nm = "^" + self.global_name()
            node = self.ctx.temp_globals().get(nm[1:])
        else:
            nm = self.name()
            node = self.vars.get(nm)
        subs = self.subscripts() if self.peek() == "(" else []
        for s in subs:
            if node is None:
                break
            node = node.child(s, create=False)
        return node, nm, subs

    # -- expressions ------------------------------------------------------------------------------------------------
    BINOPS = ["**", "'=", "'<", "'>", "'[", "']", "&&", "||", "]]", "+", "-", "*", "/", "\\", "#", "_", "=",
              "<", ">", "[", "]", "&", "!"]

    def expr(self):
        left = self.unary()
        while True:
            op = None
            for o in self.BINOPS:
                if self.s.startswith(o, self.i):
                    op = o
                    break
            if op is None:
                return left
            self.i += len(op)
            right = self.unary()
            left = self.binop(op, left, right)

    def binop(self, op, a, b):
        if op == "+":
            return canon(to_num(a) + to_num(b))
        if op == "-":
            return canon(to_num(a) - to_num(b))
        if op == "*":
            return canon(to_num(a) * to_num(b))
        if op == "**":
            return canon(to_num(a) ** to_num(b))
        if op in ("/", "\\", "#"):
            d = to_num(b)
            if d == 0:
                raise ObjError("DIVIDE")
            n = to_num(a)
            if op == "/":
                r = n / d
                return canon(r)
            if op == "\\":
                return canon(int(n / d))
            return canon(n - d * math.floor(n / d))
        if op == "_":
            return str(a) + str(b)
        if op == "=":
            return "1" if str(a) == str(b) else "0"
        if op == "'=":
            return "0" if str(a) == str(b) else "1"
        if op in ("<", "'>"):
            r = to_num(a) < to_num(b)
            return "1" if (r if op == "<" else to_num(a) <= to_num(b)) else "0"
        if op in (">", "'<"):
            r = to_num(a) > to_num(b)
            return "1" if (r if op == ">" else to_num(a) >= to_num(b)) else "0"
        if op in ("&", "&&"):
            return "1" if truth(a) and truth(b) else "0"
        if op in ("!", "||"):
            return "1" if truth(a) or truth(b) else "0"
        if op == "[":
            return "1" if str(b) in str(a) else "0"
        if op == "'[":
            return "0" if str(b) in str(a) else "1"
        if op in ("]", "]]"):
            return "1" if str(a) > str(b) else "0"
        if op == "']":
            return "0" if str(a) > str(b) else "1"
        raise ObjError("SYNTAX")

    def unary(self):
        c = self.peek()
        if c == "'":
            self.i += 1
            return "0" if truth(self.unary()) else "1"
        if c == "-":
            self.i += 1
            return canon(-to_num(self.unary()))
        if c == "+":
            self.i += 1
            return canon(to_num(self.unary()))
        return self.primary()

    def primary(self, statement=False):
        c = self.peek()
        if c == '"':
            return self.string()
        if c.isdigit() or (c == "." and self.s[self.i + 1:self.i + 2].isdigit()):
            m = _NUM_RE.match(self.s, self.i)
            self.i = m.end()
            return canon(to_num(m.group(0)))
        if c == "(":
            self.i += 1
            v = self.expr()
            self.expect(")")
            return v
        if self.s[self.i:self.i + 8].lower() == "##class(":
            self.i += 8
            m = re.compile(r"%?[A-Za-z][A-Za-z0-9.]*").match(self.s, self.i)
            if not m:
                raise ObjError("SYNTAX")
            cls = m.group(0)
            self.i = m.end()
            self.expect(")")
            self.expect(".")
            meth = self.name()
            args = self.call_args() if self.peek() == "(" else []
            v = self.ctx.call_class(cls, meth, args)
            if self.peek() == "." and re.match(r"\.%?[A-Za-z]", self.s[self.i:]):
                return self.member(v, meth)
            return v
        if self.peek(3) == "$$$":
            raise ObjError("SYNTAX", "(macros are only expanded in compiled code)")
        if self.peek(2) == "$$":
            self.i += 2
            if not re.match(r"%?[A-Za-z0-9]*\^", self.s[self.i:]):
                raise ObjError("NOLINE", "(only extrinsic calls of system routines are emulated)")
            label, routine = self.entryref()
            args = self.call_args() if self.peek() == "(" else []
            v = self.ctx.call_routine(label, routine, args, True)
            return "" if v is None else v
        if c == "$":
            self.i += 1
            nm = self.name().upper()
            if nm == "SYSTEM" and self.peek() == ".":
                self.i += 1
                m = re.compile(r"[A-Za-z][A-Za-z0-9]*").match(self.s, self.i)
                if not m:
                    raise ObjError("SYNTAX")
                cls = "%SYSTEM." + m.group(0)
                self.i = m.end()
                self.expect(".")
                meth = self.name()
                args = self.call_args() if self.peek() == "(" else []
                return self.ctx.call_class(cls, meth, args)
            if self.peek() == "(":
                return self.function(nm)
            return self.ctx.special(nm)
        if c == "^" or c.isalpha() or c == "%":
            node, nm, subs = self.varref()
            if node is None or node.value is None:
                suffix = "(" + ",".join(zwrite_value(s) for s in subs) + ")" if subs else ""
                raise ObjError("UNDEFINED", "*" + nm + suffix)
            if not subs and self.peek() == "." and re.match(r"\.%?[A-Za-z]", self.s[self.i:]):
                return self.member(node.value, nm)
            return node.value
        raise ObjError("SYNTAX")

    def string(self):
        self.expect('"')
        out = []
        while True:
            j = self.s.find('"', self.i)
            if j < 0:
                raise ObjError("SYNTAX")
            out.append(self.s[self.i:j])
            self.i = j + 1
            if self.peek() == '"':
                out.append('"')
                self.i += 1
                continue
            return "".join(out)

    def call_args(self):
        """Positional arguments: None for an omitted one, ByRef for .name, else a string."""
        self.expect("(")
        args = []
        if self.peek() == ")":
            self.i += 1
            return args
        while True:
            if self.peek() in (",", ")"):
                args.append(None)
            elif self.peek() == "." and not self.s[self.i + 1:self.i + 2].isdigit():
                self.i += 1
                nm = self.name()
                node = self.vars.get(nm)
                if node is None:
                    node = self.vars[nm] = Node()
                args.append(ByRef(node, nm))
            else:
                args.append(self.expr())
            if self.peek() == ",":
                self.i += 1
                continue
            self.expect(")")
            return args

    # -- intrinsic functions ----------------------------------------------------------------------------------------
    def function(self, nm):
        if nm in ("S", "SELECT"):
            # $SELECT(cond:value,...): the conditions are evaluated left to right, only the chosen value is
            self.expect("(")
            while True:
                cond = self.expr()
                self.expect(":")
                if truth(cond):
                    v = self.expr()
                    self.skip_to_close()
                    return v
                self.skip_expr()
                if self.peek() == ",":
                    self.i += 1
                    continue
                self.expect(")")
                raise ObjError("SELECT")
        if nm in ("G", "GET", "D", "DATA"):
            self.expect("(")
            node = self.varref()[0]
            default = ""
            if self.peek() == "," and nm in ("G", "GET"):
                self.i += 1
                default = self.expr()
            self.expect(")")
            if nm in ("D", "DATA"):
                return str(node.data() if node is not None else 0)
            return node.value if node is not None and node.value is not None else default
        args = self.call_args()
        vals = ["" if a is None else (a.node.value or "" if isinstance(a, ByRef) else a) for a in args]
        if nm in ("ZB", "ZBOOLEAN"):
            if len(vals) != 3:
                raise ObjError("SYNTAX")
            return canon(zboolean(to_num(vals[0]), to_num(vals[1]), int(to_num(vals[2]))))
        if nm in ("L", "LENGTH"):
            if len(vals) == 1:
                return str(len(vals[0]))
            if vals[1] == "":
                return str(len(vals[0]) + 1)
            return str(vals[0].count(vals[1]) + 1)
        if nm in ("P", "PIECE"):
            s, d = vals[0], vals[1]
            a = int(to_num(vals[2])) if len(vals) > 2 else 1
            b = int(to_num(vals[3])) if len(vals) > 3 else a
            parts = s.split(d) if d else [s]
            return d.join(parts[max(a, 1) - 1:max(b, 0)])
        if nm in ("E", "EXTRACT"):
            s = vals[0]
            a = int(to_num(vals[1])) if len(vals) > 1 else 1
            b = int(to_num(vals[2])) if len(vals) > 2 else a
            return s[max(a, 1) - 1:max(b, 0)]
        if nm in ("C", "CHAR"):
            return "".join(chr(int(to_num(v))) for v in vals if to_num(v) >= 0)
        if nm in ("A", "ASCII"):
            s = vals[0]
            p = int(to_num(vals[1])) if len(vals) > 1 else 1
            return str(ord(s[p - 1])) if 0 < p <= len(s) else "-1"
        if nm in ("LB", "LISTBUILD"):
            return listbuild([None if a is None else (a.node.value or "" if isinstance(a, ByRef) else a)
                              for a in args])
        if nm in ("LI", "LIST", "LG", "LISTGET"):
            items = listitems(vals[0])
            p = int(to_num(vals[1])) if len(vals) > 1 else 1
            if p == -1:
                p = len(items)
            if 0 < p <= len(items) and items[p - 1] is not None:
                return items[p - 1]
            if nm in ("LG", "LISTGET"):
                return vals[2] if len(vals) > 2 else ""
            raise ObjError("NULL VALUE" if 0 < p <= len(items) else "LIST")
        if nm in ("LL", "LISTLENGTH"):
            return str(len(listitems(vals[0])))
        if nm in ("ISOBJECT",):
            return "1" if self.ctx.is_oref(vals[0]) else "0"
        raise ObjError("FUNCTION", "($%s is not in the emulator's subset)" % nm)

    def skip_expr(self, stops=",)"):
        """Skip one expression of a $SELECT pair without evaluating it (quotes and parentheses balanced)."""
        depth = 0
        while not self.eol():
            c = self.peek()
            if c == '"':
                self.string()
                continue
            if depth == 0 and c in stops:
                return
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            self.i += 1
        raise ObjError("SYNTAX")

    def skip_to_close(self):
        """After the chosen $SELECT value: skip the remaining pairs up to and including the closing parenthesis."""
        while self.peek() == ",":
            self.i += 1
            self.skip_expr(":")
            self.expect(":")
            self.skip_expr()
        self.expect(")")


def listbuild(items):
    """$LISTBUILD encoding: per element a length byte (length + 2), a type byte 1 (string) and the characters;
    an omitted element is the single byte 1.  Elements longer than 253 characters use a 0 length byte followed
    by a 2-byte length (the emulator's choice for long elements)."""
    out = []
    for it in items:
        if it is None:
            out.append("\x01")
            continue
        it = str(it)
        if len(it) + 2 < 256:
            out.append(chr(len(it) + 2) + "\x01" + it)
        else:
            out.append("\x00" + chr((len(it) + 4) & 0xFF) + chr((len(it) + 4) >> 8) + "\x01" + it)
    return "".join(out)


def listitems(value):
    """Decode a $LISTBUILD value (``<LIST>`` when it is not one)."""
    s = str(value)
    i = 0
    items = []
    while i < len(s):
        n = ord(s[i])
        if n == 1:
            items.append(None)
            i += 1
            continue
        if n == 0:
            if i + 3 > len(s):
                raise ObjError("LIST")
            n = ord(s[i + 1]) + (ord(s[i + 2]) << 8)
            start = i + 4
            end = i + n
        else:
            start = i + 2
            end = i + n
        if n < 2 or end > len(s):
            raise ObjError("LIST")
        items.append(s[start:end])
        i = end
    return items


def zboolean(a, b, op):
    if op < 0 or op > 15:
        raise ObjError("FUNCTION")
    a, b = int(a), int(b)
    width = max(a.bit_length(), b.bit_length(), 1)
    if op in (8, 9, 10, 11, 12, 13, 14, 15):
        width = 32
    r = 0
    for k in range(width):
        ab, bb = (a >> k) & 1, (b >> k) & 1
        if (op >> (3 - (2 * ab + bb))) & 1:
            r |= 1 << k
    return r
