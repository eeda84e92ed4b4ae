"""A fake LLM server speaking the Ollama, OpenAI and Anthropic wire protocols, so the LLM layer
and the official clients can be tested with no model and no network."""
