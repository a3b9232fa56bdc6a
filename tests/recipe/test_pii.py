"""Redaction of emails, IP addresses, keys and passwords (starcoder_ls.recipe.pii)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starcoder_ls.recipe.pii import EMAIL, IP_ADDRESS, KEY, PASSWORD, redact

GITHUB_TOKEN = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A"
RSA_BODY = "MIIEowIBAAKCAQEAx1y2Zp9T0q4Vw8n3kL5mR7sT2uY6vB1cD3eF5gH7iJ9kL0mN\nq4Vw8n3kL5mR7sT2uY6vB1cD3eF5gH7iJ9kL0mNMIIEowIBAAKCAQEAx1y2Zp9T0"


def redacted(text: str) -> str:
    return redact(text)[0]


@pytest.mark.parametrize(
    ("text", "expected", "placeholder"),
    [
        ('AUTHOR = "jane.doe@corp-mail.com"', f'AUTHOR = "{EMAIL}"', EMAIL),
        ("# Contact: Jane <jane+code@mail.co.uk>.", f"# Contact: Jane <{EMAIL}>.", EMAIL),
        ('HOST = "93.184.216.34"', f'HOST = "{IP_ADDRESS}"', IP_ADDRESS),
        ("ssh root@52.14.100.7 -p 22", f"ssh root@{IP_ADDRESS} -p 22", IP_ADDRESS),
        ('addr = "2606:4700:10::6816:1234"', f'addr = "{IP_ADDRESS}"', IP_ADDRESS),
        ('connect to server "1.2.3.4"', f'connect to server "{IP_ADDRESS}"', IP_ADDRESS),
        ('AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"', f'AWS_ACCESS_KEY_ID = "{KEY}"', KEY),
        (f'GITHUB = "{GITHUB_TOKEN}"', f'GITHUB = "{KEY}"', KEY),
        (f'token = "{GITHUB_TOKEN}"', f'token = "{KEY}"', KEY),
        ("slack = 'xoxb-123456789012-abcdefghijkl'", f"slack = '{KEY}'", KEY),
        (
            'api_key = "d41d8cd98f00b204e9800998ecf8427e"',
            f'api_key = "{KEY}"',
            KEY,
        ),
        (
            'cfg = {"client_secret": "sk_live_4eC39HqLyjWDarjtT1zdp7dc"}',
            f'cfg = {{"client_secret": "{KEY}"}}',
            KEY,
        ),
        ("SECRET_KEY: Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5", f"SECRET_KEY: {KEY}", KEY),
        ('password = "hunter2"', f'password = "{PASSWORD}"', PASSWORD),
        ("db.connect(user='bob', password='Tr0ub4dor&3')", f"db.connect(user='bob', password='{PASSWORD}')", PASSWORD),
        ('"db_password": "s3cr3t!",', f'"db_password": "{PASSWORD}",', PASSWORD),
        ("passwd: s3cr3t!", f"passwd: {PASSWORD}", PASSWORD),
        ("export DB_PASSWORD=hunter2  # local only", f"export DB_PASSWORD={PASSWORD}  # local only", PASSWORD),
        ("$pass_word => 'p4ss';", f"$pass_word => '{PASSWORD}';", PASSWORD),
        ('url = "postgres://admin:s3cret@db.internal/app"', f'url = "postgres://admin:{PASSWORD}@db.internal/app"', PASSWORD),
    ],
)  # fmt: skip
def test_redacts_each_kind_and_keeps_the_code_shape(
    text: str, expected: str, placeholder: str
) -> None:
    out, counts = redact(text)
    assert out == expected
    assert counts == {placeholder: 1}


@pytest.mark.parametrize(
    "text",
    [
        'password = ""',
        "password = ''",
        "password = None",
        "password: str",
        "def login(user: str, password: str = None) -> None:",
        'password = os.environ["DB_PASSWORD"]',
        "password = os.environ.get('PW')",
        'password = f"{user}-{suffix}"',
        'password = "${DB_PASSWORD}"',
        'password = "{password}"',
        'password = "<your password>"',
        'password = "********"',
        'PASSWORD = "changeme"',
        "password: ${DB_PASSWORD}",
        "password = pw",
        'if password == "admin":',
        'password_prompt = "Enter your password:"',
        'token_type = "bearer"',
        'api_key = "YOUR_API_KEY"',
        'api_key = os.environ["API_KEY"]',
        'SECRET_KEY = "django-insecure-key"',
        'tokens = tokenize("a b c")',
        "local = '192.168.1.10'; loop = '127.0.0.1'; any = '0.0.0.0'",
        "shared = '100.64.0.1'; doc = '203.0.113.7'; mcast = '224.0.0.251'",
        "dns = ['8.8.8.8', '8.8.4.4', '1.1.1.1', '9.9.9.9', '2001:4860:4860::8888']",
        '__version__ = "1.2.3.4"',
        'VERSION = "52.1.20.7"',
        "version: 10.2.3.4",
        "requires numpy>=1.26.4.1",
        "timestamp 12:30:45 and mac aa:bb:cc:dd:ee:ff",
        "x = a[1::2]; std::vector<int> v; Foo::bar(); ab::cd",
        "ipv6 = ['::1', 'fe80::1', '::', '2001:db8::1', 'fd00::1']",
        "see user@example.com or admin@mail.example.org for details",
        "git clone git@github.com:owner/repo.git",
        "@property\ndef name(self) -> str:",
        "pip install pkg@1.2.3 and numpy==1.26",
        "x = 999.1.2.3 + 01.02.03.04",
    ],
)
def test_leaves_ordinary_code_alone(text: str) -> None:
    out, counts = redact(text)
    assert out == text
    assert not counts


def test_private_key_body_is_replaced_once_and_the_armour_stays() -> None:
    text = (
        f'KEY = """-----BEGIN RSA PRIVATE KEY-----\n{RSA_BODY}\n-----END RSA PRIVATE KEY-----"""\n'
    )
    out, counts = redact(text)
    assert counts == {KEY: 1}
    assert out.startswith('KEY = """-----BEGIN RSA PRIVATE KEY-----\n<KEY>')
    assert out.endswith('-----END RSA PRIVATE KEY-----"""\n')
    assert "MIIE" not in out


