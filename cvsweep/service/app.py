"""The service's HTTP API and page (FastAPI), the study dashboard beside it, and the guard in
front of both. Routes and their answers: docs/guides/service.md."""

from __future__ import annotations

import asyncio
import logging
import threading
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from cvsweep import layout
from cvsweep.compose import compose, group_options
from cvsweep.config.schema import OBJECTIVES
from cvsweep.service import store
from cvsweep.service.events import Monitor
from cvsweep.service.requests import Refused, check_request
from cvsweep.service.runner import NotCancellable, Runner
from cvsweep.service.security import COOKIE, Guard, authenticated, session_value, token_matches
from cvsweep.service.settings import MAX_BODY_BYTES, ServeSettings
from cvsweep.service.snapshot import trial_file

log = logging.getLogger("cvsweep.service")
VERSION = metadata.version("cvsweep")
ASSETS = Path(__file__).parent / "static"
# optuna-dashboard's own paths (its page, API, assets): it is served at the root beside ours.
DASHBOARD_PREFIXES = ("/dashboard", "/api/", "/static/", "/artifacts/", "/csv/", "/favicon.ico",
                      "/incompatible-rdb-schema", "/sql-profiler")
LOG_TAIL_BYTES = 1024 * 1024
MAX_CHECKS_WAITING = 4
STREAM_CHECK_S = 5  # how often an idle event stream looks whether its client is still there


class SweepRequest(BaseModel):
    """The body of a request to start a sweep: its command-line overrides."""

    overrides: Any = None  # checked by cvsweep/service/requests.py, which names what is allowed


class Login(BaseModel):
    """The body of a login: the service's access token."""

    token: str = ""


def create_app(settings: ServeSettings, poll_interval: float = 0.5):
    """The whole service as one ASGI app: guard -> (dashboard | API and page).

    Args:
        settings: The service's settings.
        poll_interval: Seconds between the poller's reads of the sweeps' files.

    Returns:
        The ASGI app.
    """
    sweeps = store.SweepStore(settings.root)
    runner = Runner(settings, sweeps)
    monitor = Monitor(runner, poll_interval)
    defaults_cfg = compose()
    choices = defaults_cfg.hydra.runtime.choices
    group_names = [g for g in choices if not g.startswith("hydra/")] + ["hydra/sweeper/pruner"]
    groups = group_options(*group_names)
    options = _options(defaults_cfg, groups)

    api = FastAPI(title="cvsweep", version=VERSION, max_body_size=MAX_BODY_BYTES,
                  docs_url="/docs", redoc_url=None)
    api.mount("/assets", StaticFiles(directory=ASSETS), name="assets")

    @api.on_event("startup")
    def start_polling() -> None:
        monitor.start()

    @api.on_event("shutdown")
    def stop_polling() -> None:
        monitor.stop.set()

    def sweep_folder(sweep_id: str) -> Path:
        folder = sweeps.folder(sweep_id)
        if folder is None:
            raise HTTPException(404, f"no sweep {sweep_id!r}")
        return folder

    @api.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(ASSETS / "index.html", media_type="text/html")

    @api.get("/health")
    def health() -> dict:
        statuses = runner.statuses()
        return {"status": "ok", "version": VERSION, "max_running": settings.max_running,
                "running": sum(s == store.RUNNING for s in statuses.values()),
                "queued": sum(s == store.QUEUED for s in statuses.values())}

    @api.get("/session")
    def session(request: Request) -> dict:
        return {"auth_required": settings.token is not None,
                "authenticated": authenticated(settings, {k.lower(): v for k, v in request.headers.items()})}

    @api.post("/session", status_code=204)
    def login(body: Login, request: Request) -> Response:
        if settings.token is None:
            return Response(status_code=204)
        if not token_matches(settings, body.token):
            raise HTTPException(401, "wrong token")
        response = Response(status_code=204)
        # Secure when the page came over https (directly, or through a proxy uvicorn trusts).
        response.set_cookie(COOKIE, session_value(settings.token), httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    @api.get("/options")
    def get_options() -> dict:
        return options

    # Checks take turns (Hydra composes one config at a time) and can take a while (a
    # RunPod health check retries for half a minute): a few may wait, more are turned away at
    # once instead of holding the server's threads.
    checking = threading.BoundedSemaphore(MAX_CHECKS_WAITING)

    @api.post("/sweeps", status_code=201)
    def start_sweep(body: SweepRequest) -> JSONResponse:
        queued = sum(s == store.QUEUED for s in runner.statuses().values())
        if queued >= settings.max_queued:
            raise HTTPException(429, f"{queued} sweeps are queued (serve.max_queued={settings.max_queued}); "
                                     "try again when some have started, or cancel one")
        if not checking.acquire(blocking=False):
            raise HTTPException(503, f"{MAX_CHECKS_WAITING} requests are being checked; try again in a moment",
                                headers={"Retry-After": "5"})
        sweep_id = sweeps.new_id()
        folder = sweeps.sweeps / sweep_id
        try:
            checked = check_request(body.overrides, settings, groups, folder)
        except Refused as err:
            return JSONResponse({"detail": [p.to_json() for p in err.problems]}, status_code=422)
        finally:
            checking.release()
        sweeps.create(sweep_id, list(body.overrides), checked)
        runner.tick()
        status, _ = store.status_of(folder)
        log.info("sweep %s accepted (%s): %s", sweep_id, status, " ".join(body.overrides))
        return JSONResponse({"id": sweep_id, "status": status, "url": f"/sweeps/{sweep_id}"}, status_code=201)

    @api.get("/sweeps")
    def list_sweeps() -> dict:
        views = [monitor.view(sweep_id) for sweep_id in reversed(sweeps.ids())]
        return {"sweeps": [{k: v for k, v in view.items() if k != "trials"} for view in views if view]}

    @api.get("/sweeps/{sweep_id}")
    def get_sweep(sweep_id: str) -> Response:
        sweep_folder(sweep_id)
        return Response(monitor.view_json(sweep_id), media_type="application/json")  # encoded once per poll

    @api.post("/sweeps/{sweep_id}/cancel", status_code=202)
    def cancel(sweep_id: str) -> dict:
        sweep_folder(sweep_id)
        try:
            status = runner.cancel(sweep_id)
        except NotCancellable as err:
            raise HTTPException(409, str(err)) from None
        monitor.forget(sweep_id)
        return {"id": sweep_id, "status": status}

    @api.get("/sweeps/{sweep_id}/events", response_class=EventSourceResponse)
    async def sweep_events(request: Request, folder: Path = Depends(sweep_folder),
                           last_event_id: Optional[str] = Header(None)):
        events = await asyncio.to_thread(monitor.events, folder.name)
        resumed = last_event_id and last_event_id.isascii() and last_event_id.isdigit() and len(last_event_id) < 10
        sent = int(last_event_id) if resumed else 0
        if sent > len(events.events):  # an id from an earlier server's stream (its ids differ): from the start
            sent = 0
        # Woken by the poller when it adds an event, not on a timer: idle streams cost nothing.
        woken = asyncio.Event()
        listener = (asyncio.get_running_loop(), woken)
        events.listeners.add(listener)
        try:
            while True:
                woken.clear()  # before reading: an event added after this wakes the wait below
                for event_id, name, data in events.after(sent):
                    yield ServerSentEvent(id=str(event_id), event=name, data=data)
                    sent = event_id
                if events.ended and sent >= len(events.events):
                    return
                try:
                    await asyncio.wait_for(woken.wait(), timeout=STREAM_CHECK_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
        finally:
            events.listeners.discard(listener)

    @api.get("/sweeps/{sweep_id}/report")
    def report(folder: Path = Depends(sweep_folder)) -> FileResponse:
        path = layout.report_of(folder)
        if not path.is_file():
            raise HTTPException(404, "no report yet: the sweep writes it when it ends")
        return FileResponse(path, media_type="text/html")

    @api.get("/sweeps/{sweep_id}/trials/{job}")
    def trial_result(job: str, folder: Path = Depends(sweep_folder)) -> FileResponse:
        path = trial_file(folder, job, layout.RESULT)
        if path is None:
            raise HTTPException(404, f"trial {job!r} of this sweep has no {layout.RESULT}")
        return FileResponse(path, media_type="application/json")

    @api.get("/sweeps/{sweep_id}/trials/{job}/model")
    def trial_model(job: str, folder: Path = Depends(sweep_folder)) -> FileResponse:
        path = trial_file(folder, job, layout.MODEL)
        if path is None:
            raise HTTPException(404, f"trial {job!r} of this sweep has no model here (see its result.json 'model')")
        return FileResponse(path, media_type="application/octet-stream", filename=f"{folder.name}-{int(job)}.keras")

    @api.get("/sweeps/{sweep_id}/log")
    def sweep_log(folder: Path = Depends(sweep_folder)) -> PlainTextResponse:
        """The sweep process's output (its last megabyte)."""
        path = folder / store.LOG_FILE
        if not path.is_file():
            return PlainTextResponse("")
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - LOG_TAIL_BYTES))
            return PlainTextResponse(handle.read().decode("utf-8", "replace"))

    return Guard(_with_dashboard(api, settings), settings)


