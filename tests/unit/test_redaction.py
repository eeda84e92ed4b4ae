"""`redact`: each masking rule, what it leaves alone, and the length bound."""

from __future__ import annotations

import re

import pytest

from scheduler_core import redaction
from scheduler_core.redaction import redact, refresh_environment_secrets, register_secret

MARKER = re.compile(r"… \[truncated, (\d+) more characters\]$")


@pytest.fixture(autouse=True)
def fresh_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no registered secret and reads the environment anew."""
    monkeypatch.setattr(redaction, "_SECRETS", redaction._Secrets())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:pass@host/v1", "https://***@host/v1"),
        ("http://scott:tiger@127.0.0.1:8080", "http://***@127.0.0.1:8080"),
        ("postgresql+psycopg://app:s3cr3t@db:5432/jobs", "postgresql+psycopg://***@db:5432/jobs"),
        ("https://token@host/x", "https://***@host/x"),
        ("https://u:p@ss:w@rd@host/x", "https://***@host/x"),
        ("cannot connect to 'http://u:pw@h:1/a'", "cannot connect to 'http://***@h:1/a'"),
    ],
)
def test_url_userinfo_is_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def.ghi", "Authorization: Bearer ***"),
        ("authorization: Basic dXNlcjpwYXNzd29yZA==", "authorization: Basic ***"),
        ("{'Authorization': 'Bearer tok-123456'}", "{'Authorization': 'Bearer ***'}"),
        ('{"authorization": "Token zzz999"}', '{"authorization": "Token ***"}'),
        ("Proxy-Authorization: Basic Zm9vOmJhcg==", "Proxy-Authorization: Basic ***"),
        ("x-api-key: plainvalue", "x-api-key: ***"),
        ("OPENAI_API_KEY=whatever-it-is", "OPENAI_API_KEY=***"),
        ('{"password": "hunter2", "user": "bob"}', '{"password": "***", "user": "bob"}'),
        ("client_secret=abc&x=1", "client_secret=***&x=1"),
        ("sent Bearer eyJhbGciOi.payload.sig1 upstream", "sent Bearer *** upstream"),
        ("GET /v1/models?key=AIzaNotReally&alt=json", "GET /v1/models?key=***&alt=json"),
        ("https://h/cb?code=1&token=opaque-value", "https://h/cb?code=1&token=***"),
    ],
)
def test_credential_fields_are_masked_and_their_names_kept(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "key",
    [
        "sk-proj-Abcdef1234567890abcdef",
        "sk-ant-api03-AbCdEf0123456789-_xyz",
        "sk-0123456789abcdefABCDEF",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "ghp_0123456789abcdefghijABCDEFGHIJ012345",
        "xoxb-1234567890-abcdefghij",
        "AKIAIOSFODNN7EXAMPLE",
        "hf_abcdefghijklmnopqrstuvwxyz0123",
        "AIzaSyA-1234567890abcdefghijklmnopqrstu",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",  # 40 hex digits
        "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRkdISUpL",  # base64
        "q8Xr2-Lm9vTz_Kp4Wn7Yb3Hc6Jd1Fg5Ns0Qa8Ue2Ri4",  # base64url
        "AbC1/dEf2+GhI3jKl4MnO5pQr6StU7vWx8YZ==",  # standard base64 with / and +
    ],
)
def test_key_shaped_tokens_are_masked(key: str) -> None:
    assert redact(f"the server said: {key}.") == "the server said: ***."


def test_ordinary_text_is_left_alone() -> None:
    text = (
        "You need to provide your API key in an Authorization header using Bearer auth, or the "
        "password field; bearer of news. max_tokens: 12, input_tokens=40, output tokens: 7. "
        "The secret of the story is patience. Saved /tmp/pytest-of-root/pytest-3/test_story0/"
        "llmsched-home/artifacts/story-the-last-light-1a2b3c4d.md for run "
        "3f2b8c1e-9d4a-4b7e-8f60-1c2d3e4f5a6b at commit 1a2b3c4d5e6f. See https://example.com/a@b "
        "or mail ops@example.org. test_a_stream_cut_short_is_a_response_error_openai_cutoff "
        "HTTPProviderStreamingConnection, risk-assessment, sk-short, 12345678901234567890123456"
        "78901234567890, postgresql://db.internal/jobs"
    )
    assert redact(text) == text


def test_registered_secrets_are_masked_where_they_stand_whole() -> None:
    register_secret("  correct-horse-42 ")
    register_secret("postgres")

    assert redact("key correct-horse-42 was used") == "key *** was used"
    assert redact("password=postgres; db=postgresql://h/x") == "password=***; db=postgresql://h/x"
    assert redact("the word postgres alone") == "the word *** alone"
    assert redact("postgresql and xpostgres stay") == "postgresql and xpostgres stay"


def test_too_short_secrets_are_ignored() -> None:
    register_secret("abc")
    register_secret("")
    assert redact("abc is a word") == "abc is a word"


@pytest.mark.parametrize(
    "name",
    ["MY_SERVICE_API_KEY", "GITHUB_TOKEN", "LLMSCHED_WEBHOOK_SECRET", "DB_PASSWORD", "API_KEY"],
)
def test_secret_named_environment_variables_are_registered(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "Value-From-Env-77")
    monkeypatch.setenv("MY_SETTING", "Visible-Setting-88")

    assert redact("a Value-From-Env-77 b Visible-Setting-88") == "a *** b Visible-Setting-88"


def test_the_environment_is_read_once_and_can_be_refreshed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert redact("nothing here") == "nothing here"  # first use reads the environment
    monkeypatch.setenv("LATE_API_KEY", "arrived-later-123")
    register_secret("registered-before-refresh")

    assert redact("arrived-later-123") == "arrived-later-123"
    refresh_environment_secrets()
    assert redact("arrived-later-123") == "***"
    assert redact("registered-before-refresh") == "***", "a refresh keeps registrations"


def test_a_short_text_is_returned_whole() -> None:
    text = "x" * 4096
    assert redact(text) == text
    assert redact("abc", limit=3) == "abc"


@pytest.mark.parametrize("size", [101, 1224, 1225, 10_000, 20 * 1024 * 1024])
def test_a_long_text_is_cut_to_the_limit_with_a_count_of_what_was_left_out(size: int) -> None:
    text = "word " * (size // 5) + "w" * (size % 5)
    result = redact(text, limit=100)

    assert len(result) <= 100
    marker = MARKER.search(result)
    assert marker, result
    kept = marker.start()
    assert result[:kept] == text[:kept]
    assert int(marker.group(1)) == size - kept


def test_the_default_limit_is_4096() -> None:
    result = redact("y" * 50_000)
    assert len(result) <= 4096 and MARKER.search(result)


def test_masking_happens_before_the_cut() -> None:
    result = redact("https://user:longpassword@host/path " + "x" * 200, limit=100)

    assert result.startswith("https://***@host/path xxx") and MARKER.search(result)
    assert "longpass" not in result


def test_a_secret_cut_where_a_long_text_is_scanned_does_not_leak() -> None:
    """Masked keys shrink the text, so what lay near the scanning cut comes into view."""
    register_secret("TopSecretValue-9876543210")
    register_secret("correct horse battery staple")
    keys = "sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6 " * 40  # 1640 characters, 160 once masked
    limit = 400  # the text is scanned up to 2 * 400 + 1024 = 1824 characters
    for secret in ("TopSecretValue-9876543210", "correct horse battery staple"):
        pad = "z" * (1824 - len(keys) - 14)
        result = redact(keys + pad + " " + secret + " and more " * 100, limit=limit)

        assert MARKER.search(result)
        assert "TopSecret" not in result and "correct" not in result, result


def test_a_limit_smaller_than_the_marker_gives_the_marker_alone() -> None:
    assert MARKER.fullmatch(redact("z" * 500, limit=10))
    assert MARKER.fullmatch(redact("z" * 500, limit=0))
    with pytest.raises(ValueError, match="limit"):
        redact("z", limit=-1)


def test_redacting_twice_changes_nothing_more() -> None:
    text = "Authorization: Bearer sk-ant-api03-xyzxyzxyz at https://a:b@h/?key=k1 " * 3
    once = redact(text)
    assert redact(once) == once
    assert "xyzxyz" not in once and "a:b@" not in once and "k1" not in once
