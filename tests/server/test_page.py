"""The web page at GET /, in a real headless Chromium (Debian's, driven by Playwright)
against a real uvicorn server. A screenshot of each state lands in `artifacts/`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import server_settings
from tests.harness import ServerThread, gated_rounds
from tests.live import HlsServer
from tests.videos import write_video

ARTIFACTS = Path(os.environ.get("LONGVU_ARTIFACTS", Path(__file__).parents[2] / "artifacts"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "Chromium is missing: apt-get install chromium (make test installs it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1000, "height": 1100})
    page = context.new_page()
    yield page
    context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_upload_watch_ask_and_stream(app_server: ServerThread, page: Page, video_dir: Path) -> None:
    video = write_video(video_dir / "page.mp4", seconds=6, fps=2, seed=61)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(app_server.url)
    expect(page.get_by_role("heading", name="Ask a video")).to_be_visible()
    expect(page.get_by_label("max tokens")).to_have_value("128")  # the API's default
    page.get_by_label("Choose a video file").set_input_files(str(video))
    expect(page.locator("#video-status")).to_have_text("Ready: ask away.", timeout=60_000)
    expect(page.locator("#upload-bar")).to_have_attribute("value", "1")
    expect(page.locator("#player")).to_be_visible()
    assert "frames sampled" in page.locator("#ingest-text").inner_text()

    # Hold the engine between rounds: a token must show while the answer is unfinished.
    with gated_rounds(app_server.services.engine) as gate:
        page.get_by_label("Question").fill("What happens in the video?")
        page.get_by_label("max tokens").fill("40")
        page.get_by_role("button", name="Ask").click()
        answer = page.locator("#answer")
        for _ in range(60):
            gate.release()
            if answer.inner_text().strip():
                break
            page.wait_for_timeout(50)
        assert answer.inner_text().strip(), "no token reached the page"
        expect(answer).to_have_attribute("aria-busy", "true")  # still streaming
        expect(page.get_by_role("button", name="Stop")).to_be_enabled()
        shot(page, "page-streaming.png")
        gate.release(1000)
        expect(answer).to_have_attribute("aria-busy", "false", timeout=30_000)
    summary = page.locator("#summary")
    expect(summary).to_be_visible()
    assert "Visual tokens" in summary.inner_text() and "sampled" in summary.inner_text()
    expect(page.get_by_role("button", name="Ask")).to_be_enabled()
    shot(page, "page-answered.png")
    assert failed == []  # nothing the page asked for was missing (the favicon included)


def test_stop_cancels_the_answer(app_server: ServerThread, page: Page, video_dir: Path) -> None:
    video = write_video(video_dir / "page-stop.mp4", seconds=3, fps=2, seed=62)
    page.goto(app_server.url)
    page.get_by_label("Choose a video file").set_input_files(str(video))
    expect(page.locator("#video-status")).to_have_text("Ready: ask away.", timeout=60_000)
    engine = app_server.services.engine
    with gated_rounds(engine) as gate:
        page.get_by_label("Question").fill("Go on and on.")
        page.get_by_label("max tokens").fill("4000")
        page.get_by_role("button", name="Ask").click()
        gate.release(5)
        expect(page.get_by_role("button", name="Stop")).to_be_enabled()
        page.get_by_role("button", name="Stop").click()
        expect(page.locator("#answer")).to_have_attribute("aria-busy", "false")
    for _ in range(100):
        if engine.running == 0:
            break
        page.wait_for_timeout(50)
    assert engine.running == 0  # the server stopped generating too
    expect(page.locator("#ask-error")).to_be_hidden()


def test_a_non_video_file_gets_a_clear_message(app_server: ServerThread, page: Page, tmp_path: Path,
                                               upload_dir: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("these are not the frames you are looking for\n" * 50)
    page.goto(app_server.url)
    page.get_by_label("Choose a video file").set_input_files(str(text))
    error = page.locator("#video-error")
    expect(error).to_be_visible(timeout=30_000)
    assert "not a video this server can read" in error.inner_text()
    expect(page.get_by_role("button", name="Ask")).to_be_disabled()
    assert list(upload_dir.iterdir()) == []
    shot(page, "page-error.png")


def test_phone_width_and_keyboard(app_server: ServerThread, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740})
    page = context.new_page()
    try:
        page.goto(app_server.url)
        assert page.evaluate("document.documentElement.scrollWidth") <= 360  # no sideways scrolling
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "file"  # the first stop: choose a video
        for label in ("Question", "or a URL", "from", "to", "max tokens"):
            expect(page.get_by_label(label, exact=True)).to_be_visible()
        shot(page, "page-phone.png")
    finally:
        context.close()


@pytest.fixture()
def keyed_server(tiny_checkpoint: Path, redis_server, upload_dir: Path) -> Iterator[ServerThread]:  # type: ignore[no-untyped-def]
    server = ServerThread(server_settings(tiny_checkpoint, redis_server.url, upload_dir, api_keys=["page-key"])).start()
    yield server
    server.stop()


def test_api_key_field(keyed_server: ServerThread, page: Page, video_dir: Path) -> None:
    video = write_video(video_dir / "page-key.mp4", seconds=2, fps=2, seed=63)
    page.goto(keyed_server.url)  # the page itself needs no key
    page.get_by_label("Choose a video file").set_input_files(str(video))
    expect(page.locator("#video-error")).to_contain_text("needs an API key", timeout=30_000)
    page.get_by_text("API key", exact=True).click()
    page.get_by_label("Key (kept in this tab only)").fill("page-key")
    page.get_by_label("Choose a video file").set_input_files(str(video))
    expect(page.locator("#video-status")).to_have_text("Ready: ask away.", timeout=60_000)
    assert page.evaluate("sessionStorage.getItem('longvu-key')") == "page-key"


def test_follow_a_live_stream_and_ask_about_the_last_minute(url_server: ServerThread, page: Page,
                                                            hls_server: HlsServer) -> None:
    writer, url = hls_server.stream()
    try:
        page.goto(url_server.url)
        page.get_by_label("or follow a live stream (HLS)").fill(url)
        page.get_by_role("button", name="Follow").click()
        expect(page.locator("#video-status")).to_have_text("Live: ask about what has been seen so far.",
                                                           timeout=60_000)
        expect(page.locator("#ingest-text")).to_contain_text("s followed")
        first = page.locator("#ingest-text").inner_text()
        expect(page.locator("#ingest-text")).not_to_have_text(first, timeout=10_000)  # the live duration grows
        page.get_by_label("Question").fill("What just happened?")
        page.get_by_label("max tokens").fill("3")
        page.get_by_label("minutes").fill("0.25")
        page.get_by_role("button", name="Ask").click()
        summary = page.locator("#summary")
        expect(summary).to_be_visible(timeout=30_000)
        seen = summary.locator("dd").nth(2).inner_text()  # "Seconds seen": first – last
        low, high = (float(x) for x in seen.split(" – "))
        assert high - low <= 15  # the last quarter of a minute only
        shot(page, "page-live.png")
        stream_id = page.evaluate("state.videoId")
        with url_server.client() as client:
            client.delete(f"/videos/{stream_id}")
    finally:
        writer.stop()


def test_find_draws_scores_and_chapters_stream_in(app_server: ServerThread, page: Page, video_dir: Path) -> None:
    video = write_video(video_dir / "page-find.mp4", seconds=12, fps=1, seed=63)
    page.goto(app_server.url)
    expect(page.get_by_role("button", name="Find")).to_be_disabled()
    page.get_by_label("Choose a video file").set_input_files(str(video))
    expect(page.locator("#video-status")).to_have_text("Ready: ask away.", timeout=60_000)

    page.get_by_role("textbox", name="Find").fill("a bird lands")
    page.get_by_label("window (s)").fill("4")
    page.get_by_role("button", name="Find").click()
    moments = page.get_by_role("list", name="Top moments").get_by_role("listitem")
    expect(moments).to_have_count(3, timeout=30_000)  # 12 s in windows of 4: all three, best first
    strip = page.locator("#strip span")
    expect(strip).to_have_count(3)
    scores = [float(s) for s in strip.evaluate_all("spans => spans.map(s => s.dataset.score)")]
    lefts = strip.evaluate_all("spans => spans.map(s => s.style.left)")
    assert sorted(float(v.rstrip("%")) for v in lefts) == pytest.approx([0, 100 / 3, 200 / 3], abs=1e-3)
    listed = [float(t.split()[-1].rstrip("%")) for t in moments.all_inner_texts()]
    assert listed == sorted(listed, reverse=True) == pytest.approx(sorted((100 * s for s in scores), reverse=True),
                                                                   abs=0.06)
    assert moments.first.get_by_role("button").inner_text().count(":") == 2  # m:ss–m:ss
    shot(page, "page-moments.png")

    page.get_by_role("button", name="Chapters").click()
    chapters = page.get_by_role("list", name="Chapters").get_by_role("listitem")
    expect(chapters).to_have_count(1, timeout=60_000)  # 12 s: one chapter of at least 30 s
    expect(chapters.first).to_contain_text("0:00–0:12")
    expect(page.locator("#chapters-summary")).not_to_be_empty(timeout=60_000)
    expect(page.locator("#player track")).to_have_count(1, timeout=30_000)  # the VTT as the player's chapters
    expect(page.get_by_role("button", name="Chapters")).to_be_enabled()
    shot(page, "page-chapters.png")


def test_watch_a_live_stream_and_see_alerts_arrive(url_server: ServerThread, page: Page,
                                                   hls_server: HlsServer) -> None:
    writer, url = hls_server.stream()
    try:
        page.goto(url_server.url)
        expect(page.locator("#watches-section")).to_be_hidden()  # for live streams only
        page.get_by_label("or follow a live stream (HLS)").fill(url)
        page.get_by_role("button", name="Follow").click()
        expect(page.get_by_role("heading", name="4. Watch the live stream")).to_be_visible(timeout=60_000)
        page.get_by_label("Tell me when").fill("a truck arrives")
        page.get_by_label("threshold").fill("0")
        page.get_by_role("button", name="Watch", exact=True).click()
        watches = page.get_by_role("list", name="Watches").get_by_role("listitem")
        expect(watches).to_have_count(1)
        expect(watches.first).to_contain_text("a truck arrives (at least 0)")
        alerts = page.get_by_role("list", name="Alerts").get_by_role("listitem")
        expect(alerts.first).to_contain_text("a truck arrives", timeout=60_000)
        expect(alerts).not_to_have_count(1, timeout=30_000)  # one per new window
        shot(page, "page-watches.png")
        page.get_by_role("button", name="Remove the watch “a truck arrives”").click()
        expect(watches).to_have_count(0)
        stream_id = page.evaluate("state.videoId")
        with url_server.client() as client:
            assert client.get(f"/videos/{stream_id}/watches").json()["watches"] == []
            client.delete(f"/videos/{stream_id}")
    finally:
        writer.stop()