def _options(cfg, groups: dict[str, list[str]]) -> dict:
    choices = cfg.hydra.runtime.choices
    return {
        "groups": {g: groups[g] for g in sorted(groups) if not g.startswith("hydra/")},
        "objectives": [{"name": name, "direction": spec.direction, "description": spec.description}
                       for name, spec in OBJECTIVES.items()],
        "pruners": groups["hydra/sweeper/pruner"],
        "defaults": {**{g: choices[g] for g in groups if not g.startswith("hydra/")},
                     "objective": cfg.objective.name, "pruner": choices["hydra/sweeper/pruner"],
                     "n_trials": cfg.hydra.sweeper.n_trials},
    }


def _with_dashboard(api, settings: ServeSettings):
    """optuna-dashboard (a WSGI app) over the service's study storage, at its own paths. It is
    made at its first request: importing it imports scikit-learn (through Optuna's importance),
    which would hold up every start of the service."""
    made, lock = [], threading.Lock()

    def dashboard():
        with lock:
            if not made:
                from a2wsgi import WSGIMiddleware
                from optuna_dashboard import wsgi

                from cvsweep.study.storage import open_storage

                storage = open_storage(settings.storage_url, heartbeat_interval=60, grace_period=120)
                made.append(WSGIMiddleware(wsgi(storage)))
            return made[0]

    async def app(scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(DASHBOARD_PREFIXES):
            if scope["method"] not in ("GET", "HEAD"):  # read-only: running sweeps own their studies
                return await JSONResponse({"detail": "the dashboard is read-only here: its studies belong to the "
                                                     "sweeps that run them"}, status_code=405)(scope, receive, send)
            return await (await asyncio.to_thread(dashboard))(scope, receive, send)
        return await api(scope, receive, send)

    return app
