"""A provider that needs no network, so demos and tests run where no model is available."""

from __future__ import annotations

from flows.llm import synthesis
from flows.llm.models import Completion, CompletionRequest
from flows.llm.providers.base import Provider


class OfflineProvider(Provider):
    name = "offline"
    resource = "local"

    async def complete(self, request: CompletionRequest) -> Completion:
        messages = request.messages
        as_json = request.json_mode or synthesis.wants_json(messages)
        text = synthesis.reply(messages, as_json=as_json)
        if request.on_token is not None:
            for chunk in synthesis.chunks(text):
                request.on_token(chunk)
        return Completion(
            text=text,
            model=str(request.spec),
            provider=self.name,
            input_tokens=synthesis.count_tokens(" ".join(str(m.get("content")) for m in messages)),
            output_tokens=synthesis.count_tokens(text),
            finish_reason="stop",
        )
