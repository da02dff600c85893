"""The `java.util.regex` dialect in Python's `re` (docs/mm2-compat.md §3).

Java MM2's filters are Java regexes. `java_regex` translates the syntax where the two dialects differ and
refuses what `re` cannot express, so that a filter never silently matches a different set of names than
Java MM2 would.
"""

from __future__ import annotations

import re
from typing import Final

_MAX_CP = 0x10FFFF
_Ranges = tuple[tuple[int, int], ...]


def _r(*spec: str | tuple[int, int]) -> _Ranges:
    out: list[tuple[int, int]] = []
    for item in spec:
        if isinstance(item, tuple):
            out.append(item)
        else:
            out.extend((ord(c), ord(c)) for c in item)
    return tuple(out)


_LOWER = _r((0x61, 0x7A))
_UPPER = _r((0x41, 0x5A))
_DIGIT = _r((0x30, 0x39))
_PUNCT = _r((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E))
# java.util.regex POSIX classes (US-ASCII only, as in Java without UNICODE_CHARACTER_CLASS).
_POSIX: Final[dict[str, _Ranges]] = {
    "Lower": _LOWER,
    "Upper": _UPPER,
    "ASCII": _r((0x00, 0x7F)),
    "Alpha": _UPPER + _LOWER,
    "Digit": _DIGIT,
    "Alnum": _DIGIT + _UPPER + _LOWER,
    "Punct": _PUNCT,
    "Graph": _r((0x21, 0x7E)),
    "Print": _r((0x20, 0x7E)),
    "Blank": _r(" \t"),
    "Cntrl": _r((0x00, 0x1F), (0x7F, 0x7F)),
    "XDigit": _DIGIT + _r((0x41, 0x46), (0x61, 0x66)),
    "Space": _r(" \t\n\x0b\f\r"),
}
# Java 8+ \h and \v (\v is *not* the vertical-tab character in Java).
_HSPACE = _r(" \t\xa0\u1680\u180e", (0x2000, 0x200A), "\u202f\u205f\u3000")
_VSPACE = _r("\n\x0b\f\r\x85\u2028\u2029")
_LINEBREAK = "(?>\\r\\n|[\\n\\x0b\\f\\r\\x85\\u2028\\u2029])"  # Java 9+ \R
_DOT = "[^\\n\\r\\x85\\u2028\\u2029]"  # Java's `.` stops at every line terminator, not only \n
_END_BEFORE_TERMINATOR = "(?=(?:\\r\\n|[\\n\\r\\x85\\u2028\\u2029])?\\Z)"  # Java \Z
_QUANTIFIER = re.compile(r"\{([0-9]+)(?:,([0-9]*))?\}")
_NAMED_GROUP = re.compile(r"\(\?<([a-zA-Z][a-zA-Z0-9]*)>")
_FLAG_GROUP = re.compile(r"\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])")
_FLAG_MAP: Final = {"i": "i", "m": "m", "s": "s"}
_JAVA_ONLY_FLAGS: Final = {
    "d": "UNIX_LINES",
    "u": "UNICODE_CASE",
    "U": "UNICODE_CHARACTER_CLASS",
    "x": "COMMENTS (whitespace rules differ in character classes)",
}


