"""The output library: the app's own record of what its pipelines wrote and spent.

Every story and research card is registered (registry.py) with the model, tokens, cost,
structure and cards behind it; research cards form the card library stories draw on
(cards.py); every model call's usage is stored (usage.py) and counted against the
spending caps for hosted APIs (caps.py, prices.py); each output gets a sidecar file
(sidecar.py). The tables sit in the scheduler's database, created on first use, but the
scheduler core does not know them. See docs/outputs.md.
"""

from flows.library.caps import (
    DAILY_CAP_ENV,
    GROUP_CAP_ENV,
    SpendingCaps,
    check_spending,
    estimate_usd,
    guard_call,
    spending_caps,
)
from flows.library.cards import find_cards, pick_cards
from flows.library.context import RunContext, current_run_context
from flows.library.errors import (
    InvalidQueryError,
    OutputNotFoundError,
    PricesError,
    SpendingCapReached,
    UnknownPriceError,
)
from flows.library.prices import DEFAULT_PRICES, PRICES_FILE_ENV, Price, cost_usd, price_of
from flows.library.registry import (
    get_output,
    list_outputs,
    output_at,
    output_to_dict,
    recent_structures,
    record_output,
    set_nearest,
)
from flows.library.sidecar import sidecar_data, sidecar_markdown, sidecar_path, write_sidecar
from flows.library.store import close_library
from flows.library.tables import LIBRARY_METADATA, OutputItem, UsageRecord
from flows.library.usage import UsageRow, record_completion, record_usage, usage_summary

__all__ = [
    "DAILY_CAP_ENV",
    "DEFAULT_PRICES",
    "GROUP_CAP_ENV",
    "LIBRARY_METADATA",
    "PRICES_FILE_ENV",
    "InvalidQueryError",
    "OutputItem",
    "OutputNotFoundError",
    "Price",
    "PricesError",
    "RunContext",
    "SpendingCapReached",
    "SpendingCaps",
    "UnknownPriceError",
    "UsageRecord",
    "UsageRow",
    "check_spending",
    "close_library",
    "cost_usd",
    "current_run_context",
    "estimate_usd",
    "find_cards",
    "get_output",
    "guard_call",
    "list_outputs",
    "output_at",
    "output_to_dict",
    "pick_cards",
    "price_of",
    "recent_structures",
    "record_completion",
    "record_output",
    "record_usage",
    "set_nearest",
    "sidecar_data",
    "sidecar_markdown",
    "sidecar_path",
    "spending_caps",
    "usage_summary",
    "write_sidecar",
]
