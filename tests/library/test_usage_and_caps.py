"""Usage sums, prices (defaults and a prices file) and the spending caps."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from flows.library import (
    DEFAULT_PRICES,
    PricesError,
    RunContext,
    SpendingCapReached,
    UnknownPriceError,
    check_spending,
    cost_usd,
    estimate_usd,
    guard_call,
    price_of,
    prices,
    record_completion,
    record_usage,
    usage_summary,
)
from flows.library.caps import DAILY_CAP_ENV, GROUP_CAP_ENV
from flows.library.prices import PRICES_FILE_ENV
from flows.llm import complete, synthesis
from scheduler_core.errors import ConfigurationError
from tests.llm_server.process import LLMServerProcess

GROUP_7 = RunContext(job_id=1, group_id=7, flow_run_id="run-a")


def test_usage_sums_match_the_tokens_the_server_counted(
    lib: str, fake_llm: LLMServerProcess
) -> None:
    prompts = ["Write about tides.", "Write about the moon and the sea.", "Name a colour."]
    expected_in = expected_out = 0
    for index, prompt in enumerate(prompts):
        messages = [{"role": "user", "content": prompt}]
        completion = complete("openai/gpt-4o-mini", messages, max_tokens=200)
        expected_in += synthesis.count_tokens(prompt)
        expected_out += synthesis.count_tokens(completion.text)
        context = GROUP_7 if index < 2 else RunContext(job_id=2)
        record_completion(completion, context=context, db=lib)
    record_usage("offline/demo", input_tokens=5, output_tokens=6, context=GROUP_7, db=lib)
    price = DEFAULT_PRICES["openai/gpt-4o-mini"]
    (offline_row, openai_row) = usage_summary(["model"], db=lib)  # ordered by model
    assert (openai_row.model, openai_row.calls) == ("openai/gpt-4o-mini", 3)
    assert (openai_row.input_tokens, openai_row.output_tokens) == (expected_in, expected_out)
    assert openai_row.cost_usd == pytest.approx(price.cost(expected_in, expected_out))
    assert (offline_row.model, offline_row.cost_usd, offline_row.input_tokens) == (
        "offline/demo",
        0.0,
        5,
    )
    groups = {row.group_id: row.calls for row in usage_summary(["group"], db=lib)}
    assert groups == {None: 1, 7: 3}
    today = datetime.now(UTC).date()
    full = usage_summary(db=lib)
    assert {(r.model, r.day, r.group_id, r.calls) for r in full} == {
        ("offline/demo", today, 7, 1),
        ("openai/gpt-4o-mini", today, None, 1),
        ("openai/gpt-4o-mini", today, 7, 2),
    }
    (total,) = usage_summary((), db=lib)
    assert total.calls == 4 and total.input_tokens == expected_in + 5


def test_usage_is_summed_per_utc_day_and_filtered_by_dates(lib: str) -> None:
    for day, tokens in [(1, 10), (1, 20), (2, 40)]:
        when = datetime(2026, 5, day, 23, 59, tzinfo=UTC)
        record_usage(
            "openai/gpt-4o",
            input_tokens=tokens,
            output_tokens=0,
            context=RunContext(),
            created_at=when,
            db=lib,
        )
    rows = usage_summary(["day"], db=lib)
    assert [(r.day, r.input_tokens, r.calls) for r in rows] == [
        (date(2026, 5, 1), 30, 2),
        (date(2026, 5, 2), 40, 1),
    ]
    assert [r.day for r in usage_summary(["day"], since=date(2026, 5, 2), db=lib)] == [
        date(2026, 5, 2)
    ]
    assert usage_summary(["day"], since=date(2026, 6, 1), db=lib) == []
    with pytest.raises(ValueError, match="summed by model, day, group"):
        usage_summary(["week"], db=lib)


def test_prices_come_from_the_defaults_then_the_prices_file(
    lib: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cost_usd("openai/gpt-4o", 1_000_000, 1_000_000) == pytest.approx(12.5)
    # A dated snapshot costs what its model costs; an unrelated longer name does not.
    assert (
        price_of("anthropic/claude-sonnet-4-5-20250929")
        == DEFAULT_PRICES["anthropic/claude-sonnet-4-5"]
    )
    assert price_of("openai/gpt-4o-audio-preview") is None
    assert cost_usd("ollama/qwen3:30b", 10**6, 10**6) == 0.0
    price_file = tmp_path / "prices.yaml"
    price_file.write_text(
        "openai/gpt-4o: {input: 1, output: 2}\nopenai/my-tuned: {input: 3, output: 0}\n"
    )
    monkeypatch.setenv(PRICES_FILE_ENV, str(price_file))
    assert cost_usd("openai/gpt-4o", 1_000_000, 1_000_000) == pytest.approx(3.0)
    assert cost_usd("openai/my-tuned", 2_000_000, 5) == pytest.approx(6.0)
    record = record_usage(
        "openai/my-tuned", input_tokens=10**6, output_tokens=0, context=RunContext(), db=lib
    )
    assert record.cost_usd == pytest.approx(3.0)
    price_file.write_text('{"openai/gpt-4o": {"input": 5, "output": 5}}')  # changed: read again
    assert cost_usd("openai/gpt-4o", 1_000_000, 0) == pytest.approx(5.0)


@pytest.mark.sqlite_only  # refused before the database is touched
@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("list.yaml", "- openai/gpt-4o\n", "must be a mapping of models to prices"),
        ("broken.yaml", "openai/gpt-4o: {input: 1\n", "is not valid YAML or JSON"),
        ("provider.yaml", "acme/x: {input: 1, output: 1}\n", "not 'provider/model'"),
        ("keys.yaml", "openai/x: {input: 1}\n", "must map to exactly {input: USD, output: USD}"),
        ("negative.yaml", "openai/x: {input: -1, output: 1}\n", "input price -1 is not"),
        ("text.yaml", "openai/x: {input: cheap, output: 1}\n", "input price 'cheap' is not"),
        ("nan.json", '{"openai/x": {"input": NaN, "output": 1}}', "input price nan is not"),
        ("missing.yaml", None, "cannot be read"),
    ],
)
def test_a_bad_prices_file_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, content: str | None, problem: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv(PRICES_FILE_ENV, str(path))
    with pytest.raises(PricesError) as caught:
        cost_usd("openai/gpt-4o", 1, 1)
    message = str(caught.value)
    assert problem in message and str(path) in message and PRICES_FILE_ENV in message
    assert "\n" not in message


@pytest.mark.sqlite_only
def test_a_prices_file_that_is_not_a_regular_file_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PRICES_FILE_ENV, str(tmp_path))
    with pytest.raises(PricesError, match="is not a regular file"):
        price_of("openai/gpt-4o")
    big = tmp_path / "big.yaml"
    big.write_text("#" * (1024 * 1024 + 1))
    monkeypatch.setenv(PRICES_FILE_ENV, str(big))
    with pytest.raises(PricesError, match="larger than 1048576 bytes"):
        price_of("openai/gpt-4o")


def test_an_unknown_hosted_model_costs_none_with_one_warning(
    lib: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prices, "_warned", set())  # once per process: start this test afresh
    with caplog.at_level(logging.WARNING, logger="flows.library.prices"):
        for _ in range(3):
            record_usage(
                "openai/brand-new-model",
                input_tokens=100,
                output_tokens=100,
                context=GROUP_7,
                db=lib,
            )
    warnings = [r.getMessage() for r in caplog.records if "price_unknown" in r.getMessage()]
    assert len(warnings) == 1 and "openai/brand-new-model" in warnings[0]
    (row,) = usage_summary(["model"], db=lib)
    assert (row.cost_usd, row.unpriced_calls, row.calls) == (0.0, 3, 3)


def test_the_daily_cap_refuses_a_call_that_would_pass_it(
    lib: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    price = DEFAULT_PRICES["openai/gpt-4o"]  # $2.50 in, $10 out per million
    monkeypatch.setenv(DAILY_CAP_ENV, "1.00")
    check_spending("openai/gpt-4o", group_id=None, estimate_usd=0.99, db=lib)  # nothing spent
    record_usage(
        "openai/gpt-4o", input_tokens=0, output_tokens=90_000, context=RunContext(), db=lib
    )
    assert price.cost(0, 90_000) == pytest.approx(0.90)
    check_spending("openai/gpt-4o", group_id=None, estimate_usd=0.10, db=lib)  # exactly at it
    with pytest.raises(SpendingCapReached) as caught:
        check_spending("openai/gpt-4o", group_id=None, estimate_usd=0.11, db=lib)
    message = str(caught.value)
    assert DAILY_CAP_ENV in message and "$1.0000" in message and "$0.9000 spent" in message
    assert "the call was not made" in message and caught.value.retryable is False
    # Local models are never capped, whatever was spent.
    check_spending("ollama/qwen3:30b", group_id=None, estimate_usd=0.0, db=lib)
    # Yesterday's spending does not count against today's cap.
    tomorrow = datetime.now(UTC).date().replace(year=datetime.now(UTC).year + 1)
    check_spending("openai/gpt-4o", group_id=None, estimate_usd=0.5, today=tomorrow, db=lib)
    # At the cap, even a call estimated at nothing is refused.
    record_usage(
        "openai/gpt-4o", input_tokens=0, output_tokens=10_000, context=RunContext(), db=lib
    )
    with pytest.raises(SpendingCapReached):
        check_spending("openai/gpt-4o", group_id=None, estimate_usd=0.0, db=lib)


def test_the_group_cap_counts_only_the_groups_spending(
    lib: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(GROUP_CAP_ENV, "0.50")
    record_usage("openai/gpt-4o", input_tokens=0, output_tokens=50_000, context=GROUP_7, db=lib)
    record_usage(
        "openai/gpt-4o",
        input_tokens=0,
        output_tokens=90_000,
        context=RunContext(group_id=8),
        db=lib,
    )
    with pytest.raises(SpendingCapReached, match=f"group 7 .*{GROUP_CAP_ENV}=\\$0.5000"):
        check_spending("openai/gpt-4o", group_id=7, estimate_usd=0.01, db=lib)
    check_spending("openai/gpt-4o", group_id=9, estimate_usd=0.49, db=lib)
    check_spending("openai/gpt-4o", group_id=None, estimate_usd=5.0, db=lib)  # not in a group
    messages = [{"role": "user", "content": "x" * 400}]  # about 100 tokens in
    with pytest.raises(SpendingCapReached):
        guard_call("openai/gpt-4o", messages, max_tokens=100, context=GROUP_7, db=lib)
    estimate = guard_call(
        "openai/gpt-4o", messages, max_tokens=100, context=RunContext(group_id=9), db=lib
    )
    assert estimate == pytest.approx(DEFAULT_PRICES["openai/gpt-4o"].cost(100, 100))


def test_an_unpriced_hosted_model_under_a_cap_is_refused(
    lib: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = "anthropic/claude-unreleased"
    assert estimate_usd(model, prompt_chars=10, max_tokens=10) is None
    check_spending(model, group_id=None, estimate_usd=None, db=lib)  # no cap: allowed
    monkeypatch.setenv(DAILY_CAP_ENV, "10")
    with pytest.raises(
        UnknownPriceError, match=f"no price is known for {model}.*{PRICES_FILE_ENV}"
    ):
        check_spending(model, group_id=None, estimate_usd=None, db=lib)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf"])
def test_a_bad_cap_setting_names_the_variable(
    lib: str, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(DAILY_CAP_ENV, value)
    with pytest.raises(ConfigurationError, match=f"{DAILY_CAP_ENV}='{value}' is not an amount"):
        check_spending("openai/gpt-4o", group_id=None, estimate_usd=0.1, db=lib)
