"""Ports: the abstract interfaces the use cases need from the outside world."""
