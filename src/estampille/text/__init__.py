"""Text stages: the LLM clients, post drafting, image-prompt writing and their guardrails."""
