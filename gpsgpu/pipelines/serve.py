"""``gpsgpu serve``: run the read-only API and page (:mod:`gpsgpu.server`) under uvicorn.

With one worker the stores are read here and the app served in this process. With several,
uvicorn starts worker processes that each build the app with :func:`app_from_environment` from the
config passed in ``GPSGPU_SERVE_STORES`` (each worker reads the stores once into its own memory).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any

from gpsgpu.config import ServeConfig
from gpsgpu.errors import UsageError

#: The environment variable that hands the stores to uvicorn's worker processes.
STORES_ENV = "GPSGPU_SERVE_STORES"


def _require_web() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            f"gpsgpu serve needs the web extra ({exc.name} is missing): pip install 'gpsgpu[web]'"
        ) from None


def app_from_environment() -> Any:
    """The app over the stores named in ``GPSGPU_SERVE_STORES`` (uvicorn's factory for workers)."""
    from gpsgpu.server.app import create_app

    stores = json.loads(os.environ[STORES_ENV])
    return create_app(dists=stores["dist"], model=stores["model"], plan=stores["plan"])


def run_serve(config: ServeConfig) -> None:
    """Read the stores and serve them on ``config.host:config.port`` until interrupted."""
    _require_web()
    import uvicorn

    from gpsgpu.server.app import create_app
    from gpsgpu.server.stores import load_stores

    # Read everything once before listening, so a bad store is one line on stderr, not a crashed worker.
    stores = load_stores(dists=config.dist, model=config.model, plan=config.plan)
    what = [f"{len(stores.windows)} window(s)"]
    what += ["model"] * (stores.model is not None) + ["plan"] * (stores.plan is not None)
    print(
        f"gpsgpu: serve: {', '.join(what)} on http://{config.host}:{config.port}/ "
        f"({config.workers} worker(s); API docs at /docs)",
        file=sys.stderr,
    )
    if config.workers == 1:
        uvicorn.run(
            create_app(stores=stores),
            host=config.host,
            port=config.port,
            log_level=config.log_level,
            access_log=False,
        )
        return
    del stores  # each worker reads its own copy
    os.environ[STORES_ENV] = json.dumps(
        {"dist": list(config.dist), "model": config.model, "plan": config.plan}
    )
    _serve_workers(config)


def _serve_workers(config: ServeConfig) -> None:
    """uvicorn's multiprocess supervisor over a listening socket that keeps ``TCP_NODELAY`` on."""
    import inspect

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from gpsgpu.server.nodelay import NodelayConfig

    uv_config = NodelayConfig(
        "gpsgpu.pipelines.serve:app_from_environment",
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers,
        log_level=config.log_level,
        access_log=False,
    )
    sock = uv_config.bind_socket()
    # uvicorn < 0.36 also wants the server's run method as the workers' target.
    if "target" in inspect.signature(Multiprocess.__init__).parameters:
        supervisor = Multiprocess(uv_config, target=uvicorn.Server(uv_config).run, sockets=[sock])  # type: ignore[call-arg]
    else:
        supervisor = Multiprocess(uv_config, sockets=[sock])
    with contextlib.suppress(KeyboardInterrupt):
        supervisor.run()
