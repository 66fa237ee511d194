"""`python -m service [--port 8000 ...]`: start the HTTP service (flags override GOOGLENET_* variables)."""

from __future__ import annotations

import argparse
import sys

import uvicorn
from pydantic import ValidationError

from service import logs
from service.api import connection
from service.app import create_app, mark_closing, mark_draining
from service.lifecycle import GracefulServer
from service.settings import Settings


def parse_args(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=field.description)
        else:
            parser.add_argument(flag, default=None, help=f"{field.description} (env GOOGLENET_{name.upper()})")
    return {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    try:
        settings = Settings(**parse_args(argv))
    except ValidationError as exc:
        print(f"invalid settings:\n{exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, fmt=settings.log_format)  # uvicorn's start-up lines in the same format
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            access_log=False, timeout_graceful_shutdown=settings.shutdown_grace_s,
                            log_config=None,  # uvicorn's own lines go through logs.configure's JSON handler
                            # slow and idle clients are cut (service/api/connection.py)
                            http=connection.protocol(connection.ConnectionLimits.of(settings)),
                            timeout_keep_alive=settings.idle_timeout_ms / 1000)
    # SIGTERM: readiness false, listener open for shutdown_delay_s, then drain (service/lifecycle.py).
    server = GracefulServer(config, delay_s=settings.shutdown_delay_s,
                            on_draining=lambda: mark_draining(app), on_closing=lambda: mark_closing(app))
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
