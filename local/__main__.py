"""`make dev`: serve template.yaml on this machine until Ctrl-C.

python -m local [--port 3000] [--interval SECONDS] [--visibility-timeout SECONDS] [--verbose]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from local.keys import STATE_DIR
from local.stack import DEFAULT_PORT, LOCAL_VISIBILITY_TIMEOUT, Options, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local", description="Run template.yaml on this machine.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", DEFAULT_PORT)), help="HTTP port (3000)")
    parser.add_argument(
        "--interval",
        type=int,
        default=None,
        help="seconds between monitor runs (default: BEHAVIORAL_MONITORING_INTERVAL, else the template's schedule)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=LOCAL_VISIBILITY_TIMEOUT,
        help=f"the queues' visibility timeout locally, so retries show within seconds ({LOCAL_VISIBILITY_TIMEOUT})",
    )
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR, help="keys and stack.json (.local-stack/)")
    parser.add_argument("--verbose", action="store_true", help="show the functions' own logs and metrics")
    args = parser.parse_args(argv)
    if args.interval is not None and args.interval < 1:
        parser.error("--interval must be at least 1 second")
    return run(
        Options(
            port=args.port,
            interval=args.interval,
            visibility_timeout=args.visibility_timeout,
            verbose=args.verbose,
            state_dir=args.state_dir,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
