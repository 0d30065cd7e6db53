"""`python -m server [--host H] [--port P] [--log-level L]`: everything else comes from
LONGVU_* environment variables, listed by `--help`."""

from __future__ import annotations

import argparse
import logging
import sys

import torch

from server.app import create_app
from server.serve import make_server
from server.settings import Settings


def settings_help() -> str:
    lines = ["settings (environment variables):"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "" if default is None or default == [] else f" (default: {default})"
        lines.append(f"  LONGVU_{name.upper()}\n      {field.description}{shown}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m server", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The LongVU server: upload or link videos, ask questions about them, read the answers as they "
                    "stream. With no LONGVU_CHECKPOINT it serves a tiny random demo model; with no LONGVU_REDIS_URL "
                    "it caches in process.",
        epilog=settings_help() + "\n\nThe README explains each setting.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; "
                        "0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="server log level (default: %(default)s)")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The model worker hands every token to the event loop thread: switch threads sooner
    # than the default 5 ms so that hand-off does not wait on the interpreter lock.
    sys.setswitchinterval(0.001)
    settings = Settings()
    # On a small CPU box the model's spinning intra-op threads can starve the event loop
    # that streams the tokens; fewer threads trade prefill speed for steadier streams.
    if settings.cpu_threads:
        torch.set_num_threads(settings.cpu_threads)
    make_server(create_app(settings), settings, args.host, args.port, args.log_level).run()


if __name__ == "__main__":
    main()
