"""The HTTP API and the page of ``reloc serve`` (FastAPI).

API (JSON; every error is ``{"error": "..."}`` with a 4xx/5xx status; with a token every
``/api`` request needs ``Authorization: Bearer TOKEN``, else 401):

- ``GET /api/health``: ``{"status": "ok", "version", "queue": {"waiting", "capacity"}}``.
- ``GET /api/models``: the served models (``auto`` first when offered), the default, the limits.
- ``POST /api/localize``: multipart ``file``; optional ``model``, ``threshold`` (0.5),
  ``wait`` (true). With ``wait`` the answer is the result: ``sha256``, ``model``,
  ``model_reason``, ``jpeg_quality`` (null for non-JPEG), ``tampered_fraction``, ``score``,
  ``detection`` (its band and measured false-alarm rate, :func:`reloc.engine.detection.assess`,
  and ``text``, the same in a sentence),
  ``width``, ``height``, ``fractions`` (tampered fraction at thresholds 0, 0.01 ... 1),
  ``facts`` and ``urls`` of ``image``, ``heatmap``, ``overlay``, ``mask``, ``restored``,
  ``report``, ``json``. With ``wait=false``: 202 and ``{"id", "status_url"}`` at once.
  413: over the upload or pixel limit, or a likely decompression bomb (a large image in a tiny
  file, :func:`reloc.limits.expansion_problem`); 415: not an image; 422: an empty, truncated
  or undecodable image or a bad field; 503 with ``Retry-After``: the queue is full; 507 with
  ``Retry-After``: the work folder is at its disk cap.
- ``GET /api/jobs/{id}``: ``state`` (queued, running, done, failed), ``done`` / ``total``
  sliding windows, ``position`` in the queue, ``result`` once done, ``error`` if failed.
- ``GET /api/jobs/{id}/{image,heatmap,restored}.png``, ``overlay.png?opacity=0.6``,
  ``mask.png?threshold=0.5``, ``report.html?threshold=`` (the case report, a download),
  ``localize.json?threshold=`` (the JSON of ``reloc localize``).

The page (``/``, assets under ``/static``) holds no data and loads without the token; it
asks for the token when the API answers 401. The API schema is ``GET /api/openapi.json``,
behind the token like the rest of ``/api``.
"""

from __future__ import annotations

import hmac
import shutil
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, BinaryIO

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from reloc import __version__
from reloc.limits import MAX_EXPANSION, expansion_problem, fitting_pixels
from reloc.serve.facts import UnreadableFile, file_facts
from reloc.serve.jobs import UPLOAD_NAME, DiskFull, Job, JobQueue, QueueFull, new_job_id
from reloc.serve.models import ModelError, ModelSet
from reloc.serve.report import png_bytes, render_report
from reloc.visualize import overlay

STATIC = Path(__file__).resolve().parent / "static"
BYTES_PER_PIXEL = 48
"""Resident memory per pixel of one job, an estimate from its arrays: the uint8 image (3),
the window sums with the restored image (16, 12 more with a restore window), the float32
probabilities (4), the uint8 restored image, heat map, overlay (9) and the mask."""
DEFAULT_MAX_PIXELS = fitting_pixels(50_000_000, BYTES_PER_PIXEL, share=0.25)
"""50 megapixels, or fewer where a quarter of the machine's memory would not hold one job."""
COPY_CHUNK = 1 << 20
MULTIPART_OVERHEAD = 64 * 1024
"""Bytes a request may carry beyond ``max_upload_bytes`` for the multipart framing and fields."""
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; object-src 'none'; frame-ancestors 'none'",
}


@dataclass(frozen=True)
class ServeSettings:
    """What ``reloc serve``'s options set.

    Attributes:
        work: the server's own folder; every job's files go under ``work/jobs/<id>/``.
        token: required as ``Authorization: Bearer`` on every ``/api`` request, or ``None``.
        max_upload_bytes: largest accepted upload.
        max_pixels: largest accepted image (width x height, read from the header first).
        max_expansion: decoded RGB bytes per upload byte above which a large image is refused
            as a decompression bomb (:func:`reloc.limits.expansion_problem`).
        capacity: jobs that may wait for the worker; history: finished jobs kept.
        max_disk_bytes: disk the jobs together may hold (uploads, reservations, results).
        max_age: seconds a finished job's results are kept.
        window, stride: the sliding windows; ``None``: each model's own
            (:meth:`reloc.engine.inference.Pipeline.windows`).
        evidence: classical evidence methods (:data:`reloc.evidence.METHODS`) run on every
            image beside the network, shown as layers and in the case report.
        fusion: one of :data:`reloc.evidence.FUSIONS`: what the main map is
            (:func:`reloc.engine.localize.main_map`; ``reloc serve``'s default is ``clones+dq``).
    """

    work: Path
    token: str | None = None
    max_upload_bytes: int = 50 * 1024 * 1024
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_expansion: float = MAX_EXPANSION
    capacity: int = 16
    history: int = 200
    max_disk_bytes: int = 4 * 2**30
    max_age: float = 24 * 3600.0
    window: int | None = None
    stride: int | None = None
    evidence: tuple[str, ...] = ()
    fusion: str = "none"


