"""A provider that needs no network, so demos and tests run where no model is available."""

from __future__ import annotations

from flows.llm import synthesis
from flows.llm.models import Completion, CompletionRequest
from flows.llm.providers.base import Provider, StreamState


class OfflineProvider(Provider):
    name = "offline"
    resource = "local"

    async def complete(self, request: CompletionRequest) -> Completion:
        """The reply in streaming pieces, held to `max_tokens` as a server's reply is; the
        reply is a pure function of the prompt, so `temperature` is ignored."""
        messages = request.messages
        as_json = request.json_mode or synthesis.wants_json(messages)
        text = synthesis.reply(messages, as_json=as_json)
        state = StreamState(on_token=request.on_token, max_tokens=request.max_tokens)
        for chunk in synthesis.chunks(text):
            state.emit(chunk)
            if state.truncated:
                state.end_truncated()
                break
        return Completion(
            text="".join(state.parts) if state.truncated else text,
            model=str(request.spec),
            provider=self.name,
            input_tokens=synthesis.count_tokens(" ".join(str(m.get("content")) for m in messages)),
            output_tokens=state.output_tokens or synthesis.count_tokens(text),
            finish_reason=state.finish_reason or "stop",
        )
