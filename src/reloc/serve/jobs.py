"""Inference jobs and the bounded queue of their one worker thread.

A request saves its upload in the job's folder, reads its header and hands a :class:`Job`
to :class:`JobQueue`, which decodes and localizes one job at a time in a single worker
thread, so memory holds at most one decoded image whatever the queue holds, and the web
server itself stays responsive. At most ``capacity`` jobs wait; one more raises
:class:`QueueFull` (the API answers 503 with ``Retry-After``). Each job owns a folder named
by its random id, where its outputs go; an upload's own name is kept only as text.

Disk: results are kept as PNG images, the probability map as a 16-bit gray PNG
(:func:`reloc.data.io.write_probability_png`, 2 bytes per pixel at most, exact to 1/65535). A queued job
reserves :data:`RESERVED_BYTES_PER_PIXEL` bytes per pixel beyond its upload; when the work
folder would outgrow ``max_bytes`` the oldest finished jobs are removed, and if that is not
enough :class:`DiskFull` refuses the upload (507). Finished jobs beyond ``history`` or older
than ``max_age`` seconds are forgotten, oldest first, and their folders removed.
"""

from __future__ import annotations

import math
import queue
import shutil
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reloc.data.io import ImageError, read_image, read_probability_png, write_png, write_probability_png
from reloc.engine.detection import evidence_text, image_score
from reloc.engine.localize import chw_to_uint8, evidence_to_run, image_report, inference_facts, main_map
from reloc.evidence import analyse, save_maps
from reloc.serve.models import ServedModel
from reloc.visualize import BAND_ROWS, heatmap, overlay

THRESHOLD_STEPS = 101
"""The tampered fraction is tabulated at thresholds 0, 0.01, ..., 1 for the page's live slider."""

UPLOAD_NAME = "upload"
"""The upload's bytes, as received, in its job's folder."""

PROBABILITIES_NAME = "probabilities.png"
"""The probability map, kept as a 16-bit gray PNG (:func:`reloc.data.io.write_probability_png`)."""

RESERVED_BYTES_PER_PIXEL = 15
"""Disk a queued job reserves per pixel for its outputs: PNGs of the image, heat map, overlay
and restored image (3 bytes per pixel at worst each), the probabilities (2) and the mask."""


