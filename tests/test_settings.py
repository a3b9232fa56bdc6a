"""The settings schema as editors drive it: camelCase or snake_case keys, the ``starcoder``
section wrapper, and invalid values reported by name while the rest of the payload applies."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from starcoder_ls.settings import CacheSettings, Settings, parse_settings, schema


def test_camel_and_snake_keys_give_the_same_settings() -> None:
    camel, errors = parse_settings(
        {"maxTokens": 32, "apiKeyEnv": "MY_TOKEN", "nThreads": 2, "prefixRatio": 0.5}
    )
    assert errors == []
    snake, errors = parse_settings(
        {"max_tokens": 32, "api_key_env": "MY_TOKEN", "n_threads": 2, "prefix_ratio": 0.5}
    )
    assert errors == []
    assert camel == snake
    assert (camel.max_tokens, camel.api_key_env, camel.n_threads, camel.prefix_ratio) == (
        32,
        "MY_TOKEN",
        2,
        0.5,
    )


def test_the_starcoder_section_wrapper_is_unwrapped() -> None:
    settings, errors = parse_settings({"starcoder": {"backend": "ollama", "url": "http://h:1"}})
    assert errors == []
    assert settings.backend == "ollama" and settings.url == "http://h:1"


def test_nested_cache_object_merges_into_the_current_cache_settings() -> None:
    base = Settings(cache=CacheSettings(memory_entries=7, disk=True))
    settings, errors = parse_settings({"cache": {"diskSizeMb": 5, "disk_path": "/tmp/c"}}, base)
    assert errors == []
    assert settings.cache == CacheSettings(
        memory_entries=7, disk=True, disk_path="/tmp/c", disk_size_mb=5
    )


def test_an_integral_float_is_accepted_for_a_whole_number() -> None:
    settings, errors = parse_settings({"maxTokens": 48.0, "temperature": 1})
    assert errors == []
    assert settings.max_tokens == 48 and isinstance(settings.max_tokens, int)
    assert settings.temperature == 1.0 and isinstance(settings.temperature, float)


@pytest.mark.parametrize(
    ("key", "value", "field", "words"),
    [
        ("maxTokens", "64", "maxTokens", "whole number"),
        ("max_tokens", 1.5, "maxTokens", "whole number"),
        ("maxTokens", True, "maxTokens", "whole number"),
        ("maxTokens", 0, "maxTokens", "between 1 and 4096"),
        ("maxTokens", float("nan"), "maxTokens", "whole number"),
        ("maxTokens", float("inf"), "maxTokens", "whole number"),
        ("temperature", "hot", "temperature", "a number"),
        ("temperature", 2.5, "temperature", "between 0 and 2"),
        ("prefixRatio", float("nan"), "prefixRatio", "between 0 and 1"),
        ("crossFile", "yes", "crossFile", "true or false"),
        ("url", 42, "url", "a string"),
        ("backend", "gpt", "backend", "one of llamacpp"),
        ("completion_fallback", "sometimes", "completionFallback", "one of auto, on, off"),
        ("dtype", "int4", "dtype", "one of auto"),
        ("kernels", "fast", "kernels", "one of auto, on, off"),
        ("quantize", "int8", "quantize", "one of none, int4"),
        ("languages", ["python"], "languages", "true/false"),
        ("languages", {"python": "no"}, "languages", "true/false"),
        ("family", "gpt-neo", "family", "auto or one of"),
        ("apiKeyEnv", "sk-abcdefghijklmnop1234", "apiKeyEnv", "NAME of an environment"),
        ("apiKeyEnv", "hf_AbCdEfGhIjKlMnOpQrStUvWxYz12345678", "apiKeyEnv", "NAME of an"),
        ("apiKeyEnv", "ghp_9fK2mQ7xLr4TzW8vNb3YcH6jDs1Ae5Pu0", "apiKeyEnv", "NAME of an"),
        ("cache", "on", "cache", "must be an object"),
        ("cache", {"memoryEntries": -1}, "cache.memoryEntries", "between 0 and"),
        ("cache", {"disk_size_mb": "big"}, "cache.diskSizeMb", "whole number"),
    ],
)
def test_an_invalid_value_is_reported_by_name_and_the_previous_value_kept(
    key: str, value: Any, field: str, words: str
) -> None:
    base = Settings(max_tokens=40, temperature=0.3, api_key_env="PREVIOUS")
    settings, errors = parse_settings({key: value, "topP": 0.9}, base)
    assert len(errors) == 1, errors
    assert errors[0].startswith(field) and words in errors[0], errors[0]
    assert settings == dataclasses.replace(base, top_p=0.9)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [({"maxTokenz": 3}, "'maxTokenz'"), ({"cache": {"sizeOnDisk": 3}}, "'cache.sizeOnDisk'")],
)
def test_an_unknown_key_is_named_and_ignored(raw: dict[str, Any], shown: str) -> None:
    settings, errors = parse_settings({**raw, "debounceMs": 80})
    assert errors == [f"unknown setting {shown} (ignored)"]
    assert settings == Settings(debounce_ms=80)


def test_several_bad_fields_give_one_message_each_and_the_good_ones_apply() -> None:
    settings, errors = parse_settings(
        {"starcoder": {"maxTokens": -5, "temperature": 0.4, "device": "tpu", "model": "m.gguf"}}
    )
    assert len(errors) == 2
    assert [e.split()[0] for e in errors] == ["maxTokens", "device"]
    assert (settings.max_tokens, settings.device) == (Settings().max_tokens, "auto")
    assert (settings.temperature, settings.model) == (0.4, "m.gguf")


@pytest.mark.parametrize("raw", [[1, 2], "maxTokens=3", 7])
def test_a_payload_that_is_not_an_object_keeps_everything(raw: Any) -> None:
    base = Settings(max_tokens=9)
    settings, errors = parse_settings(raw, base)
    assert settings is base
    assert len(errors) == 1 and "must be an object" in errors[0]


def test_none_means_no_change() -> None:
    base = Settings(model="x")
    assert parse_settings(None, base) == (base, [])


def test_plain_env_var_names_are_accepted_for_the_api_key() -> None:
    for name in ("HF_TOKEN", "OPENAI_API_KEY", "my_key_2", ""):
        settings, errors = parse_settings({"apiKeyEnv": name})
        assert errors == [] and settings.api_key_env == name


def test_every_family_of_the_prompt_templates_is_accepted() -> None:
    from starcoder_ls.prompt.templates import FAMILIES

    for family in ("auto", *FAMILIES):
        settings, errors = parse_settings({"family": family})
        assert errors == [] and settings.family == family


def test_language_enabled_uses_the_star_default() -> None:
    s = Settings(languages={"*": False, "python": True})
    assert s.language_enabled("python") is True
    assert s.language_enabled("go") is False
    s = Settings(languages={"markdown": False})
    assert s.language_enabled("markdown") is False
    assert s.language_enabled("rust") is True
    assert Settings().language_enabled("") is True


def test_api_key_reads_the_named_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCLS_TEST_KEY", "secret-value")
    assert Settings(api_key_env="SCLS_TEST_KEY").api_key() == "secret-value"
    monkeypatch.delenv("SCLS_TEST_KEY")
    assert Settings(api_key_env="SCLS_TEST_KEY").api_key() is None
    assert Settings().api_key() is None


def test_to_json_round_trips_through_parse_settings() -> None:
    custom = Settings(
        backend="openai",
        model="bigcode/starcoder2-3b",
        family="starcoder2",
        url="http://localhost:8000",
        api_key_env="OPENAI_API_KEY",
        max_tokens=100,
        temperature=0.2,
        languages={"*": False, "python": True, "my_lang": True},
        cache=CacheSettings(enabled=False, memory_entries=3, disk=True, disk_path="/c"),
        n_ctx=4096,
    )
    data = custom.to_json()
    assert json.loads(json.dumps(data)) == data
    assert "maxTokens" in data and "max_tokens" not in data
    assert data["cache"]["memoryEntries"] == 3
    assert data["languages"] == {"*": False, "python": True, "my_lang": True}
    assert parse_settings(data) == (custom, [])
    assert parse_settings({"starcoder": json.loads(json.dumps(data))}) == (custom, [])


def test_schema_lists_every_field_with_its_default() -> None:
    data = schema()
    names = {f.name for f in dataclasses.fields(Settings)}
    assert len(data) == len(names)
    assert data["maxTokens"] == Settings().max_tokens
    assert data["backend"] == "llamacpp"
    assert set(data["cache"]) == {"enabled", "memoryEntries", "disk", "diskPath", "diskSizeMb"}
    assert parse_settings(data) == (Settings(), [])
