"""Adapters: one implementation per port and technology."""
