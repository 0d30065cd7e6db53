"""`python -m server [--host H] [--port P]`: everything else comes from LONGVU_* variables."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from server.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(description="LongVU server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The model worker hands every token to the event loop thread: switch threads sooner
    # than the default 5 ms so that hand-off does not wait on the interpreter lock.
    sys.setswitchinterval(0.001)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
