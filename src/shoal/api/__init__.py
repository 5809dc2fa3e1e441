"""The control API: REST ``/v1/*`` on 127.0.0.1 with a bearer token (DESIGN.md §3).

endpoint  where a daemon's API is (.shoal/api-url, token, daemon.pid)
models    request and response bodies
control   the ControlPlane protocol the daemon implements
routes    the aiohttp application, authentication, errors, the OpenAPI document
client    a small synchronous client (the CLI talks to the daemon only through it)
"""
