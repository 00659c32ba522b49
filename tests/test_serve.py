"""``reloc serve``: the HTTP API (FastAPI's test client), models, jobs, limits and security.

Every model here is a tiny random-weight network: the tests check the plumbing (which
pixels, which file, which model), not what a trained network would find.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import build_cached

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")
from fastapi.testclient import TestClient

from reloc import __version__, pretrained
from reloc.cli import app as cli
from reloc.models.weights import save_network
from reloc.serve import bind_warning
from reloc.serve import jobs as jobs_module
from reloc.serve.app import ServeSettings, create_app
from reloc.serve.facts import UnreadableFile, file_facts
from reloc.serve.models import ModelError, load_models

RESULT_KEYS = {"sha256", "model", "jpeg_quality", "tampered_fraction", "score", "width", "height", "urls", "facts"}


def image_bytes(size: tuple[int, int] = (80, 96), seed: int = 0, fmt: str = "PNG", **options) -> bytes:
    """An ``(H, W)`` random RGB image encoded as ``fmt``."""
    pixels = (np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("weights")
    files = {"localizer": folder / "dfcn.safetensors", "restorer": folder / "scunet.safetensors"}
    save_network(build_cached("localizer", "dfcn", width=0.25, faithful=False), files["localizer"])
    save_network(build_cached("restorer", "scunet", preset="tiny"), files["restorer"])
    return files


@pytest.fixture(scope="module")
def models(weights):
    return load_models([], [], str(weights["localizer"]), str(weights["restorer"]))


def make_client(models, work: Path, **settings) -> TestClient:
    settings = {"window": 64, "stride": 64, **settings}
    return TestClient(create_app(models, ServeSettings(work=work, **settings)))


@pytest.fixture
def client(models, tmp_path):
    with make_client(models, tmp_path / "work") as test_client:
        yield test_client


def upload(client: TestClient, data: bytes, name: str = "photo.png", **fields):
    return client.post("/api/localize", files={"file": (name, data, "application/octet-stream")}, data=fields)


# --- good uploads -------------------------------------------------------------------------


def test_png_upload_answers_the_documented_fields_and_urls(client):
    data = image_bytes((80, 96))
    response = upload(client, data, threshold="0.5")
    assert response.status_code == 200, response.text
    result = response.json()
    assert RESULT_KEYS <= set(result)
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert (result["width"], result["height"]) == (96, 80)
    assert result["jpeg_quality"] is None and result["facts"]["format"] == "PNG"
    assert result["model"] == "dfcn+scunet" and result["windows"] == 4  # 80x96 in 64-px windows: 2 x 2
    assert result["fractions"][50] == pytest.approx(result["tampered_fraction"], abs=1e-6)
    # weights of one's own: the score, no band, and the sentence says why
    assert result["detection"]["score"] == result["score"] and result["detection"]["band"] is None
    assert result["detection"]["text"].startswith(f"image score {result['score']:.3f}; no band")
    assert result["fractions"] == sorted(result["fractions"], reverse=True)
    for name in ("image", "heatmap", "overlay", "mask", "restored"):
        png = client.get(result["urls"][name])
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(png.content)) as image:
            assert image.size == (96, 80), name
    everything = client.get(result["urls"]["mask"], params={"threshold": 0.0}).content
    nothing = client.get(result["urls"]["mask"], params={"threshold": 1.0}).content
    assert np.asarray(Image.open(io.BytesIO(everything))).min() == 255
    assert np.asarray(Image.open(io.BytesIO(nothing))).max() == 0


def test_jpeg_upload_reports_quality_and_standard_tables(client):
    data = image_bytes((70, 70), fmt="JPEG", quality=83)
    result = upload(client, data, name="scan.jpg").json()
    assert result["jpeg_quality"] == 83
    assert result["facts"]["jpeg_standard_tables"] is True and result["facts"]["jpeg_tables"] == 2


def test_localize_json_is_reloc_localize_record_at_any_threshold(client):
    result = upload(client, image_bytes()).json()
    low = client.get(result["urls"]["json"], params={"threshold": 0.0}).json()
    high = client.get(result["urls"]["json"], params={"threshold": 1.0}).json()
    assert {"file", "size", "tampered_fraction", "image_score", "threshold", "window", "stride", "sha256"} <= set(low)
    assert (low["tampered_fraction"], high["tampered_fraction"]) == (1.0, 0.0)
    assert low["sha256"] == result["sha256"] and low["size"] == [80, 96]


def test_report_is_self_contained_and_names_sha256_model_version_threshold(client):
    data = image_bytes()
    result = upload(client, data, name="<img src=x onerror=alert(1)>.png").json()
    response = client.get(result["urls"]["report"], params={"threshold": 0.25})
    assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
    page = response.text
    embedded = re.search(r'<script type="application/json" id="localize-json">(.*?)</script>', page, re.DOTALL)
    html_part = page.replace(embedded.group(0), "")  # JSON in a script element is not parsed as HTML
    assert hashlib.sha256(data).hexdigest() in page
    assert "dfcn+scunet" in page and f"reloc {__version__}" in page and "Threshold</th><td>0.25" in page
    assert "Image-level evidence</th><td>image score" in page and "no false-alarm rate has been measured" in page
    assert "<img src=x" not in html_part and "&lt;img src=x onerror=alert(1)&gt;.png" in html_part
    assert not re.search(r'src="(?!data:)', html_part), "every image is embedded"
    assert json.loads(embedded.group(1)) == client.get(result["urls"]["json"], params={"threshold": 0.25}).json() | {
        "seconds": json.loads(embedded.group(1))["seconds"]
    }


def test_asynchronous_upload_reports_progress_then_the_result(client):
    accepted = upload(client, image_bytes((130, 130)), wait="false")
    assert accepted.status_code == 202
    status_url = accepted.json()["status_url"]
    seen = []
    for _ in range(400):
        status = client.get(status_url).json()
        seen.append((status["state"], status["done"], status["total"]))
        if status["state"] == "done":
            break
        threading.Event().wait(0.02)
    assert status["state"] == "done" and status["done"] == status["total"] == 9  # 130 px: 3 x 3 windows
    assert status["result"]["windows"] == 9
    assert all(done <= total for _, done, total in seen)


def test_page_and_assets_are_served_by_reloc_itself(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert not re.search(r"(src|href)=\"https?://", page.text), "no CDN"
    for asset in ("/static/app.js", "/static/app.css"):
        assert client.get(asset).status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]


# --- bad uploads and limits ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"", 422, "empty file"),
        (b"Dear analyst, this is a letter, not an image.\n", 415, "not an image"),
        (image_bytes()[:300], 422, "a.png: "),
        (image_bytes(fmt="JPEG")[:3000], 422, "a.png: "),
    ],
    ids=["empty", "text", "truncated-png", "truncated-jpeg"],
)
def test_unreadable_uploads_get_a_json_error_and_the_server_goes_on(client, data, status, message):
    response = upload(client, data, name="a.png")
    assert response.status_code == status and message in response.json()["error"]
    assert upload(client, image_bytes()).status_code == 200


def test_uploads_over_the_size_limit_get_413(models, tmp_path):
    with make_client(models, tmp_path / "work", max_upload_bytes=2000) as small:
        response = upload(small, image_bytes((80, 96)))  # ~23 kB
        assert response.status_code == 413 and "--max-upload-mb" in response.json()["error"]
        big = b"x" * 200_000  # over the limit plus the multipart allowance: refused from Content-Length
        assert upload(small, big).status_code == 413
        assert small.get("/api/health").status_code == 200
        assert not any((tmp_path / "work" / "jobs").iterdir()), "nothing kept of refused uploads"


def test_images_over_the_pixel_limit_get_413(models, tmp_path):
    with make_client(models, tmp_path / "work", max_pixels=5000) as small:
        response = upload(small, image_bytes((80, 96)))
        assert response.status_code == 413 and "7,680 pixels" in response.json()["error"]
        assert upload(small, image_bytes((50, 60))).status_code == 200


def test_bad_fields_get_422_as_json(client):
    assert upload(client, image_bytes(), threshold="2").status_code == 422
    response = upload(client, image_bytes(), model="nonesuch")
    assert response.status_code == 422 and "not served here" in response.json()["error"]
    assert client.post("/api/localize", data={"threshold": "0.5"}).json()["error"].startswith("bad request")


def test_upload_names_never_become_paths(client, tmp_path):
    names = ["../../evil.png", "/etc/evil.png", "..\\..\\evil.png", "sub/dir/evil.png"]
    for name in names:
        result = upload(client, image_bytes(), name=name).json()
        assert result["file"] == "evil.png"
    created = [path.name for path in tmp_path.rglob("*")]
    assert not [name for name in created if "evil" in name]
    for job in (tmp_path / "work" / "jobs").iterdir():
        assert re.fullmatch(r"[0-9a-f]{32}", job.name)
        assert {p.name for p in job.iterdir()} <= {
            "probabilities.png", "image.png", "heatmap.png", "overlay.png", "mask.png", "restored.png"
        }, "results only, as PNG images: the upload is dropped once analysed"  # fmt: skip
    assert client.get("/api/jobs/..%2F..%2Fetc/report.html").status_code == 404


# --- token --------------------------------------------------------------------------------


def test_token_guards_every_api_request(models, tmp_path):
    with make_client(models, tmp_path / "work", token="s3cret") as guarded:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            for method, path in (("get", "/api/health"), ("get", "/api/models"), ("post", "/api/localize")):
                response = getattr(guarded, method)(path, headers=headers)
                assert response.status_code == 401 and "token" in response.json()["error"], (path, headers)
        good = {"Authorization": "Bearer s3cret"}
        result = guarded.post("/api/localize", files={"file": ("a.png", image_bytes())}, headers=good).json()
        assert guarded.get(result["urls"]["report"]).status_code == 401
        assert guarded.get(result["urls"]["report"], headers=good).status_code == 200
        assert guarded.get("/").status_code == 200  # the page holds no data; it asks for the token


# --- the queue ----------------------------------------------------------------------------


def test_full_queue_answers_503_with_retry_after_then_recovers(models, tmp_path, monkeypatch):
    release = threading.Event()
    original = jobs_module.Job.run

    def blocked_run(job):
        release.wait(30)
        original(job)

    monkeypatch.setattr(jobs_module.Job, "run", blocked_run)
    with make_client(models, tmp_path / "work", capacity=1) as small:
        running = upload(small, image_bytes(seed=1), wait="false").json()["status_url"]
        for _ in range(200):
            if small.get(running).json()["state"] == "running":
                break
            threading.Event().wait(0.01)
        waiting = upload(small, image_bytes(seed=2), wait="false")
        assert waiting.status_code == 202
        assert small.get(waiting.json()["status_url"]).json()["position"] == 0
        refused = upload(small, image_bytes(seed=3))
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        assert "queue is full" in refused.json()["error"]
        assert small.get("/api/health").json()["queue"] == {"waiting": 1, "capacity": 1}
        release.set()
        for _ in range(500):
            if small.get(waiting.json()["status_url"]).json()["state"] == "done":
                break
            threading.Event().wait(0.02)
        assert upload(small, image_bytes(seed=4)).status_code == 200


def test_concurrent_requests_never_mix_results(client):
    sizes = [(64 + 8 * i, 120 - 8 * i) for i in range(6)]
    uploads = [image_bytes(size, seed=i) for i, size in enumerate(sizes)]

    def one(index: int) -> tuple[int, dict, tuple[int, int]]:
        result = upload(client, uploads[index], name=f"image-{index}.png").json()
        with Image.open(io.BytesIO(client.get(result["urls"]["heatmap"]).content)) as heat:
            return index, result, heat.size

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(one, range(6)))
    for index, result, heat_size in answers:
        height, width = sizes[index]
        assert result["file"] == f"image-{index}.png"
        assert result["sha256"] == hashlib.sha256(uploads[index]).hexdigest()
        assert (result["width"], result["height"]) == heat_size == (width, height)
    assert len({result["id"] for _, result, _ in answers}) == 6


def _queued_job(models, folder: Path, size: tuple[int, int] = (40, 40), seed: int = 0) -> jobs_module.Job:
    """A job whose upload is a random PNG of ``size`` saved in ``folder/<id>/upload``."""
    job_folder = folder / jobs_module.new_job_id()
    job_folder.mkdir(parents=True)
    (job_folder / jobs_module.UPLOAD_NAME).write_bytes(image_bytes(size, seed=seed))
    facts = file_facts(job_folder / jobs_module.UPLOAD_NAME)
    served = models.models["dfcn+scunet"]
    return jobs_module.Job(job_folder.name, job_folder, "x.png", facts, served, "chosen", "x", window=64, stride=64)


def test_job_queue_stop_fails_waiting_jobs_and_history_removes_old_folders(models, tmp_path):
    queue = jobs_module.JobQueue(capacity=4, history=2)
    done = [_queued_job(models, tmp_path) for _ in range(4)]
    for each in done:
        queue.submit(each)
    with pytest.raises(ValueError):
        jobs_module.JobQueue(capacity=0)
    queue.start()
    for each in done:
        assert each.finished.wait(60)
    assert [each.state for each in done] == ["done"] * 4
    assert [each.folder.exists() for each in done] == [False, False, True, True]
    assert queue.get(done[0].id) is None and queue.get(done[3].id) is done[3]
    queue.stop()
    late = _queued_job(models, tmp_path)
    queue.submit(late)  # the worker has stopped: stopping again fails what waits
    queue.stop()
    assert late.state == "failed" and "stopped" in late.error and late.finished.is_set()


def test_queued_jobs_hold_no_decoded_image_and_one_runs_at_a_time(models, tmp_path, monkeypatch):
    """Decoding happens in the worker: while one job runs, no other upload is decoded."""
    decoding, most = [0], [0]
    lock = threading.Lock()
    original = jobs_module.read_image

    def counting_read(*args, **kwargs):
        with lock:
            decoding[0] += 1
            most[0] = max(most[0], decoding[0])
        try:
            return original(*args, **kwargs)
        finally:
            with lock:
                decoding[0] -= 1

    monkeypatch.setattr(jobs_module, "read_image", counting_read)
    queue = jobs_module.JobQueue(capacity=8)
    jobs = [_queued_job(models, tmp_path, seed=seed) for seed in range(6)]
    for job in jobs:
        assert not any(isinstance(value, np.ndarray) for value in vars(job).values())
        queue.submit(job)
    queue.start()
    assert all(job.finished.wait(60) for job in jobs)
    queue.stop()
    assert most[0] == 1 and [job.state for job in jobs] == ["done"] * 6


def test_stopping_the_server_ends_the_running_job(models, tmp_path):
    queue = jobs_module.JobQueue(capacity=2)
    job = _queued_job(models, tmp_path, size=(256, 256))
    job.window = job.stride = 8  # 1024 windows: long enough to be stopped while it runs
    queue.submit(job)
    queue.start()
    while job.state == "queued":
        threading.Event().wait(0.01)
    queue.stop(timeout=60)
    assert job.state == "failed" and "stopped" in job.error and job.done < 1024


def test_facts_never_decode_a_png_to_look_for_exif(tmp_path, monkeypatch):
    from PIL import PngImagePlugin

    path = tmp_path / "flat.png"
    Image.new("RGB", (5000, 4000), (1, 2, 3)).save(path)
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: pytest.fail("decoded the pixels"))
    facts = file_facts(path)
    assert (facts["width"], facts["height"], facts["exif"], facts["frames"]) == (5000, 4000, {}, 1)


def test_threshold_fractions_are_counted_exactly_in_bands():
    probabilities = np.random.default_rng(0).random((1100, 50)).astype(np.float32)  # three bands of rows
    steps = np.linspace(0.0, 1.0, 11)
    expected = [np.count_nonzero(probabilities > t) / probabilities.size for t in steps]
    assert jobs_module.fractions_above(probabilities, steps) == pytest.approx(expected)


def test_disk_cap_removes_oldest_results_then_refuses_with_507(models, tmp_path):
    first = _queued_job(models, tmp_path / "jobs", size=(40, 40), seed=1)
    need = first.bytes
    queue = jobs_module.JobQueue(capacity=8, max_bytes=int(need * 1.5))  # results take less than reserved
    queue.start()
    finished = []
    for seed in range(4):
        job = first if seed == 0 else _queued_job(models, tmp_path / "jobs", size=(40, 40), seed=seed + 1)
        queue.submit(job)
        assert job.finished.wait(60) and job.state == "done"
        finished.append(job)
        assert queue.used_bytes() <= queue.max_bytes
    assert not finished[0].folder.exists() and finished[-1].folder.exists(), "oldest results removed first"
    queue.stop()
    waiting = jobs_module.JobQueue(capacity=8, max_bytes=int(need * 1.5))  # no worker: jobs stay queued
    waiting.submit(_queued_job(models, tmp_path / "jobs", seed=7))
    with pytest.raises(jobs_module.DiskFull, match="--max-disk-gb"):
        waiting.submit(_queued_job(models, tmp_path / "jobs", seed=8))
    with make_client(models, tmp_path / "work", max_disk_bytes=1000) as tiny:
        response = upload(tiny, image_bytes())
        assert response.status_code == 507 and int(response.headers["retry-after"]) >= 1
        assert not any((tmp_path / "work" / "jobs").iterdir()), "the refused upload is not kept"


def test_old_results_expire(models, tmp_path, monkeypatch):
    queue = jobs_module.JobQueue(capacity=4, max_age=60)
    job = _queued_job(models, tmp_path)
    queue.submit(job)
    queue.start()
    assert job.finished.wait(60)
    assert queue.get(job.id) is job
    later = job.finished_at + 61
    monkeypatch.setattr(jobs_module.time, "monotonic", lambda: later)
    assert queue.get(job.id) is None and not job.folder.exists()
    queue.stop()


def test_a_tiny_file_declaring_a_huge_image_is_refused_before_decoding(models, tmp_path, monkeypatch):
    decoded = []
    monkeypatch.setattr(jobs_module, "read_image", lambda *a, **k: decoded.append(a))
    buffer = io.BytesIO()
    Image.new("RGB", (5000, 4000), (200, 30, 30)).save(buffer, format="PNG")  # 20 Mpx in about 60 kB
    with make_client(models, tmp_path / "work") as guarded:
        response = upload(guarded, buffer.getvalue(), name="flat.png")
    assert response.status_code == 413 and "decompression bomb" in response.json()["error"]
    assert "flat.png" in response.json()["error"] and not decoded
    assert not any((tmp_path / "work" / "jobs").iterdir())


# --- models -------------------------------------------------------------------------------


@pytest.fixture
def packaged(tmp_path, monkeypatch, weights):
    """A stand-in for the packaged pretrained models: tiny random weights and cards."""
    root = tmp_path / "pretrained"
    figures = {"robust": {"jpeg:75": {"auc": 0.70, "f1": 0.4}}, "reloc": {"jpeg:75": {"auc": 0.72, "f1": 0.3}}}
    cards = {}
    for name in pretrained.NAMES:
        (root / name).mkdir(parents=True)
        roles = ["localizer", "restorer"] if name == "reloc" else ["localizer"]
        for role in roles:
            (root / name / f"{role}.safetensors").write_bytes(weights[role].read_bytes())
        cards[name] = {"summary": f"tiny {name}", "roles": roles, "figures": figures.get(name, {})}
    (root / "cards.json").write_text(json.dumps({"models": cards}))
    rule = {
        "no_jpeg": {"model": "plain", "measured_on": "a test"},
        "jpeg": [{"quality": 75, "model": "reloc", "measured_on": "a test"}],
    }
    (root / "routing.json").write_text(json.dumps(rule))
    monkeypatch.setattr(pretrained, "_root", lambda: root)
    pretrained.cards.cache_clear()
    pretrained.routing.cache_clear()
    yield root
    pretrained.cards.cache_clear()
    pretrained.routing.cache_clear()


def test_default_serves_pretrained_models_with_the_auto_rule(packaged, tmp_path):
    served = load_models([], [], None, None)
    assert served.names() == ["auto", "pretrained:plain", "pretrained:robust", "pretrained:reloc"]
    with make_client(served, tmp_path / "work") as client:
        listed = client.get("/api/models").json()
        assert listed["default"] == "auto" and listed["models"][3]["card"]["summary"] == "tiny reloc"
        png = upload(client, image_bytes()).json()
        assert png["model"] == "pretrained:plain" and "not a JPEG" in png["model_reason"]
        assert png["requested_model"] == "auto" and "restored" not in png["urls"]
        ran = png["inference"]  # as the weights record: whole when the image fits, else tiles
        assert ran["window"] == png["window"] and ran["mode"] == ("whole" if png["width"] <= ran["window"] else "tiles")
        jpeg = upload(client, image_bytes(fmt="JPEG", quality=75), name="a.jpg").json()
        assert jpeg["model"] == "pretrained:reloc" and "measured best at QF 75" in jpeg["model_reason"]
        assert "restored" in jpeg["urls"]
        report = client.get(jpeg["urls"]["report"]).text
        assert "tiny reloc" in report and "auc 0.720" in report
        chosen = upload(client, image_bytes(fmt="JPEG", quality=75), model="pretrained:robust").json()
        assert chosen["model"] == "pretrained:robust" and chosen["model_reason"] == "chosen"


def test_missing_packaged_weights_fail_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "_root", lambda: tmp_path / "nothing")
    pretrained.cards.cache_clear()
    try:
        with pytest.raises(ModelError, match=r"--model pretrained:plain: .*missing.*--run RUN or --localizer"):
            load_models([], [], None, None)
        result = CliRunner().invoke(cli, ["serve"])
        assert result.exit_code == 2 and "error: --model pretrained:plain" in result.output
        assert "Traceback" not in result.output
    finally:
        pretrained.cards.cache_clear()


def test_model_option_errors(weights, tmp_path):
    with pytest.raises(ModelError, match="--restorer needs --localizer"):
        load_models([], [], None, str(weights["restorer"]))
    with pytest.raises(ModelError, match="--model nonesuch: unknown pretrained model"):
        load_models(["nonesuch"], [], None, None)
    with pytest.raises(ModelError, match=r"--run .*no localizer weights"):
        load_models([], [str(tmp_path)], None, None)
    with pytest.raises(ModelError, match="holds the restorer"):
        load_models([], [], str(weights["restorer"]), None)
    run = tmp_path / "run-a" / "weights" / "best"
    run.mkdir(parents=True)
    (run / "localizer.safetensors").write_bytes(weights["localizer"].read_bytes())
    served = load_models([], [str(tmp_path / "run-a")], str(weights["localizer"]), None)
    assert served.names() == ["run-a", "dfcn"] and served.default == "run-a"
    assert not served.models["run-a"].has_restorer


# --- facts --------------------------------------------------------------------------------


def test_file_facts_exif_summary_and_nonstandard_tables():
    exif = Image.Exif()
    exif[0x0131] = "Adobe Photoshop 25.0"  # Software
    exif[0x010F] = "Canon"  # Make
    exif[0x0112] = 6  # Orientation
    pixels = Image.fromarray((np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8))
    buffer = io.BytesIO()
    pixels.save(buffer, format="JPEG", quality=90, exif=exif)
    facts = file_facts(buffer.getvalue())
    assert facts["exif"] == {"Make": "Canon", "Software": "Adobe Photoshop 25.0", "Orientation": "6 (rotated 90 CW)"}
    assert (facts["width"], facts["height"], facts["jpeg_quality"], facts["jpeg_standard_tables"]) == (48, 32, 90, True)
    custom = io.BytesIO()
    table = list(range(1, 65))
    pixels.save(custom, format="JPEG", qtables=[table, table])
    odd = file_facts(custom.getvalue())
    assert odd["jpeg_standard_tables"] is False and odd["jpeg_quality"] is not None
    with pytest.raises(UnreadableFile, match="empty"):
        file_facts(b"")


# --- the command --------------------------------------------------------------------------


def test_bind_warning_only_beyond_loopback():
    assert bind_warning("127.0.0.1", None) is None and bind_warning("::1", None) is None
    assert "--token" in bind_warning("0.0.0.0", None)
    assert "--token" not in bind_warning("0.0.0.0", "t") and "0.0.0.0" in bind_warning("0.0.0.0", "t")


@pytest.mark.parametrize("keep", [False, True], ids=["temporary", "keep"])
def test_serve_command_removes_its_work_folder_unless_kept(weights, tmp_path, monkeypatch, keep):
    import uvicorn

    seen = {}

    def fake_run(app, host, port, log_level):
        seen.update(host=host, port=port, work=app.state.settings.work, spool=tempfile.gettempdir())
        with TestClient(app) as client:
            seen["status"] = upload(client, image_bytes()).status_code
        seen["files"] = sorted(p.name for p in app.state.settings.work.rglob("*"))

    monkeypatch.setattr(uvicorn, "run", fake_run)
    arguments = ["serve", "--localizer", str(weights["localizer"]), "--host", "0.0.0.0", "--port", "9999"]
    if keep:
        arguments += ["--keep", str(tmp_path / "kept")]
    before = tempfile.gettempdir()
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    assert "warning: serving on 0.0.0.0" in result.output
    assert seen["status"] == 200 and seen["host"] == "0.0.0.0" and seen["port"] == 9999
    assert seen["spool"] == str(seen["work"] / "spool"), "uploads spool inside the work folder"
    assert "heatmap.png" in seen["files"]
    assert tempfile.gettempdir() == before
    assert seen["work"].exists() == keep
    if keep:
        assert seen["work"] == tmp_path / "kept"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--queue-size", "0"),
        ("--max-upload-mb", "nan"),
        ("--max-upload-mb", "inf"),
        ("--max-upload-mb", "-1"),
        ("--max-megapixels", "nan"),
        ("--max-disk-gb", "0"),
        ("--expire-hours", "inf"),
        ("--port", "70000"),
        ("--port", "-1"),
    ],
)
def test_serve_command_rejects_bad_limits(weights, option, value):
    result = CliRunner().invoke(cli, ["serve", "--localizer", str(weights["localizer"]), option, value])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {option}: ") and "Traceback" not in result.output


def test_api_schema_is_behind_the_token(models, tmp_path):
    with make_client(models, tmp_path / "work", token="s3cret") as guarded:
        assert guarded.get("/openapi.json").status_code == 404
        assert guarded.get("/api/openapi.json").status_code == 401
        schema = guarded.get("/api/openapi.json", headers={"Authorization": "Bearer s3cret"})
        assert schema.status_code == 200 and "/api/localize" in schema.json()["paths"]


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGHUP"])
def test_serve_removes_its_work_folder_on_sigterm_and_sighup(weights, tmp_path, signal_name):
    """A real ``reloc serve`` process, stopped by the signal systemd / docker / a closed terminal send."""
    import os
    import signal
    import subprocess
    import sys
    import time

    environment = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    command = [sys.executable, "-m", "reloc", "serve", "--localizer", str(weights["localizer"]), "--port", "0",
               "--device", "cpu"]  # fmt: skip
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("Uvicorn running" in line for line in lines):
            line = server.stderr.readline()
            if not line:
                break
            lines.append(line)
        work = Path(re.search(r"work folder (\S+)\)", "".join(lines)).group(1))
        assert work.is_dir()
        server.send_signal(getattr(signal, signal_name))
        server.communicate(timeout=60)
    finally:
        server.kill()
    assert not work.exists(), f"{signal_name} left the work folder with the uploads behind"
    assert server.returncode in (0, 128 + getattr(signal, signal_name))


def test_pipeline_runs_unchanged_under_the_server(client, models, tmp_path):
    """The server's map is exactly ``Pipeline.predict``'s (no resizing, no other windows)."""
    from reloc.data.io import read_image, to_tensor

    data = image_bytes((90, 70), seed=5)
    result = upload(client, data).json()
    served = client.get(result["urls"]["json"], params={"threshold": 0.5}).json()
    path = tmp_path / "x.png"
    path.write_bytes(data)
    probabilities, _ = models.models["dfcn+scunet"].pipeline.predict(
        to_tensor(read_image(path)), 64, 64, return_restored=True
    )
    # the kept map is exact to half a 16-bit level
    assert served["mean_probability"] == pytest.approx(float(probabilities.double().mean()), abs=0.5 / 65535)
    assert served["max_probability"] == pytest.approx(float(torch.max(probabilities)), abs=0.5 / 65535)
