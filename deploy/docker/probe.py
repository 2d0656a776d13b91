#!/usr/bin/env python3
"""Container probe: GET http://127.0.0.1:$PORT<path>, exit 0 on HTTP 200, 1 otherwise.

Standard library only (the images carry no curl or wget). Used by the Dockerfile HEALTHCHECK
(``/health``) and by the Kubernetes readiness probe (``/ready``), which is an exec probe rather
than an httpGet probe because ``/ready`` needs ``Authorization: Bearer`` when ``MEGAASR_API_KEY``
is set, and a Kubernetes httpGet probe cannot read a Secret.

Usage: probe.py PATH [--port N] [--timeout S]   (port defaults to $MEGAASR_PORT, else 8000)
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GET a local endpoint; exit 0 when it answers 200.")
    parser.add_argument("path", nargs="?", default="/health")
    parser.add_argument("--port", type=int, default=int(os.environ.get("MEGAASR_PORT") or 8000))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--timeout", type=float, default=4.0)
    args = parser.parse_args(argv)
    request = urllib.request.Request(f"http://{args.host}:{args.port}{args.path}")
    key = os.environ.get("MEGAASR_API_KEY")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (OSError, ValueError) as error:
        print(f"probe {args.path}: {error}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"probe {args.path}: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
