"""A planted-secret corpus: credentials of 25 kinds, in the formats their issuers document,
with random values (seeded), written into a workspace the way careless code holds them.

Used by the end-to-end leak test (``tests/serve/test_secrets_e2e.py``) and the benchmark
(``bench/secrets_bench.py``): every request a remote backend receives is searched for each
secret and for fragments of it (a partial mask is a leak too).
"""

from __future__ import annotations

import base64
import random
import re
import string
import textwrap
from dataclasses import dataclass
from pathlib import Path

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"
HEX = "0123456789abcdef"


@dataclass(frozen=True)
class Planted:
    kind: str
    code: str
    """Python source holding the secret (one or more lines)."""
    value: str
    """The secret; for a key block, its body."""

    @property
    def marker(self) -> str:
        """The code just before the secret (``AWS_ACCESS_KEY_ID = "``): in a prompt, it shows
        that the secret's line was there, masked or not."""
        first = self.value.splitlines()[0]
        line = next(x for x in self.code.splitlines() if first in x or "BEGIN" in x)
        if first not in line:
            return line
        # A key name glued to the value (``AccountKey=...``) may be masked with it.
        return re.sub(r"\w+=$", "", line.split(first)[0])

    def needles(self) -> list[str]:
        """Strings whose presence in a request means a leak: the secret, and 12-character
        pieces of its start, middle and end (each piece of a key block's lines)."""
        values = [v for v in self.value.splitlines() if v.strip()] or [self.value]
        out: list[str] = []
        for v in values:
            out.append(v)
            if len(v) >= 24:
                mid = len(v) // 2
                out += [v[:12], v[mid - 6 : mid + 6], v[-12:]]
        return out