def test_private_key_split_over_string_literals_keeps_its_quoting() -> None:
    lines = RSA_BODY.splitlines()
    text = (
        'PEM = ("-----BEGIN PRIVATE KEY-----\\n"\n'
        f'       "{lines[0]}\\n"\n'
        f'       "{lines[1]}\\n"\n'
        '       "-----END PRIVATE KEY-----\\n")\n'
    )
    out, counts = redact(text)
    assert counts == {KEY: 1}
    assert "MIIE" not in out
    assert out.count('"') == text.count('"')
    assert '"<KEY>\\n"' in out
    assert '       "\\n"\n' in out


def test_counts_add_up_over_a_file() -> None:
    text = (
        "# Author: Jane Doe <jane@corp-mail.com>, John <john@corp-mail.com>\n"
        'SERVERS = ["93.184.216.34", "52.14.100.7", "10.0.0.1"]\n'
        'AWS = "AKIAIOSFODNN7EXAMPLE"\n'
        'password = "hunter2"\n'
        "print('done')\n"
    )
    out, counts = redact(text)
    assert counts == {EMAIL: 2, IP_ADDRESS: 2, KEY: 1, PASSWORD: 1}
    assert out.splitlines()[-1] == "print('done')"
    assert '"10.0.0.1"' in out


def test_secret_already_replaced_is_not_counted_twice() -> None:
    out, counts = redact(f'github_token = "{GITHUB_TOKEN}"')
    assert out == f'github_token = "{KEY}"'
    assert counts == {KEY: 1}


def test_non_ascii_text_that_changes_length_when_lowered_is_still_redacted() -> None:
    # "İ".lower() is two characters long, so the fast path's offsets cannot be used here.
    text = 'İstanbul = 1\npassword = "hunter2"\nmail = "ayşe@corp-mail.com"\n'
    out, counts = redact(text)
    assert out == f'İstanbul = 1\npassword = "{PASSWORD}"\nmail = "{EMAIL}"\n'
    assert counts == {PASSWORD: 1, EMAIL: 1}


_FRAGMENTS = [
    'password = "hunter2"',
    "contact jane@corp-mail.com",
    "host 93.184.216.34",
    "addr 2606:4700:10::6816:1234",
    f"token = '{GITHUB_TOKEN}'",
    'api_key = "d41d8cd98f00b204e9800998ecf8427e"',
    "x = a[1::2]",
    '__version__ = "1.2.3.4"',
    "def f(password: str) -> None:",
    "    return None",
    "",
    "local 192.168.0.1",
    "url = 'https://bob:pa55@host.corp.com/x'",
]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=12))
def test_redaction_is_line_local_and_idempotent(lines: list[str]) -> None:
    text = "\n".join(lines)
    out, _ = redact(text)
    # Every rule works within one line, so redacting line by line gives the same text...
    assert out == "\n".join(redacted(line) for line in lines)
    # ...and a second pass finds nothing left to redact.
    again, counts = redact(out)
    assert again == out
    assert not counts
