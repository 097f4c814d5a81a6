"""The chat domain: entities, use cases and the ports they need.

Pure Python: nothing here imports a framework, a driver or an adapter.
"""
