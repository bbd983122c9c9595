"""Drive Debian's headless Chromium over the DevTools protocol (no extra driver).

Used by the report tests: open a page, collect console errors, uncaught
exceptions and network requests, evaluate JavaScript, take a screenshot.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--remote-debugging-port=0", "--window-size=1280,1000",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One Chromium page; use as a context manager."""

    def __init__(self) -> None:
        self.console_errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self._id = 0

    def __enter__(self) -> Page:
        binary = chromium_path()
        if binary is None:
            raise RuntimeError("chromium is not installed; run `make test`, which installs it")
        self._profile = tempfile.mkdtemp(prefix="territory-chromium-")
        self._proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.time() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.time() > deadline or self._proc.poll() is not None:
                self.__exit__(None, None, None)
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            targets = json.load(resp)
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        self._ws = connect(url, max_size=64 * 2**20, open_timeout=10)
        for method in ("Runtime.enable", "Log.enable", "Network.enable", "Page.enable"):
            self.send(method)
        return self

    def __exit__(self, *exc) -> None:
        try:
            if hasattr(self, "_ws"):
                self._ws.close()
        finally:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            shutil.rmtree(self._profile, ignore_errors=True)

    def _record(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.console_errors.append(" ".join(str(a.get("value", a.get("description")))
                                                for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            self.console_errors.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.console_errors.append(params["entry"].get("text", ""))
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(params.get("message", ""))
            self._ws.send(json.dumps({"id": 0, "method": "Page.handleJavaScriptDialog",
                                      "params": {"accept": True}}))
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])

    def send(self, method: str, timeout: float = 60.0, **params) -> dict:
        self._id += 1
        call_id = self._id
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.time() + timeout
        while time.time() < deadline:
            message = json.loads(self._ws.recv(timeout=max(deadline - time.time(), 0.1)))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._record(message)
        raise TimeoutError(method)

    def wait_for(self, event: str, timeout: float = 60.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            message = json.loads(self._ws.recv(timeout=max(deadline - time.time(), 0.1)))
            self._record(message)
            if message.get("method") == event:
                return
        raise TimeoutError(event)

    def open(self, path: Path, settle_s: float = 1.0) -> None:
        self.send("Page.navigate", url=path.resolve().as_uri())
        self.wait_for("Page.loadEventFired")
        end = time.time() + settle_s  # let scripts finish drawing
        while time.time() < end:
            try:
                self._record(json.loads(self._ws.recv(timeout=0.2)))
            except TimeoutError:
                pass

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"].get("text"))
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path
