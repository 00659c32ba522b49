"""Inference jobs and the bounded queue of their one worker thread.

A request decodes its upload and hands a :class:`Job` to :class:`JobQueue`, which runs one
job at a time in a single worker thread (one inference at a time uses the device fully and
keeps memory bounded), so the web server itself stays responsive. At most ``capacity``
jobs wait; one more raises :class:`QueueFull` (the API answers 503 with ``Retry-After``).
Each job owns a folder named by its random id, where its outputs go; an upload's own name
is kept only as text. Finished jobs beyond ``history`` are forgotten, oldest first, and
their folders removed.
"""

from __future__ import annotations

import math
import queue
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reloc.data.io import to_numpy, to_tensor, write_png
from reloc.engine.localize import image_report
from reloc.serve.models import ServedModel
from reloc.visualize import heatmap, overlay

THRESHOLD_STEPS = 101
"""The tampered fraction is tabulated at thresholds 0, 0.01, ..., 1 for the page's live slider."""


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
        folder: the job's own folder (outputs: ``image.png``, ``heatmap.png``, ``overlay.png``,
            ``mask.png``, ``restored.png``, ``probabilities.npy``).
        filename: the upload's name, as text only (shown, never used as a path).
        facts: :func:`reloc.serve.facts.file_facts` of the upload.
        model: the pipeline to run; ``model_reason`` says why it was chosen.
        image: the decoded upright image ``(H, W, 3)`` in [0, 1]; dropped once run.
        threshold: the threshold of the first result (the page can change it later).
        window, stride: the sliding windows of :meth:`reloc.engine.inference.Pipeline.predict`.
        state: ``queued``, ``running``, ``done`` or ``failed``.
        done, total: sliding windows done so far, out of ``total`` (0 until it runs).
        result: the result JSON once ``done``; ``error`` the reason once ``failed``.
    """

    id: str
    folder: Path
    filename: str
    facts: dict[str, Any]
    model: ServedModel
    model_reason: str
    requested_model: str
    image: np.ndarray | None = field(repr=False)
    threshold: float = 0.5
    window: int = 512
    stride: int = 512
    state: str = "queued"
    done: int = 0
    total: int = 0
    seconds: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def run(self) -> None:
        """Localize :attr:`image` and write the outputs into :attr:`folder`."""
        started = time.perf_counter()
        self.state = "running"
        pipeline = self.model.pipeline
        with_restored = self.model.has_restorer
        prediction = pipeline.predict(
            to_tensor(self.image), self.window, self.stride, return_restored=with_restored, progress=self._progress
        )
        probabilities = (prediction[0] if with_restored else prediction).numpy()
        np.save(self.folder / "probabilities.npy", probabilities)
        write_png(self.folder / "image.png", self.image)
        write_png(self.folder / "heatmap.png", heatmap(probabilities))
        write_png(self.folder / "overlay.png", overlay(self.image, probabilities))
        write_png(self.folder / "mask.png", probabilities > self.threshold)
        if with_restored:
            write_png(self.folder / "restored.png", to_numpy(prediction[1]))
        self.image = None
        self.seconds = round(time.perf_counter() - started, 3)
        self.result = self._result(probabilities)

    def _progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def probabilities(self) -> np.ndarray:
        """The probability map ``(H, W)`` float32 of a done job."""
        return np.load(self.folder / "probabilities.npy")

    def record(self, threshold: float, probabilities: np.ndarray | None = None) -> dict[str, Any]:
        """The JSON of ``reloc localize`` for this image at ``threshold``, plus the file and model facts."""
        if probabilities is None:
            probabilities = self.probabilities()
        numbers = image_report(probabilities, threshold)
        numbers.update(
            file=self.filename,
            window=self.window,
            stride=self.stride,
            seconds=self.seconds,
            sha256=self.facts["sha256"],
            model=self.model.name,
            model_reason=self.model_reason,
            jpeg_quality=self.facts["jpeg_quality"],
        )
        return numbers

    def _result(self, probabilities: np.ndarray) -> dict[str, Any]:
        record = self.record(self.threshold, probabilities)
        height, width = probabilities.shape
        steps = np.linspace(0.0, 1.0, THRESHOLD_STEPS)
        above = probabilities.size - np.searchsorted(np.sort(probabilities, axis=None), steps, side="right")
        base = f"/api/jobs/{self.id}"
        urls = {name: f"{base}/{name}.png" for name in ("image", "heatmap", "overlay", "mask")}
        if self.model.has_restorer:
            urls["restored"] = f"{base}/restored.png"
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
            "tampered_fraction": record["tampered_fraction"],
            "score": record["image_score"],
            "max_probability": record["max_probability"],
            "mean_probability": record["mean_probability"],
            "fractions": [round(float(count) / probabilities.size, 6) for count in above],
            "windows": self.total,
            "seconds": self.seconds,
            "facts": self.facts,
            "urls": urls,
        }

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
    """

    def __init__(self, capacity: int = 16, history: int = 200) -> None:
        if capacity < 1 or history < 1:
            raise ValueError(f"capacity and history must be >= 1, got {capacity}, {history}")
        self.capacity, self.history = capacity, history
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=capacity)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._waiting: list[str] = []
        self._lock = threading.Lock()
        self._durations: list[float] = []
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="reloc-inference", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Fail the waiting jobs, let the worker finish its current one, then end it."""
        with self._lock:
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
        """Queue ``job``.

        Raises:
            QueueFull: ``capacity`` jobs are waiting already.
        """
        with self._lock:
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise QueueFull(len(self._waiting), self.retry_after()) from None
            self._jobs[job.id] = job
            self._waiting.append(job.id)

    def get(self, job_id: str) -> Job | None:
        """The job of that id, or ``None`` (unknown or forgotten)."""
        with self._lock:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int | None:
        """How many jobs wait before ``job`` (``None`` once it runs)."""
        with self._lock:
            return self._waiting.index(job.id) if job.id in self._waiting else None

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

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
            started = time.perf_counter()
            try:
                job.run()
            except Exception as exc:  # noqa: BLE001 - one bad image must not stop the worker
                self._fail(job, f"inference failed: {type(exc).__name__}: {exc}")
            else:
                job.state = "done"
            self._durations = (self._durations + [time.perf_counter() - started])[-20:]
            self._forget_old()
            job.finished.set()

    @staticmethod
    def _fail(job: Job, reason: str) -> None:
        job.state, job.error, job.image = "failed", reason, None

    def _forget_old(self) -> None:
        with self._lock:
            finished = [job for job in self._jobs.values() if job.state in ("done", "failed")]
            for job in finished[: max(0, len(finished) - self.history)]:
                del self._jobs[job.id]
                shutil.rmtree(job.folder, ignore_errors=True)
