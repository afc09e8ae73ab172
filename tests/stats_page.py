#!/usr/bin/env python3
"""Checks ringproxy's HTML stats page in headless Chromium (Python 3.11, stdlib only).

    python3 tests/stats_page.py --url http://127.0.0.1:9900/ --screenshot OUT.png
    python3 tests/stats_page.py --self-test --screenshot OUT.png

Loads the page, waits (bounded by --timeout) until the page has refreshed from
stats.json at least --min-refreshes times (body[data-refreshes]), saves a full-page
screenshot, then asserts: at least one table.stats with a tr.server row, at least one
svg.chart polyline.series with >= 2 points, no error banner and no uncaught script error.
Exit status 0 on success, 1 on a failed check (the reason on stderr), 2 on a usage or
browser start problem.

Chromium is driven through the DevTools protocol over --remote-debugging-pipe (fd 3:
commands to the browser, fd 4: answers; JSON messages ended by NUL), which needs no
port and no websocket, and lets the checks wait on the page's real state in real time.

--self-test serves src/admin/page.html and tests/fixtures/stats_sample.json (numbers
changing on every request) on 127.0.0.1, runs the checks against it, then makes
stats.json fail and checks that the page shows its error banner and keeps its tables.
"""

import argparse
import base64
import copy
import http.server
import json
import math
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "src" / "admin" / "page.html"
FIXTURE = ROOT / "tests" / "fixtures" / "stats_sample.json"
WIDTH, HEIGHT = 1280, 900
MAX_SHOT_HEIGHT = 6000

STATE_JS = """(() => {
  const polys = [...document.querySelectorAll('svg.chart polyline.series')];
  const npoints = p => (p.getAttribute('points') || '').trim().split(/\\s+/).filter(Boolean).length;
  const err = document.getElementById('error');
  return {
    refreshes: Number(document.body ? document.body.dataset.refreshes || 0 : 0),
    tables: document.querySelectorAll('table.stats').length,
    servers: document.querySelectorAll('table.stats tr.server').length,
    totals: document.querySelectorAll('table.stats tr.total').length,
    charts: document.querySelectorAll('svg.chart').length,
    polylines: polys.length,
    max_points: Math.max(0, ...polys.map(npoints)),
    banner: err && !err.hidden ? err.textContent : '',
  };
})()"""


class Failure(Exception):
    """A check failed: exit status 1."""


class BrowserError(Exception):
    """The browser could not be started or stopped answering: exit status 2."""


