"""The ``gpsgpu serve`` web app: a read-only REST API under ``/api/v1`` and a static page at ``/``.

:func:`create_app` reads the stores once (:mod:`gpsgpu.server.stores`) and every request answers from
memory. Every route is a GET: nothing is ever written. Bad input is a 4xx whose body is JSON
``{"detail": ...}`` (FastAPI's 422 for parameters out of range or malformed, 404 for an unknown
window, port list, model or plan); the OpenAPI schema is at ``/openapi.json`` and ``/docs``.

``/docs`` is Swagger UI served from the package (``static/swagger-ui/``, see its ``SOURCES.md``), so
it works offline: the page names no outside URL. ReDoc (``/redoc``) is off: it would be a second
vendored bundle for the same schema.
"""

from __future__ import annotations

import platform
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from gpsgpu import __version__
from gpsgpu.server.stores import DistWindow, Stores, load_stores

API = "/api/v1"
#: The largest ``k`` a neighbours query or a download accepts (as ``gpsgpu portdist block``).
MAX_K = 1_000
#: The most rows one predictors, rules or plan-rows page returns.
MAX_LIMIT = 10_000
#: Where the vendored Swagger UI lives under the ``/static`` mount.
SWAGGER_UI = "/static/swagger-ui"

Port = Annotated[int, PathParam(ge=0, le=65_535, description="a TCP port (0..65535)")]
Source = Annotated[
    Literal["darknet", "model"],
    PathParam(description="darknet: tailored scans; model: co-location in a GPS seed scan"),
]
Window = Annotated[
    str, PathParam(min_length=1, max_length=64, description="a built window: day|week|month|year|seed")
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="the most rows to return")]


# --- response models -------------------------------------------------------------------------------


class Error(BaseModel):
    """Every 4xx: what was wrong (a string, or FastAPI's list of parameter errors)."""

    detail: Any


class Health(BaseModel):
    """Liveness and what is loaded."""

    status: Literal["ok"]
    windows: int
    model: bool
    plan: bool


class Version(BaseModel):
    """Versions of the server and of the formats it reads."""

    gpsgpu: str
    api: str
    python: str
    dist_format: int
    model_format: int


class WindowInfo(BaseModel):
    """One loaded window of one source."""

    source: str
    window: str
    first_day: str | None
    last_day: str | None
    ports: int
    edges: int
    store_k: int


class Neighbor(BaseModel):
    """A neighbour and its distance (smaller is closer)."""

    port: int
    distance: float


class Neighbors(BaseModel):
    """A port's nearest ports, nearest first (empty when the window never saw the port)."""

    port: int
    source: str
    window: str
    observed: bool
    k: int
    neighbors: list[Neighbor]


class Distance(BaseModel):
    """The distance between two ports; null when either is unobserved or they are unreachable."""

    a: int
    b: int
    source: str
    window: str
    distance: float | None
    observed: dict[str, bool]


class ModelInfo(BaseModel):
    """The loaded GPS model."""

    name: str
    preset: str | None
    params: dict[str, Any]
    counts: dict[str, Any]
    predictor_rows: int
    rules: int
    colocation: str | None = Field(description="where P(a|b) counts come from; null: not available")


#: A feature as the model stores it, and in words.
FEATURE = Field(description="the feature's canonical string, e.g. 's19: 69cc8000'")
KIND = Field(description="what kind of feature it is, e.g. 'network /19', 'banner line in AS'")
LABEL = Field(description="the feature in words, e.g. 'network 105.204.128.0/19'")


class Predictor(BaseModel):
    """A best predictor of seed services on the port: port ``port`` with feature ``feature`` on the host.

    ``hitrate`` = ``count_p2`` / ``cp_server``: of the ``cp_server`` hosts with the feature on ``port``,
    ``count_p2`` also had the predicted port; ``n_services`` seed services had it as best predictor.
    """

    port: int
    feature: str = FEATURE
    kind: str = KIND
    label: str = LABEL
    hitrate: float
    count_p2: int
    cp_server: int
    n_services: int


class Predictors(BaseModel):
    """A port's strongest predictors (hitrate, then support), and how many were not shown."""

    port: int
    n_predictors: int
    n_unpredicted: int = Field(description="seed services on the port that no other port predicts")
    predictors: list[Predictor]


class Rule(BaseModel):
    """A rule of the model: a service on ``port`` with ``feature`` predicts the asked port."""

    port: int
    feature: str = FEATURE
    kind: str = KIND
    label: str = LABEL
    fkey: str = Field(description="the feature key (uint64, as a decimal string)")
    score: float


class Rules(BaseModel):
    """The best-scored rules that predict a port."""

    port: int
    n_rules: int
    rules: list[Rule]


class Conditional(BaseModel):
    """P(a | b): of the ``n_b`` hosts with port b open, the share that also have a open."""

    a: int
    b: int
    n_both: int
    n_b: int
    probability: float | None
    counts_from: str


