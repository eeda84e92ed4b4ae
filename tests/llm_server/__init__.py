"""A fake LLM server speaking the Ollama, OpenAI and Anthropic wire protocols, so the LLM layer
and the official clients can be tested with no model and no network.

The model name picks the behaviour of one request: `missing…` (404 no such model),
`cutoff…` and `midfail…` (a stream cut short, without or with an in-stream error),
`broken-json…` (invalid JSON), and the hostile ones: `endless…` (a stream that never ends),
`flood…` (50 MiB of text, then a proper end), `hugeerror…` (HTTP 500 with a 20 MiB body),
`echokey-401…`/`echokey-500…` (that status, the body quoting the API key received).
Ollama's `/api/embed` and OpenAI's `/v1/embeddings` answer too (embeddings.py).
`POST /_control` steers the rest (pacing, failing the next requests, holding them)."""
