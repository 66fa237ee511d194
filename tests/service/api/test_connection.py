"""service/api/connection.py: the limits it adds to uvicorn's httptools protocol (end to end in
tests/reliability/test_connections.py); the uvicorn methods it overrides keep their shape."""

from __future__ import annotations

import inspect

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.api import connection
from service.settings import Settings


def test_the_httptools_hooks_it_overrides_keep_their_shape() -> None:
    # An upgrade that renames or re-signs these fails here instead of silently losing a limit.
    shapes = {"connection_made": ["self", "transport"], "connection_lost": ["self", "exc"],
              "data_received": ["self", "data"], "on_message_begin": ["self"], "on_headers_complete": ["self"],
              "on_body": ["self", "body"], "on_message_complete": ["self"], "on_response_complete": ["self"]}
    for name, params in shapes.items():
        assert list(inspect.signature(getattr(HttpToolsProtocol, name)).parameters) == params, name
    source = inspect.getsource(HttpToolsProtocol)
    assert "self.url += url" in source and "self.cycle = RequestResponseCycle(" in source


def test_the_protocol_carries_the_settings_limits() -> None:
    limits = connection.ConnectionLimits.of(Settings(header_timeout_ms=2500, max_header_bytes=9000, max_url_bytes=700))
    cls = connection.protocol(limits)
    assert issubclass(cls, HttpToolsProtocol) and cls.limits == connection.ConnectionLimits(2.5, 9000, 700)
