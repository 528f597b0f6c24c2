"""Adapters and wiring: settings, persistence, the composition root."""
