"""``python -m shoal.daemon --file FILE``: the background daemon that ``shoal up -d`` starts."""

from __future__ import annotations

import argparse
import logging
import sys

import uvloop

from shoal.daemon.running import run
from shoal.errors import ShoalError
from shoal.manifest import load_manifest


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m shoal.daemon")
    parser.add_argument("--file", required=True)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        project = load_manifest(args.file)
        uvloop.run(run(project))
    except ShoalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