class ApiError(HTTPException):
    """An error answered as ``{"error": detail}``."""


def _queue_full(exc: QueueFull | DiskFull) -> ApiError:
    """503 (full queue) or 507 (full work folder) with ``Retry-After``."""
    return ApiError(507 if isinstance(exc, DiskFull) else 503, str(exc), headers={"Retry-After": str(exc.retry_after)})


def create_app(models: ModelSet, settings: ServeSettings) -> FastAPI:
    """The FastAPI application serving ``models``; its worker runs while the app does."""
    jobs = JobQueue(settings.capacity, settings.history, settings.max_disk_bytes, settings.max_age)
    (settings.work / "jobs").mkdir(parents=True, exist_ok=True)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        jobs.start()
        try:
            yield
        finally:
            jobs.stop()

    app = FastAPI(
        title="reloc serve",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",  # behind the token, as every /api path
    )
    app.state.jobs, app.state.models, app.state.settings = jobs, models, settings
    _add_guards(app, settings)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse({"error": f"bad request: {problems}"}, 422)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/health")
    def health() -> dict:
        return {
            "status": "ok",
            "version": __version__,
            "queue": {"waiting": jobs.waiting(), "capacity": jobs.capacity},
        }

    @app.get("/api/models")
    def list_models() -> dict:
        described = [{"name": name, **models.models[name].describe()} for name in models.models]
        if models.auto:
            described.insert(0, {"name": "auto", "source": "the --model auto rule (reloc.pretrained.choose)"})
        return {
            "default": models.default,
            "models": described,
            "limits": {"max_upload_bytes": settings.max_upload_bytes, "max_pixels": settings.max_pixels},
            "window": settings.window,
            "stride": settings.stride,
        }

    @app.post("/api/localize")
    async def localize(
        file: Annotated[UploadFile, File(description="The image file.")],
        model: Annotated[str | None, Form()] = None,
        threshold: Annotated[float, Form(ge=0.0, le=1.0)] = 0.5,
        wait: Annotated[bool, Form()] = True,
    ) -> JSONResponse:
        if jobs.waiting() >= jobs.capacity:  # refuse before decoding; submit() is the exact check
            raise _queue_full(QueueFull(jobs.waiting(), jobs.retry_after()))
        folder = settings.work / "jobs" / new_job_id()
        folder.mkdir()
        try:
            await run_in_threadpool(_save_upload, file.file, folder / UPLOAD_NAME, settings.max_upload_bytes)
            job = await run_in_threadpool(
                _prepare, folder, file.filename or "upload", model, threshold, models, settings
            )
            jobs.submit(job)
        except BaseException as exc:
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(exc, (QueueFull, DiskFull)):
                raise _queue_full(exc) from exc
            raise
        if not wait:
            return JSONResponse({"id": job.id, "status_url": f"/api/jobs/{job.id}"}, 202)
        await run_in_threadpool(job.finished.wait)
        if job.state == "failed":
            raise ApiError(job.error_status, job.error)
        return JSONResponse(job.result)

    def done_job(job_id: str) -> Job:
        job = jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r} (unknown, or forgotten after {settings.history} newer ones)")
        if job.state != "done":
            raise ApiError(409, f"job {job_id} is {job.state}, not done")
        return job

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str) -> dict:
        job = jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r} (unknown, or forgotten after {settings.history} newer ones)")
        return job.status(jobs.position(job))

    @app.get("/api/jobs/{job_id}/mask.png")
    def mask_png(job_id: str, threshold: Annotated[float, Query(ge=0.0, le=1.0)] = 0.5) -> Response:
        return Response(png_bytes(done_job(job_id).probabilities() > threshold), media_type="image/png")

    @app.get("/api/jobs/{job_id}/overlay.png")
    def overlay_png(job_id: str, opacity: Annotated[float, Query(ge=0.0, le=1.0)] = 0.6) -> Response:
        job = done_job(job_id)
        with Image.open(job.folder / "image.png") as image:
            pixels = np.asarray(image.convert("RGB"))
        return Response(png_bytes(overlay(pixels, job.probabilities(), opacity)), media_type="image/png")

    @app.get("/api/jobs/{job_id}/evidence/{method}.png")
    def evidence_png(job_id: str, method: str) -> FileResponse:
        job = done_job(job_id)
        name = (job.layers.get(method) or {}).get("map")
        if name is None:
            raise ApiError(404, f"job {job_id} has no {method} evidence map")
        return FileResponse(job.folder / name, media_type="image/png")

    @app.get("/api/jobs/{job_id}/{view}.png")
    def view_png(job_id: str, view: str) -> FileResponse:
        job = done_job(job_id)
        if view not in ("image", "heatmap", "restored", "learned") or not (job.folder / f"{view}.png").is_file():
            raise ApiError(404, f"job {job_id} has no {view}.png")
        return FileResponse(job.folder / f"{view}.png", media_type="image/png")

    @app.get("/api/jobs/{job_id}/report.html")
    def report(job_id: str, threshold: Annotated[float | None, Query(ge=0.0, le=1.0)] = None) -> Response:
        job = done_job(job_id)
        html = render_report(job, job.threshold if threshold is None else threshold)
        return Response(html, media_type="text/html", headers=_attachment(job, "report.html"))

    @app.get("/api/jobs/{job_id}/localize.json")
    def localize_json(job_id: str, threshold: Annotated[float | None, Query(ge=0.0, le=1.0)] = None) -> JSONResponse:
        job = done_job(job_id)
        record = job.record(job.threshold if threshold is None else threshold)
        return JSONResponse(record, headers=_attachment(job, "localize.json"))

    return app


