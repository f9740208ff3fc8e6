"""``appkit serve``: run the OpenAI-compatible server with uvicorn.

Registered through the ``appkit.commands`` entry-point group. The profile's ``[server]`` table gives
the defaults; flags override them for one run.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def cmd_serve(args: argparse.Namespace) -> int:
    from appkit.config import find_profile
    from appkit.errors import AppkitError
    from appkit.lazy import require
    from appkit.server.auth import KeyRing, is_loopback

    profile = find_profile(args.profile)
    s = profile.server
    host, port, workers = args.host or s.host, args.port or s.port, args.workers or s.workers
    keys = KeyRing.from_config(s)
    if not is_loopback(host) and not keys:
        raise AppkitError(f"refusing to listen on {host} without API keys: anyone who can reach "
                          "it could read your documents. Set server.api_keys in the profile (or "
                          f"${s.api_keys_env}), or listen on 127.0.0.1")
    if workers > 1 and not profile.store.host:
        raise AppkitError(f"{workers} workers need a Chroma server: embedded Chroma must not be "
                          "written by two processes. Start one with 'chroma run --path DIR --host "
                          "127.0.0.1 --port 8000' and set store.host and store.port in the "
                          "profile (docs/deployment.md)")
    uvicorn = require("uvicorn", extra="serve")
    require("fastapi", extra="serve")
    os.environ["APPKIT_PROFILE"] = str(profile.source)
    if args.warm:
        os.environ["APPKIT_SERVE_WARM"] = "1"
    store = f"Chroma server {profile.store.host}:{profile.store.port}" if profile.store.host \
        else f"embedded Chroma in {profile.data_dir.resolve()}"
    auth = f"{len(keys.users)} API key(s)" if keys else "no API keys: loopback clients only"
    print(f"appkit serve: http://{host}:{port}/v1 ({workers} worker(s), {auth}, {store})",
          file=sys.stderr, flush=True)
    uvicorn.run("appkit.server.app:app_from_environment", factory=True, host=host, port=port,
                workers=workers, log_level=args.log_level, timeout_graceful_shutdown=10)
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``appkit serve`` to the CLI."""
    p = sub.add_parser("serve", parents=[common],
                       help="OpenAI-compatible HTTP server (chat, embeddings, ingest, search)")
    p.add_argument("--host", help="address to bind (default: server.host, 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default: server.port, 8080)")
    p.add_argument("--workers", type=int, default=0,
                   help="worker processes (default: server.workers; >1 needs store.host)")
    p.add_argument("--warm", action="store_true",
                   help="load the embedder and chat model at start, not on the first request")
    p.add_argument("--log-level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)
