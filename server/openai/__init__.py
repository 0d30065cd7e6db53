"""The OpenAI-compatible API: protocol (request and response models), serving (the logic,
over the shared engine) and api_router (thin routes), as vLLM lays out its entrypoint."""
