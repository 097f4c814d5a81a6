"""The `chat` command."""
