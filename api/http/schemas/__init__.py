"""Request and response bodies of the HTTP API, with the examples the OpenAPI document shows."""
