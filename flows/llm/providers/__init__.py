"""The providers a model string's prefix can name."""

from flows.llm.providers.anthropic_api import AnthropicProvider
from flows.llm.providers.base import Provider
from flows.llm.providers.offline import OfflineProvider
from flows.llm.providers.ollama_api import OllamaProvider
from flows.llm.providers.openai_api import OpenAIProvider

PROVIDERS: dict[str, Provider] = {
    provider.name: provider
    for provider in (OllamaProvider(), OpenAIProvider(), AnthropicProvider(), OfflineProvider())
}

__all__ = ["PROVIDERS", "Provider"]
