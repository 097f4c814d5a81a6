"""The seed's clients, unchanged (docs/seed-compat.md): its REST routes and socket events,
served beside ours when ``CHAT_SEED_COMPAT`` is ``open`` or ``api-key``."""
