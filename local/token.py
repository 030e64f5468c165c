"""`make token`: print a JWT the local stack's HTTP API accepts (signed with the key in .local-stack/).

curl -H "Authorization: Bearer $(make -s token)" http://127.0.0.1:3000/followups/stats
"""

from __future__ import annotations

import argparse
from pathlib import Path

from local.keys import STATE_DIR, ensure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.token", description=__doc__.splitlines()[0])
    parser.add_argument("--ttl", type=int, default=12 * 3600, help="seconds the token is valid (12 hours)")
    parser.add_argument("--subject", default="local-user")
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR)
    args = parser.parse_args(argv)
    print(ensure(args.state_dir).token(subject=args.subject, ttl=args.ttl))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
