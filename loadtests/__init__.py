"""Load tools: the Locust harness and the asyncio bench (see README.md here)."""