class PortBudget(BaseModel):
    """A port's share of the plan: its rows, probes and first row (in plan order)."""

    port: int
    rows: int
    probes: int
    share: float
    first_row: int


class PlanInfo(BaseModel):
    """The loaded plan: rows of ``/step`` prefixes, and the budget per port in plan order."""

    name: str
    step: int
    probes_per_row: int
    rows: int
    probes: int
    ports: list[PortBudget]


class PlanRow(BaseModel):
    """A plan row: its position in the plan and its prefix."""

    row: int
    cidr: str


class PlanRows(BaseModel):
    """A page of a port's plan rows."""

    port: int
    n_rows: int
    offset: int
    rows: list[PlanRow]


ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": Error}, 422: {"model": Error}}


# --- the app ---------------------------------------------------------------------------------------


def static_dir() -> Path:
    """The page's files (inside the package, so the wheel carries them)."""
    return Path(str(resources.files("gpsgpu.server") / "static"))


def create_app(
    *,
    dists: list[str | Path] | tuple[str | Path, ...] = (),
    model: str | Path | None = None,
    plan: str | Path | None = None,
    stores: Stores | None = None,
) -> FastAPI:
    """The app over port2dist stores ``dists``, a GPS ``model`` and a ``plan`` (or ready ``stores``).

    The stores are read here, once; :class:`~gpsgpu.errors.InputError` when one is unreadable.
    """
    from gpsgpu.io.model import MODEL_FORMAT
    from gpsgpu.io.portdist import DIST_FORMAT

    held = stores if stores is not None else load_stores(dists=dists, model=model, plan=plan)
    app = FastAPI(
        title="gpsgpu",
        version=__version__,
        description="Read-only: port distances (port2dist) and the GPS model and plan.",
        # FastAPI's own /docs loads Swagger UI from a CDN (a blank page offline); ours is below.
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:  # a bug, but still JSON
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    def pick(source: str, window: str) -> DistWindow:
        found = held.windows.get((source, window))
        if found is None:
            have = ", ".join(f"{s}/{w}" for s, w in sorted(held.windows)) or "none (start with --dist DIST/)"
            raise HTTPException(404, f"no window {source}/{window}; loaded: {have}")
        return found

    def need_model() -> Any:
        if held.model is None:
            raise HTTPException(404, "no model loaded (start the server with --model MODEL/)")
        return held.model

    def need_plan() -> Any:
        if held.plan is None:
            raise HTTPException(404, "no plan loaded (start the server with --plan PLAN/)")
        return held.plan

    @app.get(f"{API}/health", tags=["meta"])
    async def health() -> Health:
        """Liveness and what is loaded."""
        return Health(
            status="ok", windows=len(held.windows), model=held.model is not None, plan=held.plan is not None
        )

    @app.get(f"{API}/version", tags=["meta"])
    async def version() -> Version:
        """Versions of the server and of the store formats it reads."""
        return Version(
            gpsgpu=__version__,
            api="v1",
            python=platform.python_version(),
            dist_format=DIST_FORMAT,
            model_format=MODEL_FORMAT,
        )

    # --- port distances ------------------------------------------------------------------------

    @app.get(f"{API}/distances/windows", tags=["distances"])
    async def windows() -> list[WindowInfo]:
        """Every loaded window of every source."""
        return [
            WindowInfo(
                source=s,
                window=w,
                first_day=win.info.get("first_day"),
                last_day=win.info.get("last_day"),
                ports=win.port_graph.n_nodes,
                edges=win.port_graph.n_edges,
                store_k=win.store_k,
            )
            for (s, w), win in sorted(held.windows.items())
        ]

    @app.get(
        f"{API}/distances/{{source}}/{{window}}/neighbors/{{port}}", tags=["distances"], responses=ERRORS
    )
    async def neighbors(
        source: Source,
        window: Window,
        port: Port,
        k: Annotated[int, Query(ge=1, le=MAX_K, description="how many nearest ports")] = 10,
    ) -> Neighbors:
        """``port``'s ``k`` nearest ports in the window, nearest first."""
        win = pick(source, window)
        # Stored lists answer at once; a deeper k runs a shortest-path search, off the event loop.
        rows = win.nearest(port, k) if k <= win.store_k else await run_in_threadpool(win.nearest, port, k)
        return Neighbors(
            port=port,
            source=source,
            window=window,
            observed=win.observed(port),
            k=k,
            neighbors=[Neighbor(port=n, distance=d) for n, d in rows],
        )

    @app.get(
        f"{API}/distances/{{source}}/{{window}}/distance/{{a}}/{{b}}", tags=["distances"], responses=ERRORS
    )
    async def distance(source: Source, window: Window, a: Port, b: Port) -> Distance:
        """The distance between ports ``a`` and ``b`` in the window."""
        win = pick(source, window)
        value = await run_in_threadpool(win.pair, a, b)
        return Distance(
            a=a,
            b=b,
            source=source,
            window=window,
            distance=value,
            observed={str(a): win.observed(a), str(b): win.observed(b)},
        )

    @app.get(
        f"{API}/distances/{{source}}/{{window}}/download",
        tags=["distances"],
        responses={
            200: {
                "content": {"text/csv": {}, "application/vnd.apache.parquet": {}},
                "description": "rows a, b, distance",
            },
            **ERRORS,
        },
        response_class=StreamingResponse,
    )
    async def download(
        source: Source,
        window: Window,
        format: Annotated[Literal["csv", "parquet"], Query(description="file format")] = "csv",
        k: Annotated[
            int | None, Query(ge=1, le=MAX_K, description="only each port's k nearest (default: every pair)")
        ] = None,
    ) -> StreamingResponse:
        """The whole window (``a, b, distance``: every reachable pair once, or each port's ``k`` nearest),
        streamed block by block as CSV or Parquet."""
        win = pick(source, window)
        name = f"gpsgpu-{source}-{window}{f'-k{k}' if k else ''}.{format}"
        body = win.iter_parquet(k) if format == "parquet" else win.iter_csv(k)
        media = "application/vnd.apache.parquet" if format == "parquet" else "text/csv"
        return StreamingResponse(
            body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )

    # --- GPS model and plan --------------------------------------------------------------------

    @app.get(f"{API}/model", tags=["model"], responses=ERRORS)
    async def model_info() -> ModelInfo:
        """The loaded model: its preset, parameters and counts."""
        m = need_model()
        return ModelInfo(
            name=Path(m.path).name,
            preset=m.params.get("preset"),
            params=m.params,
            counts=dict(m.metadata.get("counts") or {}),
            predictor_rows=len(m.predictors),
            rules=len(m.rules),
            colocation=m.counts_from,
        )

    @app.get(f"{API}/model/ports/{{port}}/predictors", tags=["model"], responses=ERRORS)
    async def predictors(port: Port, limit: Limit = 20) -> Predictors:
        """``port``'s strongest predictors: the (port, feature) pairs that were the best predictor of
        its seed services, by hitrate then support."""
        rows, total, unpredicted = need_model().port_predictors(port, limit)
        return Predictors(
            port=port,
            n_predictors=total,
            n_unpredicted=unpredicted,
            predictors=[Predictor(**r) for r in rows],
        )

    @app.get(f"{API}/model/ports/{{port}}/rules", tags=["model"], responses=ERRORS)
    async def rules(port: Port, limit: Limit = 50) -> Rules:
        """The rules that predict ``port``, best score first."""
        rows, total = need_model().port_rules(port, limit)
        return Rules(port=port, n_rules=total, rules=[Rule(**r) for r in rows])

    @app.get(f"{API}/model/conditional/{{a}}/{{b}}", tags=["model"], responses=ERRORS)
    async def conditional(a: Port, b: Port) -> Conditional:
        """P(a | b) among the model's hosts (null when no host has b)."""
        m = need_model()
        counts = m.conditional(a, b)
        if counts is None:
            raise HTTPException(404, "the model kept no co-location counts (learn with --save-counts)")
        both, n_b = counts
        return Conditional(
            a=a, b=b, n_both=both, n_b=n_b, probability=both / n_b if n_b else None, counts_from=m.counts_from
        )

    @app.get(f"{API}/plan", tags=["plan"], responses=ERRORS)
    async def plan_info() -> PlanInfo:
        """The loaded plan and its budget per port, in plan order."""
        p = need_plan()
        return PlanInfo(
            name=Path(p.path).name,
            step=p.step,
            probes_per_row=p.probes_per_row,
            rows=int(p.ports.size),
            probes=int(p.ports.size) * p.probes_per_row,
            ports=[PortBudget(**b) for b in p.budget],
        )

    @app.get(f"{API}/plan/ports/{{port}}", tags=["plan"], responses=ERRORS)
    async def plan_rows(
        port: Port,
        offset: Annotated[int, Query(ge=0, le=1 << 32, description="rows to skip")] = 0,
        limit: Limit = 100,
    ) -> PlanRows:
        """A page of ``port``'s plan rows, in plan order."""
        rows, total = need_plan().port_rows(port, offset, limit)
        return PlanRows(port=port, n_rows=total, offset=offset, rows=[PlanRow(**r) for r in rows])

    # --- the page ------------------------------------------------------------------------------

    def openapi() -> dict[str, Any]:
        # The loaded windows become the schema's enum of `window`, so /docs offers them and a
        # schema-driven client (or fuzzer) knows what exists; an unknown window is still a JSON 404.
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            names = sorted({w for _, w in held.windows})
            for item in document["paths"].values():
                for parameter in item.get("get", {}).get("parameters", []):
                    if parameter["name"] == "window" and names:
                        parameter["schema"]["enum"] = names
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    files = static_dir()

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(files / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} API",
            swagger_js_url=f"{root}{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=f"{root}{SWAGGER_UI}/favicon-32x32.png",
            # Swagger UI's default validator badge would fetch from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    app.mount("/static", StaticFiles(directory=files), name="static")
    return app
