"""API keys come from the environment first, then from Prefect Secret blocks, so deployments
can keep keys out of worker environments. Each key found is registered with the project's
redaction, so a server that echoes it back cannot carry it into an error or a log."""

from __future__ import annotations

import os
from typing import Any, cast

from flows.llm.errors import AuthenticationError
from scheduler_core.redaction import register_secret


async def api_key(*, provider: str, env_var: str, secret_block: str) -> str:
    if key := os.environ.get(env_var, "").strip():
        register_secret(key)
        return key
    try:
        from prefect.blocks.system import Secret

        secret = cast(Secret[Any], await Secret.aload(secret_block))
    except Exception as exc:  # a missing block and an unreachable Prefect API both mean "no key"
        reason = f"loading the Secret failed: {exc}"
    else:
        if key := str(secret.get()).strip():
            register_secret(key)
            return key
        reason = "the Secret is empty"
    raise AuthenticationError(
        f"no API key for {provider}: set {env_var} or create a Prefect Secret block named "
        f"{secret_block!r} ({reason})"
    )