def _complement(ranges: _Ranges) -> _Ranges:
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in sorted(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = max(nxt, hi + 1)
    if nxt <= _MAX_CP:
        out.append((nxt, _MAX_CP))
    return tuple(out)


def _char(cp: int) -> str:
    """A code point as an escape that means that one character in and out of a Python character class."""
    if cp < 0x80 and (chr(cp).isalnum() or chr(cp) == "_"):
        return chr(cp)
    if cp <= 0xFF:
        return f"\\x{cp:02x}"
    if cp <= 0xFFFF:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def _ranges_body(ranges: _Ranges) -> str:
    return "".join(_char(lo) if lo == hi else f"{_char(lo)}-{_char(hi)}" for lo, hi in ranges)


class _Translator:
    """One pass over a Java pattern, producing an equivalent Python pattern or raising ValueError."""

    def __init__(self, pattern: str) -> None:
        self.src = pattern
        self.s = _remove_qe_quoting(pattern)
        self.i = 0
        self.out: list[str] = []
        # Per open group: how many `(?flags:` scopes we opened for Java's mid-group `(?flags)` switches.
        self.flag_scopes: list[list[str]] = [[]]
        self.groups = 0  # capturing groups opened so far
        self.open_groups: list[int] = []  # per open group: its capture number, 0 if not capturing
        self.dotall = [False]  # per open group: is Java's DOTALL (s) in effect here

    def fail(self, what: str, hint: str = "") -> ValueError:
        return ValueError(f"Java regex {self.src!r}: {what} is not supported by Python's re{hint}")

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def translate(self) -> str:
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c == "\\":
                self.out.append(self.escape(in_class=False))
            elif c == "[":
                self.out.append(self.char_class())
            elif c == "(":
                self.group_open()
            elif c == ")":
                self.out.append(")" * len(self.flag_scopes[-1]))
                if len(self.flag_scopes) == 1:
                    raise ValueError(f"Java regex {self.src!r}: unmatched ')'")
                self.flag_scopes.pop()
                self.open_groups.pop()
                self.dotall.pop()
                self.out.append(")")
                self.i += 1
            elif c == "|":
                scopes = self.flag_scopes[-1]
                self.out.append(")" * len(scopes) + "|" + "".join(f"(?{f}:" for f in scopes))
                self.i += 1
            elif c == "{":
                m = _QUANTIFIER.match(s, self.i)
                if m is None:
                    raise ValueError(f"Java regex {self.src!r}: illegal repetition at index {self.i}")
                if m.group(2) and int(m.group(2)) < int(m.group(1)):
                    raise ValueError(f"Java regex {self.src!r}: illegal repetition range at index {self.i}")
                self.out.append(m.group(0))
                self.i = m.end()
            elif c == ".":
                self.out.append("." if self.dotall[-1] else _DOT)
                self.i += 1
            else:
                self.out.append(c)
                self.i += 1
        if len(self.flag_scopes) != 1:
            raise ValueError(f"Java regex {self.src!r}: unclosed group")
        self.out.append(")" * len(self.flag_scopes[0]))
        return "".join(self.out)

    # -- groups -------------------------------------------------------------------------------------------

    def group_open(self) -> None:
        s, i = self.s, self.i
        if not s.startswith("(?", i):
            self.push_group(capturing=True)
            self.out.append("(")
            self.i += 1
            return
        rest = s[i + 2 : i + 4]
        if rest[:1] in (":", "=", "!", ">") or rest in ("<=", "<!"):
            width = 3 if rest[:1] in (":", "=", "!", ">") else 4
            self.push_group(capturing=False)
            self.out.append(s[i : i + width])
            self.i += width
            return
        if rest[:1] == "<":  # named group (?<name>...)
            m = _NAMED_GROUP.match(s, i)
            if m is None:
                raise ValueError(f"Java regex {self.src!r}: bad named group at index {i}")
            self.push_group(capturing=True)
            self.out.append(f"(?P<{m.group(1)}>")
            self.i = m.end()
            return
        m = _FLAG_GROUP.match(s, i)
        if m is None:
            raise ValueError(f"Java regex {self.src!r}: unknown group construct at index {i}")
        on, off, end = m.group(1), m.group(2) or "", m.group(3)
        flags = self.flags(on) + ("-" + self.flags(off) if off else "")
        self.i = m.end()
        if end == ":":
            self.push_group(capturing=False)
            self.out.append(f"(?{flags}:" if flags else "(?:")
        if "s" in on:
            self.dotall[-1] = True
        if "s" in off:
            self.dotall[-1] = False
        if end == ")" and flags:
            # Java applies the flags up to the end of the enclosing group, across `|`; Python 3.11 only
            # has scoped flags there, so open a scope that is closed (and reopened) at `|` and `)`.
            self.flag_scopes[-1].append(flags)
            self.out.append(f"(?{flags}:")

    def push_group(self, capturing: bool) -> None:
        self.flag_scopes.append([])
        self.dotall.append(self.dotall[-1])
        if capturing:
            self.groups += 1
        self.open_groups.append(self.groups if capturing else 0)

    def back_reference(self, first: str) -> str:
        """Java reads more digits only while they still name a group that exists at this point."""
        ref = int(first)
        while self.peek().isdigit() and self.peek().isascii() and ref * 10 + int(self.peek()) <= self.groups:
            ref = ref * 10 + int(self.peek())
            self.i += 1
        if ref > self.groups:
            return "(?!)"  # Java compiles a reference to a missing group; it never matches
        if ref in self.open_groups:
            raise self.fail(f"back-reference \\{ref} to a group that is still open")
        return f"(?:\\{ref})"  # grouped so that a following literal digit cannot extend it

    def flags(self, letters: str) -> str:
        out = []
        for f in letters:
            if f in _FLAG_MAP:
                out.append(_FLAG_MAP[f])
            elif f in _JAVA_ONLY_FLAGS:
                raise self.fail(f"inline flag ({f}) {_JAVA_ONLY_FLAGS[f]}")
            else:
                raise ValueError(f"Java regex {self.src!r}: unknown inline flag {f!r}")
        return "".join(dict.fromkeys(out))

    # -- escapes ------------------------------------------------------------------------------------------

    def escape(self, in_class: bool) -> str:
        """Translate the escape at self.i (a backslash); in a class, return class-body text."""
        s = self.s
        if self.i + 1 >= len(s):
            raise ValueError(f"Java regex {self.src!r}: trailing backslash")
        c = s[self.i + 1]
        self.i += 2
        if c in "dDwWsS":
            return "\\" + c
        if c in "pP":
            ranges = self.property_class(c == "P")
            return _ranges_body(ranges) if in_class else f"[{_ranges_body(ranges)}]"
        if c in "hHvV":
            ranges = _HSPACE if c in "hH" else _VSPACE
            if c.isupper():
                ranges = _complement(ranges)
            return _ranges_body(ranges) if in_class else f"[{_ranges_body(ranges)}]"
        cp = self.char_escape(c)
        if cp is not None:
            return _char(cp)
        if in_class:
            raise self.fail(f"'\\{c}' inside a character class")
        if c in "bBA":
            if s.startswith("{", self.i):
                raise self.fail(f"'\\{c}{{...}}'")
            return "\\" + c
        if c == "z":
            return "\\Z"
        if c == "Z":
            return _END_BEFORE_TERMINATOR
        if c == "R":
            return _LINEBREAK
        if c == "k":
            m = re.compile(r"<([a-zA-Z][a-zA-Z0-9]*)>").match(s, self.i)
            if m is None:
                raise ValueError(f"Java regex {self.src!r}: bad named back-reference")
            self.i = m.end()
            return f"(?P={m.group(1)})"
        if c in "123456789":
            return self.back_reference(c)
        if c == "N":
            m = re.compile(r"\{[^}]*\}").match(s, self.i)
            if m is None:
                raise ValueError(f"Java regex {self.src!r}: bad \\N{{...}} escape")
            self.i = m.end()
            return "\\N" + m.group(0)
        raise self.fail(f"escape '\\{c}'")

    def char_escape(self, c: str) -> int | None:
        """Escapes that denote one character; self.i is just past the escape letter. None if not one."""
        s = self.s
        simple = {"t": 9, "n": 10, "r": 13, "f": 12, "a": 7, "e": 27}
        if c in simple:
            return simple[c]
        if c == "0":
            m = re.compile(r"[0-3][0-7]{2}|[0-7]{1,2}").match(s, self.i)
            if m is None:
                raise ValueError(f"Java regex {self.src!r}: illegal octal escape sequence")
            self.i = m.end()
            return int(m.group(0), 8)
        if c == "x":
            m = re.compile(r"\{([0-9a-fA-F]+)\}|[0-9a-fA-F]{2}").match(s, self.i)
            if m is None:
                raise ValueError(f"Java regex {self.src!r}: illegal hexadecimal escape sequence")
            self.i = m.end()
            cp = int(m.group(1) or m.group(0), 16)
            if cp > _MAX_CP:
                raise ValueError(f"Java regex {self.src!r}: hexadecimal code point is too big")
            return cp
        if c == "u":
            m = re.compile(r"[0-9a-fA-F]{4}").match(s, self.i)
            if m is None:
                raise ValueError(f"Java regex {self.src!r}: illegal Unicode escape sequence")
            self.i = m.end()
            cp = int(m.group(0), 16)
            low = re.compile(r"\\u(d[c-f][0-9a-f]{2})", re.IGNORECASE).match(s, self.i)
            if 0xD800 <= cp <= 0xDBFF and low is not None:  # Java joins an escaped surrogate pair
                self.i = low.end()
                cp = 0x10000 + ((cp - 0xD800) << 10) + (int(low.group(1), 16) - 0xDC00)
            return cp
        if c == "c":
            if self.i >= len(s):
                raise ValueError(f"Java regex {self.src!r}: illegal control escape sequence")
            self.i += 1
            return ord(s[self.i - 1]) ^ 64
        if not c.isascii() or not c.isalnum():
            return ord(c)  # an escaped non-alphanumeric character is itself
        return None

    def property_class(self, negated: bool) -> _Ranges:
        s = self.s
        if s.startswith("{", self.i):
            end = s.find("}", self.i)
            if end < 0:
                raise ValueError(f"Java regex {self.src!r}: unclosed character family")
            name = s[self.i + 1 : end]
            self.i = end + 1
        else:
            name = s[self.i : self.i + 1]
            self.i += 1
        if name.startswith("^"):  # \p{^Alpha} is Java's other spelling of \P{Alpha}
            negated, name = not negated, name[1:]
        base = name[2:] if name.startswith("Is") and name[2:] in _POSIX else name
        ranges = _POSIX.get(base)
        if ranges is None:
            raise self.fail(
                f"character property \\p{{{name}}}", " (only the POSIX classes such as \\p{Alpha} are)"
            )
        return _complement(ranges) if negated else ranges

    # -- character classes --------------------------------------------------------------------------------

    def char_class(self) -> str:
        """Translate `[...]` at self.i, escaping every literal so Python reads no set operation into it."""
        s = self.s
        self.i += 1
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        body: list[str] = []
        first = True
        while True:
            if self.i >= len(s):
                raise ValueError(f"Java regex {self.src!r}: unclosed character class")
            c = s[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "[":
                raise self.fail("a nested character class (union)")
            if s.startswith("&&", self.i):
                raise self.fail("character class intersection '&&'")
            lo = self.class_atom()
            if isinstance(lo, str):  # a predefined class: never a range endpoint, Java reads '-' literally
                body.append(lo)
                continue
            if self.peek() == "-" and self.peek(1) not in ("]", "[", ""):
                self.i += 1
                hi = self.class_atom()
                if isinstance(hi, str):
                    raise ValueError(f"Java regex {self.src!r}: illegal character range")
                if hi < lo:
                    raise ValueError(f"Java regex {self.src!r}: illegal character range")
                body.append(f"{_char(lo)}-{_char(hi)}")
            else:
                body.append(_char(lo))
        if not body:
            raise ValueError(f"Java regex {self.src!r}: empty character class")
        return "[" + ("^" if negate else "") + "".join(body) + "]"

    def class_atom(self) -> int | str:
        """One class member: a code point, or the body text of a predefined class."""
        s = self.s
        c = s[self.i]
        if c != "\\":
            self.i += 1
            return ord(c)
        start = self.i
        if self.i + 1 < len(s):
            escaped = self.char_escape_at()
            if escaped is not None:
                return escaped
        self.i = start
        return self.escape(in_class=True)

    def char_escape_at(self) -> int | None:
        start = self.i
        c = self.s[self.i + 1]
        self.i += 2
        cp = self.char_escape(c)
        if cp is None:
            self.i = start
        return cp


def _remove_qe_quoting(pattern: str) -> str:
    """Replace Java `\\Q...\\E` quoting with escapes, as Java's own `RemoveQEQuoting` does first."""
    if "\\Q" not in pattern:
        return pattern
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            if pattern[i + 1] != "Q":
                out.append(pattern[i : i + 2])
                i += 2
                continue
            end = pattern.find("\\E", i + 2)
            quoted = pattern[i + 2 :] if end < 0 else pattern[i + 2 : end]
            # Letters stay as they are; everything else becomes an escape that cannot merge with neighbours.
            out.extend(q if q.isascii() and q.isalpha() else f"\\x{{{ord(q):x}}}" for q in quoted)
            i = n if end < 0 else end + 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def java_regex(pattern: str) -> re.Pattern[str]:
    """Compile a `java.util.regex` pattern as an equivalent Python pattern.

    Handled: `\\Q...\\E`, possessive quantifiers and atomic groups (native in 3.11), `(?<name>...)` and
    `\\k<name>`, inline flags `i`/`m`/`s` anywhere (Java scopes them to the rest of the group), `\\p{Alpha}`
    and the other POSIX classes, `\\h`/`\\v`/`\\R`, `\\z`/`\\Z`, `\\e`, `\\cX`, `\\0ooo`, `\\x{h..}`.
    Java's default ASCII meaning of `\\w`, `\\d`, `\\s`, `\\b` and of `(?i)` is kept with `re.ASCII`.

    Raises ValueError for what Python cannot express (class unions and intersections, Unicode properties
    such as `\\p{L}`, `\\G`, `\\X`, the `d`/`u`/`U`/`x` flags) and for invalid patterns. `.` stops at all
    of Java's line terminators; `^` and `$` only know `\\n` (Kafka topic names cannot contain any).
    """
    translated = _Translator(pattern).translate()
    try:
        return re.compile(translated, re.ASCII)
    except re.error as exc:
        raise ValueError(f"Java regex {pattern!r} cannot be compiled: {exc}") from exc