class Chromium:
    """A headless Chromium driven over --remote-debugging-pipe."""

    def __init__(self, binary, timeout):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="stats-page-chromium-")
        self.stderr = open(os.path.join(self.profile, "stderr.log"), "w+b")
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()
        args = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
            f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-sync",
            "--disable-background-networking", "--disable-component-update", "--mute-audio",
            "about:blank",
        ]
        # Chromium wants the pipe on fds 3 and 4 exactly: a small trampoline moves them
        # there (through fds >= 10, so that ends already on 3 or 4 are not clobbered),
        # then execs the browser; no preexec_fn, which is unsafe once threads run.
        trampoline = ("import fcntl, os, sys\n"
                      "r, w = (fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3])\n"
                      "os.dup2(r, 3); os.dup2(w, 4)\n"
                      "for fd in {r, w, *map(int, sys.argv[1:3])} - {3, 4}: os.close(fd)\n"
                      "os.execv(sys.argv[3], sys.argv[3:])\n")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", trampoline, str(to_browser_r), str(from_browser_w), *args],
                pass_fds=(to_browser_r, from_browser_w),
                stdin=subprocess.DEVNULL, stdout=self.stderr, stderr=self.stderr)
        except OSError as e:
            raise BrowserError(f"cannot start {binary}: {e}") from e
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)
        self.next_id = 0
        self.inbox = queue.Queue()
        self.events = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self.from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self.inbox.put(None)
                return
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for m in messages:
                self.inbox.put(json.loads(m))

    def stderr_tail(self, lines=15):
        self.stderr.flush()
        self.stderr.seek(0)
        text = self.stderr.read().decode(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def send(self, method, params=None, session=None, timeout=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        try:
            os.write(self.to_browser, json.dumps(msg).encode() + b"\0")
        except OSError as e:
            raise BrowserError(f"chromium stopped reading commands ({e}):\n{self.stderr_tail()}") from e
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            left = deadline - time.monotonic()
            try:
                answer = self.inbox.get(timeout=max(0.0, left))
            except queue.Empty:
                raise BrowserError(f"chromium did not answer {method} within {timeout or self.timeout:.0f} s") from None
            if answer is None:
                raise BrowserError(f"chromium exited while running {method}:\n{self.stderr_tail()}")
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise BrowserError(f"{method} failed: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except BrowserError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self.to_browser, self.from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab of the browser."""

    def __init__(self, browser):
        self.b = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Page.enable", "Runtime.enable"):
            self.send(method)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})

    def send(self, method, params=None, timeout=None):
        return self.b.send(method, params, self.session, timeout)

    def navigate(self, url):
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise Failure(f"cannot load {url}: {result['errorText']}")

    def eval(self, expression):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise Failure(f"evaluating a check failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def script_errors(self):
        """Uncaught exceptions and console.error lines of the page so far."""
        out = []
        for ev in self.b.events:
            if ev.get("sessionId") != self.session:
                continue
            p = ev.get("params", {})
            if ev.get("method") == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append(f"uncaught: {d.get('exception', {}).get('description') or d.get('text')} "
                           f"(line {d.get('lineNumber', 0) + 1})")
            elif ev.get("method") == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        return out

    def wait_for(self, predicate, timeout):
        """Polls the page state until predicate(state) holds; returns the last state and whether it held."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.eval(STATE_JS)
            if predicate(state):
                return state, True
            if time.monotonic() >= deadline:
                return state, False
            time.sleep(0.2)

    def screenshot(self, path):
        metrics = self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics.get("contentSize")
        height = min(MAX_SHOT_HEIGHT, max(HEIGHT, math.ceil(size["height"])))
        width = max(WIDTH, math.ceil(size["width"]))
        shot = self.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
        Path(path).write_bytes(base64.b64decode(shot["data"]))


def check_page(page, url, screenshot, min_refreshes, timeout):
    """The checks of --url; returns the final state."""
    page.navigate(url)
    state, ok = page.wait_for(lambda s: s["refreshes"] >= min_refreshes, timeout)
    if screenshot:
        page.screenshot(screenshot)
    problems = []
    if not ok:
        problems.append(f"the page refreshed {state['refreshes']} times in {timeout:.0f} s, wanted >= {min_refreshes}")
    if state["banner"]:
        problems.append(f"the page shows an error banner: {state['banner']!r}")
    if state["tables"] < 1:
        problems.append("no table.stats")
    if state["servers"] < 1:
        problems.append("no tr.server row in any table.stats")
    if state["polylines"] < 1:
        problems.append("no svg.chart polyline.series")
    elif state["max_points"] < 2:
        problems.append(f"no chart series has 2 points (most: {state['max_points']})")
    problems += page.script_errors()
    if problems:
        raise Failure("; ".join(problems) + f"\npage state: {json.dumps(state)}")
    return state


# ---- --self-test: a stand-in for the proxy's admin listener ----

# Counters the stand-in grows on every request, by how much.
GROWING = {"requests_total": 50, "responses_2xx_total": 50, "sessions_total": 1, "connections_total": 1,
           "pool_reused_total": 49, "bytes_in_total": 6000, "bytes_out_total": 30000}


class StandIn:
    """Serves the page and a stats.json whose numbers change on every request."""

    def __init__(self, tick_ms):
        self.page = PAGE.read_bytes()
        self.base = json.loads(FIXTURE.read_text())
        self.base["info"]["tick_ms"] = tick_ms
        self.hits = 0
        self.failing = False
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?")[0]
                if path == "/":
                    self.reply(200, "text/html; charset=utf-8", owner.page)
                elif path == "/stats.json" and owner.failing:
                    self.reply(503, "text/plain", b"stand-in made to fail\n")
                elif path == "/stats.json":
                    self.reply(200, "application/json", json.dumps(owner.sample()).encode())
                else:
                    self.reply(404, "text/plain", b"not found\n")

            def reply(self, status, ctype, body):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sample(self):
        self.hits += 1
        n = self.hits
        doc = copy.deepcopy(self.base)
        doc["info"]["uptime_sec"] += n
        doc["info"]["total_requests"] += 50 * n

        def walk(o, wave):
            if isinstance(o, dict):
                for k, v in o.items():
                    if k == "recent" and isinstance(v, dict):
                        for p in ("p50", "p90", "p99", "p999", "max", "mean"):
                            v[p] = round(v[p] * wave, 3)
                    elif k in GROWING and isinstance(v, int):
                        o[k] = v + GROWING[k] * n
                    else:
                        walk(v, wave)
            elif isinstance(o, list):
                for i, v in enumerate(o):
                    walk(v, wave * (1 + 0.3 * i))
        walk(doc, 1 + 0.5 * math.sin(n / 3))
        return doc

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def self_test(page, args):
    stand_in = StandIn(tick_ms=250)
    try:
        state = check_page(page, stand_in.url, args.screenshot, args.min_refreshes, args.timeout)
        print(f"stats_page: self-test page ok: {json.dumps(state)}")
        before = state["refreshes"]
        stand_in.failing = True
        state, ok = page.wait_for(lambda s: s["banner"], args.timeout)
        if not ok:
            raise Failure("stats.json answers 503 but the page shows no error banner")
        if state["tables"] < 1 or state["servers"] < 1:
            raise Failure(f"the page lost its tables after a failed refresh: {json.dumps(state)}")
        print(f"stats_page: self-test banner ok: {state['banner']!r}")
        stand_in.failing = False
        state, ok = page.wait_for(lambda s: not s["banner"] and s["refreshes"] > before, args.timeout)
        if not ok:
            raise Failure(f"the page did not recover once stats.json answered again: {json.dumps(state)}")
        print(f"stats_page: self-test recovery ok ({stand_in.hits} stats.json requests served)")
    finally:
        stand_in.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = ap.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="the admin listener's page, e.g. http://127.0.0.1:9900/")
    target.add_argument("--self-test", action="store_true", help="check the page against a built-in stand-in server")
    ap.add_argument("--screenshot", help="where to save a full-page PNG")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the refreshes (default 20)")
    ap.add_argument("--min-refreshes", type=int, default=2)
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    args = ap.parse_args()

    chromium = shutil.which(args.chromium)
    if not chromium:
        print(f"stats_page: no Chromium at {args.chromium} (apt-get install chromium, or --chromium PATH)", file=sys.stderr)
        return 2
    browser = None
    try:
        browser = Chromium(os.path.abspath(chromium), timeout=max(30.0, args.timeout))
        page = Page(browser)
        if args.self_test:
            self_test(page, args)
        else:
            state = check_page(page, args.url, args.screenshot, args.min_refreshes, args.timeout)
            print(f"stats_page: ok: {json.dumps(state)}")
        if args.screenshot:
            print(f"stats_page: screenshot {args.screenshot}")
        return 0
    except Failure as e:
        print(f"stats_page: FAILED: {e}", file=sys.stderr)
        if args.screenshot and os.path.exists(args.screenshot):
            print(f"stats_page: screenshot {args.screenshot}", file=sys.stderr)
        return 1
    except BrowserError as e:
        print(f"stats_page: browser problem: {e}", file=sys.stderr)
        return 2
    finally:
        if browser:
            browser.close()


if __name__ == "__main__":
    sys.exit(main())
