"""Application services: one event-sourced Application per bounded context."""