def fractions_above(probabilities: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The share of pixels strictly above each of the sorted ``thresholds`` ``(T,)`` (a band at a time)."""
    counts = np.zeros(len(thresholds) + 1, dtype=np.int64)
    for top in range(0, probabilities.shape[0], BAND_ROWS):
        places = np.searchsorted(thresholds, probabilities[top : top + BAND_ROWS].ravel(), side="left")
        counts += np.bincount(places, minlength=len(thresholds) + 1)
    above = counts[::-1].cumsum()[::-1][1:]  # places > t: the pixel exceeds threshold t
    return above / max(1, probabilities.size)


def folder_bytes(folder: Path) -> int:
    """Bytes of the files directly in ``folder`` (0 once it is gone)."""
    try:
        return sum(entry.stat().st_size for entry in folder.iterdir() if entry.is_file())
    except OSError:
        return 0


class DiskFull(RuntimeError):
    """The work folder would outgrow its cap even with every finished job removed."""

    def __init__(self, needed: int, limit: int, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"the server's work folder is full: this image needs {needed / 2**20:,.0f} MB of its "
            f"{limit / 2**30:g} GB (--max-disk-gb) held by images still waiting; retry in {retry_after} s"
        )


class JobCancelled(RuntimeError):
    """The server is stopping: the running job ends at its next batch of windows."""


class QueueFull(RuntimeError):
    """The queue holds ``capacity`` waiting jobs; :attr:`retry_after` seconds is a fair wait."""

    def __init__(self, waiting: int, retry_after: int) -> None:
        self.waiting, self.retry_after = waiting, retry_after
        super().__init__(f"the inference queue is full ({waiting} images waiting); retry in {retry_after} s")


def new_job_id() -> str:
    """A random job id (32 hex digits), the only name a job's folder ever gets."""
    return uuid.uuid4().hex


@dataclass
class Job:
    """One image to localize.

    Attributes:
        id: random hex id (:func:`new_job_id`).
        folder: the job's own folder: the upload (:data:`UPLOAD_NAME`), then the outputs
            ``image.png``, ``heatmap.png``, ``overlay.png``, ``mask.png``, ``restored.png`` and
            :data:`PROBABILITIES_NAME`.
        filename: the upload's name, as text only (shown, never used as a path).
        facts: :func:`reloc.serve.facts.file_facts` of the upload.
        model: the pipeline to run; ``model_reason`` says why it was chosen.
        max_pixels: the pixel cap the upload is decoded under (its header was checked already).
        threshold: the threshold of the first result (the page can change it later).
        window, stride: the sliding windows asked for (``None``: as the model's weights record,
            :meth:`reloc.engine.inference.Pipeline.plan`); once run, the ones used.
        inference: how the image ran once run (:func:`reloc.engine.localize.inference_facts`).
        evidence: classical evidence methods to run beside the network (:mod:`reloc.evidence`);
            ``layers`` their records once run (heat-map PNGs ``layer_evidence-<method>.png``).
        fusion: what the main map is (:func:`reloc.engine.localize.main_map`); with a
            fusion the learned map's heat map alone is ``learned.png``. ``map`` says what
            the main map shows once run, ``learned_score`` the learned map's image score
            (the one the detection bands were calibrated on).
        state: ``queued``, ``running``, ``done`` or ``failed``.
        done, total: sliding windows done so far, out of ``total`` (0 until it runs).
        result: the result JSON once ``done``; ``error`` the reason once ``failed``, and
            ``error_status`` the HTTP status it is answered with (422: the upload does not decode).
        bytes: disk the job holds: its upload plus the reservation for its outputs until it
            is finished, then its folder's size.
        finished_at: ``time.monotonic()`` when it finished.
    """

    id: str
    folder: Path
    filename: str
    facts: dict[str, Any]
    model: ServedModel
    model_reason: str
    requested_model: str
    max_pixels: int | None = None
    threshold: float = 0.5
    window: int | None = None
    stride: int | None = None
    inference: dict[str, Any] | None = None
    evidence: tuple[str, ...] = ()
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    fusion: str = "none"
    map: dict[str, Any] = field(default_factory=dict)
    learned_score: float | None = None
    state: str = "queued"
    done: int = 0
    total: int = 0
    seconds: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    error_status: int = 500
    bytes: int = 0
    finished_at: float | None = None
    finished: threading.Event = field(default_factory=threading.Event, repr=False)
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        if not self.bytes:
            pixels = int(self.facts.get("width", 0)) * int(self.facts.get("height", 0))
            self.bytes = int(self.facts.get("bytes", 0)) + RESERVED_BYTES_PER_PIXEL * pixels

    def run(self) -> None:
        """Decode the upload, localize it and write the outputs into :attr:`folder`.

        Memory: the image is decoded here, in the worker, one job at a time, as uint8
        (8-bit files); the probabilities are one float32 ``(H, W)`` map; renderings go in bands.
        """
        started = time.perf_counter()
        self.state = "running"
        try:
            image = read_image(self.folder / UPLOAD_NAME, max_pixels=self.max_pixels, compact=True)
        except ImageError as error:
            self.error_status = 422
            raise ValueError(f"{self.filename}: {error.reason}") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a read-only decoded buffer; it is never written
            tensor = torch.from_numpy(image).permute(2, 0, 1)  # (3, H, W) view, no copy
        pipeline = self.model.pipeline
        with_restored = self.model.has_restorer
        self.window, self.stride, whole = pipeline.plan(*image.shape[:2], self.window, self.stride)
        self.inference = inference_facts(pipeline, whole, self.window, self.stride)
        prediction = pipeline.predict(
            tensor, self.window, self.stride, return_restored=with_restored, progress=self._progress
        )
        learned = (prediction[0] if with_restored else prediction).numpy()
        if with_restored:
            write_png(self.folder / "restored.png", chw_to_uint8(prediction[1]))
        del prediction, tensor
        methods = evidence_to_run(self.evidence, self.fusion)
        results = analyse(image, self.folder / UPLOAD_NAME, methods) if methods else []
        probabilities, self.map = main_map(learned, results, self.fusion)
        self.learned_score = image_score(learned)
        if probabilities is not learned:
            write_png(self.folder / "learned.png", heatmap(learned))
        del learned
        write_probability_png(self.folder / PROBABILITIES_NAME, probabilities)
        write_png(self.folder / "image.png", image)
        write_png(self.folder / "heatmap.png", heatmap(probabilities))
        write_png(self.folder / "overlay.png", overlay(image, probabilities))
        write_png(self.folder / "mask.png", probabilities > self.threshold)
        if self.evidence:
            asked = [result for result in results if result.method in self.evidence]
            self.layers = save_maps(asked, self.folder, "layer", render=heatmap)
        del image
        (self.folder / UPLOAD_NAME).unlink(missing_ok=True)  # image.png holds what was analysed
        self.seconds = round(time.perf_counter() - started, 3)
        self.result = self._result(probabilities)

    def _progress(self, done: int, total: int) -> None:
        if self.cancelled.is_set():
            raise JobCancelled("the server stopped while this image ran")
        self.done, self.total = done, total

    def probabilities(self) -> np.ndarray:
        """The probability map ``(H, W)`` float32 of a done job (to 1/65535)."""
        return read_probability_png(self.folder / PROBABILITIES_NAME)

    def record(self, threshold: float, probabilities: np.ndarray | None = None) -> dict[str, Any]:
        """The JSON of ``reloc localize`` for this image at ``threshold``, plus the file and model facts."""
        if probabilities is None:
            probabilities = self.probabilities()
        numbers = image_report(probabilities, threshold, self.model.pipeline.weights_files, score=self.learned_score)
        numbers.update(
            file=self.filename,
            window=self.window,
            stride=self.stride,
            inference=self.inference,
            seconds=self.seconds,
            sha256=self.facts["sha256"],
            model=self.model.name,
            model_reason=self.model_reason,
            jpeg_quality=self.facts["jpeg_quality"],
            map=self.map,
        )
        if self.layers:
            numbers["evidence"] = self.layers
        return numbers

    def _result(self, probabilities: np.ndarray) -> dict[str, Any]:
        record = self.record(self.threshold, probabilities)
        height, width = probabilities.shape
        above = fractions_above(probabilities, np.linspace(0.0, 1.0, THRESHOLD_STEPS))
        base = f"/api/jobs/{self.id}"
        urls = {name: f"{base}/{name}.png" for name in ("image", "heatmap", "overlay", "mask")}
        if self.model.has_restorer:
            urls["restored"] = f"{base}/restored.png"
        if (self.folder / "learned.png").is_file():
            urls["learned"] = f"{base}/learned.png"
        urls.update(report=f"{base}/report.html", json=f"{base}/localize.json")
        return {
            "id": self.id,
            "file": self.filename,
            "sha256": self.facts["sha256"],
            "model": self.model.name,
            "model_reason": self.model_reason,
            "requested_model": self.requested_model,
            "jpeg_quality": self.facts["jpeg_quality"],
            "width": width,
            "height": height,
            "threshold": self.threshold,
            "map": self.map,
            "tampered_fraction": record["tampered_fraction"],
            "score": record["image_score"],
            "detection": record["detection"] | {"text": evidence_text(record["detection"])},
            "max_probability": record["max_probability"],
            "mean_probability": record["mean_probability"],
            "fractions": [round(float(share), 6) for share in above],
            "windows": self.total,
            "window": self.window,
            "inference": self.inference,
            "seconds": self.seconds,
            "facts": self.facts,
            "urls": urls,
            "evidence": [
                {"method": method, "note": layer["note"], "reliability": layer["reliability"],
                 "url": f"{base}/evidence/{method}.png" if layer["map"] else None}
                for method, layer in self.layers.items()
            ],
        }  # fmt: skip

    def status(self, position: int | None = None) -> dict[str, Any]:
        """The JSON of ``GET /api/jobs/{id}``: state, progress and, once done, the result."""
        status = {"id": self.id, "file": self.filename, "state": self.state, "done": self.done, "total": self.total}
        if position is not None:
            status["position"] = position
        if self.state == "done":
            status["result"] = self.result
        if self.state == "failed":
            status["error"] = self.error
        return status


class JobQueue:
    """One worker thread running :meth:`Job.run`, at most ``capacity`` jobs waiting.

    Args:
        capacity: waiting jobs (the running one not counted) before :class:`QueueFull`.
        history: finished jobs kept for their outputs; older ones are removed with their folders.
        max_bytes: disk all jobs together may hold (:attr:`Job.bytes`); ``None``: no cap.
        max_age: seconds a finished job is kept; ``None``: until ``history`` or ``max_bytes`` drops it.
    """

    def __init__(
        self, capacity: int = 16, history: int = 200, max_bytes: int | None = None, max_age: float | None = None
    ) -> None:
        if capacity < 1 or history < 1:
            raise ValueError(f"capacity and history must be >= 1, got {capacity}, {history}")
        self.capacity, self.history, self.max_bytes, self.max_age = capacity, history, max_bytes, max_age
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=capacity)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._waiting: list[str] = []
        self._lock = threading.Lock()
        self._durations: list[float] = []
        self._thread: threading.Thread | None = None
        self._running: Job | None = None

    def start(self) -> None:
        """Start the worker thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="reloc-inference", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Fail the waiting jobs, stop the running one at its next batch of windows, then end the worker."""
        with self._lock:
            if self._running is not None:
                self._running.cancelled.set()
            for job_id in self._waiting:
                self._fail(self._jobs[job_id], "the server stopped before this image ran")
                self._jobs[job_id].finished.set()
            self._waiting.clear()
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def submit(self, job: Job) -> None:
        """Queue ``job``, removing the oldest finished jobs if its :attr:`Job.bytes` need the room.

        Raises:
            QueueFull: ``capacity`` jobs are waiting already.
            DiskFull: the job does not fit under ``max_bytes`` even without any finished job.
        """
        with self._lock:
            if self._queue.full():
                raise QueueFull(len(self._waiting), self.retry_after())
            self._forget(room=job.bytes)
            if self.max_bytes is not None and self.used_bytes() + job.bytes > self.max_bytes:
                raise DiskFull(job.bytes, self.max_bytes, self.retry_after())
            self._queue.put_nowait(job)
            self._jobs[job.id] = job
            self._waiting.append(job.id)

    def get(self, job_id: str) -> Job | None:
        """The job of that id, or ``None`` (unknown or forgotten)."""
        with self._lock:
            self._forget()
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int | None:
        """How many jobs wait before ``job`` (``None`` once it runs)."""
        with self._lock:
            return self._waiting.index(job.id) if job.id in self._waiting else None

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def used_bytes(self) -> int:
        """Disk held by the known jobs (reservations of the unfinished ones)."""
        return sum(job.bytes for job in self._jobs.values())

    def retry_after(self) -> int:
        """Seconds after which a refused upload may find room: the mean job time times the queue."""
        mean = sum(self._durations) / len(self._durations) if self._durations else 1.0
        return max(1, math.ceil(mean * max(1, len(self._waiting))))

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                if job.id not in self._waiting:  # failed by stop()
                    continue
                self._waiting.remove(job.id)
                self._running = job
            started = time.perf_counter()
            try:
                job.run()
            except Exception as exc:  # noqa: BLE001 - one bad image must not stop the worker
                known = job.error_status == 422 or isinstance(exc, JobCancelled)
                self._fail(job, str(exc) if known else f"inference failed: {type(exc).__name__}: {exc}")
            else:
                job.state = "done"
            finally:
                self._running = None
            self._durations = (self._durations + [time.perf_counter() - started])[-20:]
            job.bytes, job.finished_at = folder_bytes(job.folder), time.monotonic()
            with self._lock:
                self._forget()
            job.finished.set()

    @staticmethod
    def _fail(job: Job, reason: str) -> None:
        job.state, job.error, job.finished_at = "failed", reason, time.monotonic()
        (job.folder / UPLOAD_NAME).unlink(missing_ok=True)

    def _forget(self, room: int = 0) -> None:
        """Drop finished jobs, oldest first: beyond ``history``, older than ``max_age``, and while
        the disk they hold leaves less than ``room`` bytes under ``max_bytes`` (call under the lock)."""
        finished = [job for job in self._jobs.values() if job.state in ("done", "failed") and job.finished_at]
        now = time.monotonic()
        extra = len(finished) - self.history
        used = self.used_bytes()
        for job in finished:
            expired = self.max_age is not None and now - job.finished_at > self.max_age
            crowded = self.max_bytes is not None and used + room > self.max_bytes
            if not (extra > 0 or expired or crowded):
                continue
            extra -= 1
            used -= job.bytes
            del self._jobs[job.id]
            shutil.rmtree(job.folder, ignore_errors=True)
