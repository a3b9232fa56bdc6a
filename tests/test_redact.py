"""The prompt redactor on its own: every planted kind masked whole, ordinary code untouched,
secrets split by the cursor or by a window's edge still masked."""

from __future__ import annotations

import pytest
from secret_corpus import ORDINARY_LINES, corpus

from starcoder_ls.prompt.redact import PLACEHOLDER, Redactor


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


@pytest.mark.parametrize("planted", corpus(seed=3), ids=lambda p: p.kind)
def test_every_planted_kind_is_masked_whole(redactor: Redactor, planted) -> None:
    out = redactor.redact(planted.code, "app.py")
    assert PLACEHOLDER in out
    assert not [n for n in planted.needles() if n in out]
    assert planted.marker in out  # the code around it is kept


@pytest.mark.parametrize(
    "line",
    [
        *ORDINARY_LINES,
        "            publicKeyJwk.alg ||",  # JWT-like inside an identifier
        '    RESOURCE_OWNER_PASSWORD_GRANT: "password",',
        'const CLIENT_SECRET = "client_secret";',
        "db_password = get_secret('db')",
        "for token in tokens:",
        'KEY_PREFIX = "sk-"',
        'export const apiKeyAuthenticationPolicyName = "apiKeyAuthenticationPolicy";',
        'if (scheme.apiKeyLocation !== "header") {',
        'uuid = "123e4567-e89b-12d3-a456-426614174000"',
    ],
)
def test_ordinary_code_is_untouched(redactor: Redactor, line: str) -> None:
    assert redactor.redact(line, "app.js") == line


def test_identifiers_around_a_masked_value_stay(redactor: Redactor) -> None:
    assert (
        redactor.redact('db_password = "Tr0ub4dor&3xq"', "a.py") == f'db_password = "{PLACEHOLDER}"'
    )


def test_a_secret_split_by_the_cursor_is_masked_on_both_sides(redactor: Redactor) -> None:
    key = "AKIA" + "Q7ZB2M4XK9TR5WLD"
    prefix, suffix = redactor.redact_around(
        f'x = 1\nAWS = "{key[:9]}', f'{key[9:]}"\ny = 2\n', "a.py"
    )
    assert prefix == f'x = 1\nAWS = "{PLACEHOLDER}'
    assert suffix == '"\ny = 2\n'


def test_a_key_block_is_masked_even_when_the_window_starts_inside_it(
    redactor: Redactor,
) -> None:
    body = [
        "MIIEow" + "Zq9xT4kLmN2pQ8rS5vW1yB6cD3fG7hJ0aBcDeFgHiJkLmNoPqRsTuVwXyZ0123",
        "Kx7/" + "mN2pQ8rS5vW1yB6cD3fG7hJ0aB+cDeFgHiJkLmNoPqRsTuVwXyZ01234567ab9",
    ]
    whole = (
        "-----BEGIN RSA PRIVATE KEY-----\n"
        + "\n".join(body)
        + "\n-----END RSA PRIVATE KEY-----\nx = 1"
    )
    out = redactor.redact(whole, "a.py")
    assert not any(b in out for b in body) and out.endswith("-----END RSA PRIVATE KEY-----\nx = 1")
    cut = redactor.redact("\n".join(body[1:]) + "\n-----END RSA PRIVATE KEY-----\n", "a.py")
    assert body[1] not in cut


def test_the_allowlist_pragma_keeps_a_line(redactor: Redactor) -> None:
    for line in (
        'TEST_KEY = "Zq9xT4kLmN2pQ8rS5vW1yB6cD3fG7hJ0aB"  # pragma: allowlist secret',
        'EXAMPLE_ID = "AKIAIOSFODNN7EXAMPLE"  # pragma: allowlist secret',
    ):
        assert redactor.redact(line, "a.py") == line
