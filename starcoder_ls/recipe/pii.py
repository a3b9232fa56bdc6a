"""Redaction of personal data and secrets, the way BigCode prepared StarCoder's training data.

A completion model that saw a password or an API key in training can hand it to a stranger
later, so the literal is replaced by a placeholder (``<EMAIL>``, ``<IP_ADDRESS>``, ``<KEY>``,
``<PASSWORD>``, StarCoder's own spelling). Only the secret literal changes: quotes, the
assignment and the rest of the line stay, so the model still learns what such code looks like.

Choices that keep ordinary code intact (each mirrors a StarCoder rule or guards a false hit):

* IP addresses are validated with :mod:`ipaddress`; private, loopback, link-local, reserved,
  multicast, unspecified and documentation addresses are kept, and so are well-known public DNS
  resolvers (8.8.8.8, 1.1.1.1, ...): none of them identifies anybody.
* A dotted quad is taken for a version number and kept when every part is a single digit
  (``1.2.3.4``) and the line says nothing about hosts or networks (StarCoder's rule), when the
  line names a version before it (``__version__ = "52.1.20.7"``, ``version: ...``), or when a
  version operator precedes it (``numpy>=1.26.4.1``).
* Emails at the RFC 2606 example domains (``example.com``, ``*.test``, ...) and ``git@host``
  SSH remotes are kept: they are not personal.
* Empty strings, ``None``/``null``, ``${VAR}``/``{}``/``%s`` templates, ``<...>`` and
  ``****``-style placeholders, and values read from the environment are not secrets.
* A generic ``api_key|secret|token = "..."`` value is a key only when it looks random: at
  least 16 characters without spaces, with a digit, and Shannon entropy of 3 bits per
  character or more; ``token_type = "bearer"`` stays.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

EMAIL = "<EMAIL>"
IP_ADDRESS = "<IP_ADDRESS>"
KEY = "<KEY>"
PASSWORD = "<PASSWORD>"
PLACEHOLDERS: tuple[str, ...] = (EMAIL, IP_ADDRESS, KEY, PASSWORD)

# Public resolvers StarCoder's pipeline left in place (Google, Cloudflare, Quad9, OpenDNS, ...).
PUBLIC_DNS: frozenset[str] = frozenset(
    {
        "8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112",
        "208.67.222.222", "208.67.220.220", "76.76.19.19", "76.223.122.150", "8.26.56.26",
        "8.20.247.20", "94.140.14.14", "94.140.15.15", "2001:4860:4860::8888",
        "2001:4860:4860::8844", "2606:4700:4700::1111", "2606:4700:4700::1001",
    }
)  # fmt: skip

_EXAMPLE_DOMAIN_RE = re.compile(
    r"(?:^|\.)(?:example\.(?:com|org|net)|example|test|invalid|localhost)$", re.IGNORECASE
)
_PLACEHOLDER_VALUES = frozenset(
    {
        "none", "null", "nil", "undefined", "true", "false", "~", "password", "passwd",
        "secret", "changeme", "change_me", "changeit", "your_password", "yourpassword",
        "your-password", "mypassword", "my_password", "placeholder", "example", "redacted",
        "dummy", "todo", "fixme", "xxx", "<password>", "<secret>",
    }
)  # fmt: skip
_NETWORK_WORDS_RE = re.compile(
    r"(?i)\b(?:ip|ips|ipv4|addr|address|host|hosts|server|dns|net|route)"
)
_VERSION_WORDS_RE = re.compile(r"(?i)version|\bver\b|\brelease\b|\bv$")
_VERSION_OPERATOR_RE = re.compile(r"(?:[<>~!=^]=|[<>~^])[ \t]*$")  # numpy>=1.26.4.1

_PEM_RE = re.compile(
    r"(?P<begin>-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----)(?P<body>.*?)"
    r"(?P<end>-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----)",
    re.DOTALL,
)
_PEM_BODY_RUN_RE = re.compile(r"(?<!\\)[A-Za-z0-9+/=]{8,}")
_TOKEN_RES: tuple[re.Pattern[str], ...] = (
    re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|A3T[A-Z0-9])[A-Z0-9]{16}\b"),
    re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}\b"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b"),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,250}"),
    re.compile(r"(?<=hooks\.slack\.com/services/)T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+"),
)

_KEY_NAME = r"[\w.\-]*?(?:api[_\-]?key|secret|token|access[_\-]?key|private[_\-]?key|auth[_\-]?key|credentials?)[\w\-]*"
_PASSWORD_NAME = r"[\w.\-]*?(?:password|passwd|passphrase|pass_word)"
_SEP = r"[\"']?[ \t]*(?::=|=>|=|:)[ \t]*"


def _quoted(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(?<![\w.\-])(?P<name>{name}){_SEP}(?P<q>[\"'`])(?P<value>[^\"'`\\\n]*)(?P=q)",
        re.IGNORECASE,
    )


def _unquoted(name: str) -> re.Pattern[str]:
    """``passwd: hunter2`` (YAML, .env, INI, shell): a bare value that ends the line."""
    return re.compile(
        rf"^[ \t]*(?:export[ \t]+)?[\"']?(?P<name>{name}){_SEP}"
        rf"(?P<value>[^\s\"'`#;,]+)[ \t]*(?:#.*)?$",
        re.IGNORECASE | re.MULTILINE,
    )


_KEY_QUOTED_RE = _quoted(_KEY_NAME)
_KEY_BARE_RE = _unquoted(_KEY_NAME)
_PASSWORD_QUOTED_RE = _quoted(_PASSWORD_NAME)
_PASSWORD_BARE_RE = _unquoted(_PASSWORD_NAME)
_URL_CREDENTIALS_RE = re.compile(r"(?<=://)(?P<user>[^/\s:@\"'`]+):(?P<value>[^/\s@\"'`]+)@")

# Cheap literal-led searches that find the lines worth running the full rules on.
_TRIGGERS = (
    "password",
    "passwd",
    "passphrase",
    "pass_word",
    "key",
    "secret",
    "token",
    "credential",
    "://",
)
_TOKEN_GATE_RE = re.compile(r"A[KSGIRN3][A-Z0-9]|gh[pousr]_|github_pat_|xox|hooks\.slack")
_IPV4_GATE_RE = re.compile(r"\.\d{1,3}\.\d{1,3}\.")
_IPV6_GATE_RE = re.compile(r"::|:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:")
_EMAIL_RE = re.compile(
    r"(?<![\w.%+\-])(?P<local>\w[\w.%+\-]*)@"
    r"(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24})(?![\w\-])"
)
_IPV4_RE = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IPV6_RE = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:]|\.\d)")


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values())


def _is_placeholder(value: str) -> bool:
    stripped = value.strip()
    return (
        not stripped
        or stripped.lower() in _PLACEHOLDER_VALUES
        or len(set(stripped)) == 1  # "****", "xxxxxxxx"
        or stripped[0] in "$%{<[(!&*@"
        or "{" in stripped  # templates: "{}", "{password}", "${PASS}"
        or stripped.startswith(("os.", "process.env", "ENV[", "env("))
    )


def _looks_random(value: str) -> bool:
    """A generic secret is a long, spaceless, high-entropy string with a digit in it."""
    return (
        len(value) >= 16
        and not any(c.isspace() for c in value)
        and any(c.isdigit() for c in value)
        and "://" not in value
        and not value.startswith(("/", "."))
        and not _is_placeholder(value)
        and _entropy(value) >= 3.0
    )


def _looks_password(value: str) -> bool:
    return (
        0 < len(value) <= 256 and not any(c.isspace() for c in value) and not _is_placeholder(value)
    )


def _looks_bare_password(value: str) -> bool:
    """A bare value might be a variable (``password = pw``, ``password: str``); only one with a
    digit or a symbol, and no call, attribute or index syntax, is taken for a literal."""
    return (
        _looks_password(value)
        and any(not (c.isalpha() or c == "_") for c in value)
        and not any(c in "()[].$" for c in value)
    )


def _value_replacer(
    placeholder: str, accept: Callable[[str], bool], counts: Counter[str]
) -> Callable[[re.Match[str]], str]:
    def repl(m: re.Match[str]) -> str:
        value = m.group("value")
        if not accept(value):
            return m.group(0)
        counts[placeholder] += 1
        start, end = m.start("value") - m.start(), m.end("value") - m.start()
        whole = m.group(0)
        return whole[:start] + placeholder + whole[end:]

    return repl


def _positions(haystack: str, needles: tuple[str, ...]) -> Iterator[int]:
    for needle in needles:
        i = haystack.find(needle)
        while i >= 0:
            yield i
            i = haystack.find(needle, i + len(needle))


def _on_lines(text: str, positions: Iterable[int], fn: Callable[[str], str]) -> str:
    """Apply ``fn`` to just the lines holding ``positions``.

    Every rule here is confined to one line, and running a rule only where a cheap literal
    search found its trigger ("@", "password", "::") makes redaction several times faster
    than running each full regex over every byte of a large corpus.
    """
    spans = set()
    for p in positions:
        end = text.find("\n", p)
        spans.add((text.rfind("\n", 0, p) + 1, len(text) if end < 0 else end))
    if not spans:
        return text
    out, pos = [], 0
    for start, end in sorted(spans):
        out.append(text[pos:start])
        out.append(fn(text[start:end]))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _redact_pem(text: str, counts: Counter[str]) -> str:
    """Blank the base64 body of a private key but keep its BEGIN/END lines and whatever string
    quoting the body was written in."""

    def repl(m: re.Match[str]) -> str:
        written = False

        def run(_: re.Match[str]) -> str:
            nonlocal written
            first, written = not written, True
            return KEY if first else ""

        body = _PEM_BODY_RUN_RE.sub(run, m.group("body"))
        counts[KEY] += 1
        return m.group("begin") + body + m.group("end")

    return _PEM_RE.sub(repl, text)


def _keep_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
        or str(ip) in PUBLIC_DNS
    )


def _looks_like_version(line: str, m: re.Match[str]) -> bool:
    before = line[: m.start()]
    if _VERSION_OPERATOR_RE.search(before) or _VERSION_WORDS_RE.search(before.rstrip(" \t\"':=")):
        return True
    return len(m.group(0)) == 7 and not _NETWORK_WORDS_RE.search(line)


def _ip_replacer(counts: Counter[str], version_check: bool) -> Callable[[re.Match[str]], str]:
    def repl(m: re.Match[str]) -> str:
        try:
            ip = ipaddress.ip_address(m.group(0))
        except ValueError:  # 300.1.2.3, 01.2.3.4, "12:30:45", "aa:bb:cc:dd:ee:ff"
            return m.group(0)
        if _keep_ip(ip) or (version_check and _looks_like_version(m.string, m)):
            return m.group(0)
        counts[IP_ADDRESS] += 1
        return IP_ADDRESS

    return repl


def _email_replacer(counts: Counter[str]) -> Callable[[re.Match[str]], str]:
    def repl(m: re.Match[str]) -> str:
        if m.group("local").lower() == "git" or _EXAMPLE_DOMAIN_RE.search(m.group("domain")):
            return m.group(0)
        counts[EMAIL] += 1
        return EMAIL

    return repl


def _key_replacer(counts: Counter[str]) -> Callable[[re.Match[str]], str]:
    def repl(m: re.Match[str]) -> str:
        counts[KEY] += 1
        return KEY

    return repl


def redact(text: str) -> tuple[str, Counter[str]]:
    """Replace emails, public IP addresses, keys and passwords; return the text and how many of
    each placeholder were written.

    Specific token formats go first, so that ``token = "ghp_..."`` is one ``<KEY>``, not two
    overlapping hits; then generic assignments, URL credentials, emails and addresses.
    """
    counts: Counter[str] = Counter()
    if "PRIVATE KEY" in text:
        text = _redact_pem(text, counts)
    key = _key_replacer(counts)

    def tokens(line: str) -> str:
        for pattern in _TOKEN_RES:
            line = pattern.sub(key, line)
        return line

    text = _on_lines(text, (m.start() for m in _TOKEN_GATE_RE.finditer(text)), tokens)

    assignments = (
        (_KEY_QUOTED_RE, _value_replacer(KEY, _looks_random, counts)),
        (_KEY_BARE_RE, _value_replacer(KEY, _looks_random, counts)),
        (_PASSWORD_QUOTED_RE, _value_replacer(PASSWORD, _looks_password, counts)),
        (_PASSWORD_BARE_RE, _value_replacer(PASSWORD, _looks_bare_password, counts)),
        (_URL_CREDENTIALS_RE, _value_replacer(PASSWORD, _looks_password, counts)),
    )

    def assignment(line: str) -> str:
        for pattern, repl in assignments:
            line = pattern.sub(repl, line)
        return line

    low = text.lower()
    if len(low) == len(text):
        text = _on_lines(text, _positions(low, _TRIGGERS), assignment)
    else:  # a few letters (e.g. "İ") change length when lowered: offsets would not line up
        text = assignment(text)
    text = _on_lines(
        text, _positions(text, ("@",)), lambda ln: _EMAIL_RE.sub(_email_replacer(counts), ln)
    )
    ipv4 = (m.start() for m in _IPV4_GATE_RE.finditer(text))
    text = _on_lines(text, ipv4, lambda ln: _IPV4_RE.sub(_ip_replacer(counts, True), ln))
    ipv6 = (m.start() for m in _IPV6_GATE_RE.finditer(text))
    text = _on_lines(text, ipv6, lambda ln: _IPV6_RE.sub(_ip_replacer(counts, False), ln))
    return text, counts
