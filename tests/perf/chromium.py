"""Open a page in headless Chromium and report what a reader's browser would see.

Drives Chromium through the DevTools protocol (a websocket, via aiohttp): every
console message, uncaught exception and browser log entry at error level is
collected while the page loads, then the page itself is asked whether each
image decodes, which in-page links point nowhere, and what its visible text is;
last, a screenshot of the top of the page (what a reader sees first) as PNG.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREEN = (1400, 900)

_INSPECT = """(async () => {
  const images = await Promise.all(Array.from(document.images).map(async (img) => {
    try { await img.decode(); } catch (e) { return {alt: img.alt, ok: false}; }
    return {alt: img.alt, ok: img.naturalWidth > 0 && img.naturalHeight > 0};
  }));
  const dangling = Array.from(document.querySelectorAll("a[href^='#']"))
    .map((a) => a.getAttribute("href").slice(1)).filter((id) => !document.getElementById(id));
  return JSON.stringify({images, dangling, text: document.body.innerText,
                         figures: document.querySelectorAll("figure").length,
                         captions: document.querySelectorAll("figure > figcaption").length});
})()"""


@dataclass
class PageReport:
    """What the browser saw."""

    errors: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    dangling_links: list[str] = field(default_factory=list)
    text: str = ""
    figures: int = 0
    captions: int = 0
    screenshot: bytes = b""


def inspect_page(path: Path, timeout_s: float = 90.0) -> PageReport:
    """Load ``path`` (file://) in a fresh headless Chromium and report on it."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    process = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        port = _devtools_port(profile, process, timeout_s)
        return asyncio.run(asyncio.wait_for(_inspect(port, path.resolve().as_uri()), timeout_s))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _devtools_port(profile: Path, process: subprocess.Popen[bytes], timeout_s: float) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode} before DevTools started")
        if marker.exists() and (lines := marker.read_text().splitlines()):
            return int(lines[0])
        time.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


async def _inspect(port: int, url: str) -> PageReport:
    import aiohttp

    report = PageReport()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        page = next(t for t in targets if t["type"] == "page")
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as socket:
            ids = itertools.count(1)
            loaded = asyncio.Event()
            waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}

            async def call(method: str, **params: Any) -> dict[str, Any]:
                message_id = next(ids)
                answer = waiting[message_id] = asyncio.get_running_loop().create_future()
                await socket.send_str(json.dumps({"id": message_id, "method": method, "params": params}))
                return await answer

            async def listen() -> None:
                async for message in socket:
                    data = json.loads(message.data)
                    if "id" in data and data["id"] in waiting:
                        waiting.pop(data["id"]).set_result(data)
                    else:
                        _collect(data, report, loaded)

            listener = asyncio.create_task(listen())
            for domain in ("Runtime", "Log", "Page"):
                await call(f"{domain}.enable")
            await call("Page.navigate", url=url)
            await loaded.wait()
            answer = await call("Runtime.evaluate", expression=_INSPECT, awaitPromise=True,
                                returnByValue=True)
            seen = json.loads(answer["result"]["result"]["value"])
            report.images, report.dangling_links = seen["images"], seen["dangling"]
            report.text, report.figures, report.captions = seen["text"], seen["figures"], seen["captions"]
            await asyncio.sleep(0.3)  # late console messages
            await call("Emulation.setDeviceMetricsOverride", width=SCREEN[0], height=SCREEN[1],
                       deviceScaleFactor=1, mobile=False)
            shot = await call("Page.captureScreenshot", format="png")
            report.screenshot = base64.b64decode(shot["result"]["data"])
            listener.cancel()
    return report


def _collect(event: dict[str, Any], report: PageReport, loaded: asyncio.Event) -> None:
    method, params = event.get("method"), event.get("params", {})
    if method == "Page.loadEventFired":
        loaded.set()
    elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        report.errors.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                    for a in params.get("args", [])))
    elif method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        report.errors.append(f"exception: {details.get('text', '')} "
                             f"{details.get('exception', {}).get('description', '')}".strip())
    elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        report.errors.append("log: " + params["entry"].get("text", ""))
