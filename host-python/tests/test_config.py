"""Configuration fails loudly at construction: every `Config` field and every ``RACEWAY_*``
variable is checked, with a ``ValueError`` naming the field (or variable), the rule and the
value; nothing accepted can fail later. And two clients in one process each stamp their own
identity on the contexts they start."""

from __future__ import annotations

import pytest

from raceway import Config, RacewayClient
from raceway.config import MAX_NAME, Settings


@pytest.mark.parametrize("field,value,words", [
    ("service_name", "svc\udc80", "lone surrogate"),
    ("service_name", "s" * 250, "at most 100"),
    ("service_name", "", "empty"),
    ("service_name", "a\nb", "control"),
    ("instance_id", "i" * (MAX_NAME + 1), "at most"),
    ("environment", 5, "string"),
    ("tags", {"k": 1}, "string"),
    ("tags", {f"k{i}": "v" for i in range(65)}, "at most 64"),
    ("endpoint", "ftp://x", "http"),
    ("endpoint", "http:// spaced", "valid URL"),
    ("api_key", "key\r\nX-Injected: 1", "printable ASCII"),
    ("batch_size", 0, "from 1"),
    ("batch_size", True, "int"),
    ("max_batch_size", 0, "from 1"),
    ("max_batch_size", 2.5, "int"),
    ("max_queue_size", -5, "from 1"),
    ("retries", 1000, "to 100"),
    ("flush_interval", float("nan"), "seconds"),
    ("timeout", float("inf"), "seconds"),
    ("retry_backoff", -1.0, "non-negative"),
    ("debug", "yes", "bool"),
    ("strict_context", 1, "bool"),
    ("events_file", "", "non-empty path"),
])
def test_every_field_is_checked_with_a_message_naming_it(field, value, words):
    with pytest.raises(ValueError) as raised:
        Config(**{field: value})
    message = str(raised.value)
    assert f"Config.{field}" in message and words in message, message


@pytest.mark.parametrize("variable,value", [
    ("RACEWAY_ENDPOINT", "not a url"),
    ("RACEWAY_INSTANCE_ID", "x" * 300),
    ("RACEWAY_INSTANCE_ID", "bad\x07bell"),
    ("RACEWAY_API_KEY", "k\x01ey"),
])
def test_environment_variables_get_the_same_checks_and_are_named(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        Settings.resolve(Config())


def test_the_default_instance_id_always_fits():
    settings = Settings.resolve(Config(endpoint=None))
    assert 0 < len(settings.instance_id) <= MAX_NAME


def test_two_clients_in_one_process_each_stamp_their_own_identity():
    a = RacewayClient(Config(endpoint=None, service_name="svc-a", instance_id="one", report_races_at_shutdown=False))
    b = RacewayClient(Config(endpoint=None, service_name="svc-b", instance_id="two", report_races_at_shutdown=False))
    try:
        with a.trace() as ctx_a:
            child = a.fork(ctx_a)
        with b.trace() as ctx_b:
            pass
        assert ctx_a.component.startswith("svc-a#one/") and child.component.startswith("svc-a#one/")
        assert ctx_b.component.startswith("svc-b#two/")
        assert a.identity == "svc-a#one" and b.identity == "svc-b#two"
    finally:
        a.shutdown(1)
        b.shutdown(1)


def test_env_names_the_default_environment(monkeypatch):
    """The reference SDK's `Config.environment` defaults to ``ENV``."""
    monkeypatch.setenv("ENV", "staging")
    assert Config().environment == "staging"
    assert Config(environment="prod").environment == "prod"
    monkeypatch.setenv("ENV", "bad\x01")
    with pytest.raises(ValueError, match="ENV"):
        Config()
    monkeypatch.delenv("ENV")
    assert Config().environment == "development"
