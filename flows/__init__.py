"""Prefect flows and the layers they share, such as the LLM client in `flows.llm`."""
