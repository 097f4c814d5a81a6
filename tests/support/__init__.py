"""Helpers shared by the test layers (services, free ports, processes, clients)."""