def _r(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def corpus(seed: int = 0) -> list[Planted]:
    rng = random.Random(seed)
    r = lambda alphabet, n: _r(rng, alphabet, n)  # noqa: E731
    up = string.ascii_uppercase + string.digits
    key_lines = [r(B64, 64) for _ in range(5)]
    jwt = (
        ".".join(
            base64.urlsafe_b64encode(part.encode()).decode().rstrip("=")
            for part in ('{"alg":"HS256","typ":"JWT"}', '{"sub":"' + r(HEX, 16) + '","adm":true}')
        )
        + "."
        + r(URLSAFE, 43)
    )
    basic = base64.b64encode(f"deploy:{r(ALNUM, 18)}".encode()).decode()
    items = [
        ("aws_access_key_id", 'AWS_ACCESS_KEY_ID = "{}"', "AKIA" + r(up, 16)),
        ("aws_secret_access_key", 'aws_secret_access_key = "{}"', r(B64, 40)),
        ("github_pat", 'GITHUB_TOKEN = "{}"', "ghp_" + r(ALNUM, 36)),
        ("github_fine_grained", 'gh = Github("{}")', "github_pat_" + r(ALNUM, 22) + "_" + r(ALNUM, 59)),
        ("gitlab_pat", 'gl = gitlab.Gitlab(url, private_token="{}")', "glpat-" + r(URLSAFE, 20)),
        ("slack_bot", 'SLACK_BOT = "{}"', f"xoxb-{r(string.digits, 12)}-{r(string.digits, 13)}-{r(ALNUM, 24)}"),
        ("slack_webhook", 'WEBHOOK = "{}"', f"https://hooks.slack.com/services/T{r(up, 8)}/B{r(up, 10)}/{r(ALNUM, 24)}"),
        ("stripe_live", 'stripe.api_key = "{}"', "sk_live_" + r(ALNUM, 24)),
        ("openai", 'client = OpenAI(api_key="{}")', "sk-proj-" + r(URLSAFE, 64)),
        ("anthropic", 'anthropic_client = Anthropic(api_key="{}")', "sk-ant-api03-" + r(URLSAFE, 93) + "AA"),
        ("huggingface", 'login(token="{}")', "hf_" + r(string.ascii_letters, 34)),
        ("google_api", 'maps = googlemaps.Client(key="{}")', "AIza" + r(URLSAFE, 35)),
        ("sendgrid", 'sg = SendGridAPIClient("{}")', f"SG.{r(URLSAFE, 22)}.{r(URLSAFE, 43)}"),
        ("twilio", 'TWILIO_API_KEY_SID = "{}"', "SK" + r(HEX, 32)),
        ("npm", 'NPM_PUBLISH = "{}"', "npm_" + r(ALNUM, 36)),
        ("pypi", 'twine_password = "{}"', "pypi-AgEIcHlwaS5vcmc" + r(URLSAFE, 90)),
        ("jwt", 'SERVICE_JWT = "{}"', jwt),
        ("password_assignment", 'DB_PASSWORD = "{}"', r(ALNUM, 10) + "!#" + r(ALNUM, 6)),
        ("password_in_url", 'DATABASE_URL = "postgresql://app:{}@db.internal:5432/app"', r(ALNUM, 20)),
        ("high_entropy_literal", 'CACHE_NONCE = "{}"', r(B64, 44)),
        ("discord_bot", 'DISCORD = "{}"', f"M{r(URLSAFE, 23)}.{r(URLSAFE, 6)}.{r(URLSAFE, 27)}"),
        ("telegram_bot", 'bot = telebot.TeleBot("{}")', f"{r(string.digits, 10)}:AA{r(URLSAFE, 33)}"),
        ("azure_storage", 'CONN = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={};EndpointSuffix=core.windows.net"', r(B64, 86) + "=="),
        ("basic_auth_header", 'HEADERS = {{"Authorization": "Basic {}"}}', basic),
    ]  # fmt: skip
    planted = [Planted(kind, code.format(value), value) for kind, code, value in items]
    block = "\n".join(key_lines)
    pem = (
        'PRIVATE_KEY = """-----BEGIN RSA PRIVATE KEY-----\n'
        + block
        + '\n-----END RSA PRIVATE KEY-----\n"""'
    )
    planted.append(Planted("rsa_private_key", pem, block))
    return planted


ORDINARY_LINES = (
    "api_key: str",
    "def api_key(self) -> str:",
    "password = os.environ['DB_PASSWORD']",
    "token = request.headers.get('Authorization')",
    "secret_name = 'prod/db'",
    "self.password = password",
    "API_KEY_ENV = 'OPENAI_API_KEY'",
    "url = f'https://{host}:{port}/v1'",
    "hashed = hashlib.sha256(data).hexdigest()",
)
"""Code that names credentials without holding one: must reach the backend unchanged."""


@dataclass(frozen=True)
class Scenario:
    """A workspace with the corpus planted along every road into a prompt."""

    root: Path
    planted: list[Planted]
    cursor_file: Path
    cursor_text: str
    cursors: list[tuple[int, int]]
    """(line, column) positions to complete at."""
    edited_file: Path
    edited_text: str
    edit_line: int
    """A line of ``edited_file`` to edit (the recent-edits ring takes the chunk around it)."""


def plant(root: Path, seed: int = 0) -> Scenario:
    """Writes the workspace: ``settings.py`` (imported: outlines of its constants),
    ``clients.py`` (code like the cursor's: similar-code windows), ``jobs.py`` (edited while
    open: the recent-edits ring), each holding a quarter of the corpus, and ``app.py`` (the
    cursor's file: every kind just above the cursor, a quarter 1,200 lines away)."""
    planted = corpus(seed)
    shares = [planted[i::4] for i in range(4)]
    root.mkdir(parents=True, exist_ok=True)
    settings = ['"""Settings."""', "", "import os", "", *[p.code for p in shares[0]]]
    settings += [
        "",
        "",
        "def database_url() -> str:",
        '    return os.environ.get("DATABASE_URL", "")',
    ]
    (root / "settings.py").write_text("\n".join(settings) + "\n")
    clients = ["import requests", "", ""]
    for i, p in enumerate(shares[1]):
        clients += [
            f"def fetch_report_{i}(session, report_id):",
            f"    {p.code.splitlines()[0]}" if "\n" not in p.code else "    pass",
            "    response = session.get(f'/reports/{report_id}', timeout=10)",
            "    response.raise_for_status()",
            "    return response.json()",
            "",
            "",
        ]
        if "\n" in p.code:
            clients += [p.code, "", ""]
    (root / "clients.py").write_text("\n".join(clients) + "\n")
    jobs = ['"""Background jobs."""', "", ""]
    jobs += [p.code for p in shares[2]]
    jobs += ["", "", "def nightly():", "    return 1", ""]
    edited_text = "\n".join(jobs) + "\n"
    (root / "jobs.py").write_text(edited_text)
    # Near the cursor: every kind (the in-file road); 1,200 lines up: a share of them.
    near, far = planted, shares[3]
    head = ["import requests", "from settings import *", "from jobs import nightly", "", ""]
    head += [p.code for p in far]
    head += ["", ""]
    filler = [f"def step_{i}(x):\n    return x + {i}\n\n" for i in range(400)]
    body = "".join(filler).splitlines()
    tail = ["", "", *ORDINARY_LINES, ""]
    # Inside a function: top-level names defined in view would keep settings.py's namesakes
    # (the same constants) off the import road, which must be put to the test too.
    tail += ["def local_overrides():"]
    tail += [textwrap.indent(p.code, "    ", lambda line: True) for p in near]
    tail += ["", "", "def fetch_report(session, report_id):"]
    first = len(head) + len(body) + len(tail) - 1
    tail += ["    ", "", ""]
    cursor_text = "\n".join(head + body + tail) + "\n"
    (root / "app.py").write_text(cursor_text)
    cursors = [(first + 1, 4)]
    return Scenario(
        root=root,
        planted=planted,
        cursor_file=root / "app.py",
        cursor_text=cursor_text,
        cursors=cursors,
        edited_file=root / "jobs.py",
        edited_text=edited_text,
        edit_line=3 + len(shares[2]) // 2,
    )


def leaks(text: str, planted: list[Planted]) -> list[str]:
    """The kinds whose secret (or a piece of it) appears in ``text``."""
    return [p.kind for p in planted if any(n in text for n in p.needles())]


def exposed(text: str, planted: list[Planted]) -> list[str]:
    """The kinds whose line reached ``text`` (masked or not)."""
    return [p.kind for p in planted if p.marker in text]


def located(root: Path, planted: list[Planted]) -> dict[tuple[str, int], str]:
    """(workspace-relative path, 1-based line) of each planted secret's line -> its kind."""
    where: dict[tuple[str, int], str] = {}
    for path in sorted(root.glob("*.py")):
        if path.is_symlink():
            continue
        lines = path.read_text().splitlines()
        for p in planted:
            for number, line in enumerate(lines, 1):
                if p.marker in line:
                    where[(path.name, number)] = p.kind
    return where


def carried(segments: list[dict], where: dict[tuple[str, int], str]) -> dict[str, set[str]]:
    """For each kind of prompt segment (import, similar, recent, ...), the planted kinds whose
    lines it spans (segments as ``starcoder.lastPrompt`` reports them)."""
    out: dict[str, set[str]] = {}
    for seg in segments:
        span = range(int(seg["start_line"]), int(seg["end_line"]) + 1)
        found = {
            kind for (path, line), kind in where.items() if path == seg["path"] and line in span
        }
        out.setdefault(seg["kind"], set()).update(found)
    return out
