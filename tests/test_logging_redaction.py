"""API keys never reach a log line: the redaction patterns and the logging setup that applies
them to every record, whichever library writes it."""

from __future__ import annotations

import json
import logging
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path

import pytest

from starcoder_ls.server import RedactingFilter, redact, setup_logging

SECRET = "Xy7pQ2wLz9aBc4DeF6gH"
HF_KEY = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz12345678"
OPENAI_KEY = "sk-proj-" + "AbCdEfGhIjKlMnOp1234567890"

Request = namedtuple("Request", "url api_token model")


@pytest.mark.parametrize(
    "text",
    [
        str({"apiToken": SECRET, "model": "bigcode/starcoder"}),
        str({"api_key": SECRET}),
        json.dumps({"params": {"apiToken": SECRET, "tokensToClear": ["<EOT>"]}}),
        json.dumps({"headers": {"Authorization": f"Bearer {SECRET}"}}),
        repr(Request("http://localhost:8080", SECRET, "m")),
        f"POST /generate Authorization: Bearer {SECRET}",
        f"Authorization: Basic {SECRET}==",
        f"x-api-key: {SECRET}",
        f"GET /v1/models?access_token={SECRET}&stream=false",
        f"sending with bearer {SECRET}",
        f"token from the environment: {HF_KEY}",
        f"key={OPENAI_KEY}",
        f"401 for key {OPENAI_KEY}, check it",
    ],
)
def test_secrets_are_masked(text: str) -> None:
    out = redact(text)
    assert SECRET not in out and HF_KEY[3:] not in out and OPENAI_KEY[3:] not in out
    assert "***" in out


def test_the_shape_around_a_secret_is_kept() -> None:
    assert redact(str({"apiToken": SECRET, "model": "m"})) == "{'apiToken': '***', 'model': 'm'}"
    assert redact(json.dumps({"api_key": SECRET, "n": 1})) == '{"api_key": "***", "n": 1}'
    assert redact(repr(Request("u", SECRET, "m"))) == "Request(url='u', api_token='***', model='m')"
    assert redact(f"Authorization: Bearer {SECRET}") == "Authorization: ***"
    assert redact(f"using {HF_KEY} now") == "using hf_*** now"


@pytest.mark.parametrize(
    "text",
    [
        "completion took 12.5 ms for file:///home/u/a.py (maxTokens=64, max_tokens=64)",
        "def get_api_key(env):\n    return os.environ[env]\n",
        "self.api_key_env = 'HF_TOKEN'",
        str({"apiKeyEnv": "HF_TOKEN", "maxTokens": 64, "temperature": 0.2}),
        "import hf_transfer\nfrom huggingface_hub import hf_hub_download",
        "pip install sk-learn-extras-pack",
        "the bearer of this letter may pass",
        "The authorization flow is documented in the README.",
        "for (const task of tasks) { risk-assessment(task); }",
        "prompt tokens 812, evaluated 12, cached",
    ],
)
def test_ordinary_text_and_code_are_left_alone(text: str) -> None:
    assert redact(text) == text


@pytest.fixture
def root_logging() -> Iterator[None]:
    """``setup_logging`` replaces the root handlers: put the test runner's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_setup_logging_writes_masked_lines_to_the_log_file(
    tmp_path: Path, root_logging: None
) -> None:
    log_file = tmp_path / "server.log"
    setup_logging("debug", str(log_file))
    logger = logging.getLogger("pygls.protocol")
    logger.debug("receiving %s", {"method": "llm-ls/getCompletions", "apiToken": SECRET})
    logging.getLogger("httpx").info("headers %r", {"Authorization": f"Bearer {SECRET}"})
    logging.getLogger("starcoder_ls.test").warning("plain message with %d args", 1)
    logging.getLogger().handlers[0].flush()
    text = log_file.read_text("utf-8")
    assert SECRET not in text
    assert "'apiToken': '***'" in text and "'Authorization': '***'" in text
    assert "WARNING starcoder_ls.test: plain message with 1 args" in text
    assert " DEBUG pygls.protocol: receiving {'method': 'llm-ls/getCompletions'" in text


def test_a_secret_in_a_traceback_is_masked_too(tmp_path: Path, root_logging: None) -> None:
    log_file = tmp_path / "server.log"
    setup_logging("INFO", str(log_file))
    try:
        raise RuntimeError(f"request failed with Authorization: Bearer {SECRET}")
    except RuntimeError:
        logging.getLogger("starcoder_ls.backends").exception("backend call failed")
    logging.getLogger().handlers[0].flush()
    text = log_file.read_text("utf-8")
    assert "backend call failed" in text and "RuntimeError: request failed with" in text
    assert SECRET not in text


def test_setup_logging_respects_the_level(tmp_path: Path, root_logging: None) -> None:
    log_file = tmp_path / "server.log"
    setup_logging("warning", str(log_file))
    logging.getLogger("starcoder_ls.x").info("not shown")
    logging.getLogger("starcoder_ls.x").error("shown")
    logging.getLogger().handlers[0].flush()
    lines = log_file.read_text("utf-8").splitlines()
    assert len(lines) == 1 and lines[0].endswith("ERROR starcoder_ls.x: shown")


def test_a_record_whose_message_cannot_be_built_is_passed_through() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d items", ("many",), None)
    assert RedactingFilter().filter(record) is True
    assert record.args == ("many",)


def test_a_registered_key_is_masked_in_every_form_an_error_quotes_it() -> None:
    from starcoder_ls.server import register_secret

    key = "Zq9x$!:Kp2w" + "\n"
    register_secret(key)
    for text in (
        f"Illegal header value {('Bearer ' + key).encode()!r}",  # the bytes repr: \\n escaped
        f"Illegal header value {'Bearer ' + key!r}",
        json.dumps({"authorization": "Bearer " + key}),
        f"headers: Authorization=Bearer {key.strip()} (debug)",
        f"plain {key.strip()}",
    ):
        out = redact(text)
        assert "Zq9x$!:Kp2w" not in out, out
        assert "***" in out