def _save_upload(source: BinaryIO, path: Path, limit: int) -> None:
    """Copy the (spooled) upload to ``path`` in chunks, never more than ``limit`` bytes.

    Raises:
        ApiError: 413, the upload is over ``limit``.
    """
    copied = 0
    with open(path, "xb") as target:
        while chunk := source.read(COPY_CHUNK):
            copied += len(chunk)
            if copied > limit:
                raise ApiError(413, f"the upload is over the limit of {limit / 2**20:g} MB (--max-upload-mb)")
            target.write(chunk)


def _prepare(
    folder: Path, filename: str, model: str | None, threshold: float, models: ModelSet, settings: ServeSettings
) -> Job:
    """Check one saved upload's header and make its :class:`Job` (decoded later, by the worker).

    Raises:
        ApiError: 413 over a limit (or a likely decompression bomb), 415 not an image,
            422 empty / corrupt header or an unknown model.
    """
    name = filename.replace("\\", "/").rsplit("/", 1)[-1][:200] or "upload"  # shown only, never a path
    upload = folder / UPLOAD_NAME
    try:
        facts = file_facts(upload)
    except UnreadableFile as exc:
        raise ApiError(422 if upload.stat().st_size == 0 else 415, f"{name}: {exc}") from exc
    except Image.DecompressionBombError as exc:
        raise ApiError(413, f"{name}: {exc}") from exc
    pixels = facts["width"] * facts["height"]
    if pixels > settings.max_pixels:
        raise ApiError(
            413,
            f"{name}: {facts['width']}x{facts['height']} = {pixels:,} pixels is over the limit of "
            f"{settings.max_pixels:,} (--max-megapixels)",
        )
    problem = expansion_problem(facts["width"], facts["height"], facts["bytes"], settings.max_expansion)
    if problem:
        raise ApiError(413, f"{name}: {problem}")
    try:
        served, reason = models.resolve(model, facts["jpeg_quality"])
    except ModelError as exc:
        raise ApiError(422, str(exc)) from exc
    return Job(
        folder.name, folder, name, facts, served, reason, model or models.default,
        max_pixels=settings.max_pixels, threshold=threshold, window=settings.window, stride=settings.stride,
        evidence=settings.evidence, fusion=settings.fusion,
    )  # fmt: skip


def _attachment(job: Job, suffix: str) -> dict[str, str]:
    """A ``Content-Disposition`` naming the download after the upload's SHA-256 (no upload text in headers)."""
    return {"Content-Disposition": f'attachment; filename="reloc-{job.facts["sha256"][:12]}-{suffix}"'}


def _add_guards(app: FastAPI, settings: ServeSettings) -> None:
    """Token check on ``/api``, early 411/413 on the declared body size, security headers."""
    expected = f"Bearer {settings.token}".encode() if settings.token else None
    body_limit = settings.max_upload_bytes + MULTIPART_OVERHEAD

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if request.url.path.startswith("/api"):
            if expected is not None:
                given = request.headers.get("authorization", "").encode()
                if not hmac.compare_digest(given, expected):
                    return _error(
                        401, "a valid token is needed: send 'Authorization: Bearer TOKEN' (reloc serve --token)"
                    )
            if request.method == "POST":
                length = request.headers.get("content-length")
                if length is None or not length.isdigit():
                    return _error(411, "the request must declare its Content-Length")
                if int(length) > body_limit:
                    limit = settings.max_upload_bytes / 2**20
                    return _error(413, f"the upload is over the limit of {limit:g} MB (--max-upload-mb)")
        response = await call_next(request)
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers=_SECURITY_HEADERS)
