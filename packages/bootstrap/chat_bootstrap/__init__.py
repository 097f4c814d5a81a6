"""The composition root: settings and the one container that picks every adapter."""
