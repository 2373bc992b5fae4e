"""The HTML report in a real headless Chromium: it renders, draws something, runs no script
the page did not bring (the XSS payloads in the data stay text), and its Content-Security-Policy
blocks an injected script. Skipped when no Chromium is installed (``make browser`` installs it
from Debian when run as root)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

import _report_data as d
from raceway.report import html

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
          "chromium-headless-shell")


def _chromium() -> Optional[str]:
    override = os.environ.get("RACEWAY_CHROMIUM")
    if override:
        return override
    return next((found for name in _NAMES if (found := shutil.which(name))), None)


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium binary found (looked for " + ", ".join(_NAMES) + " and "
           "$RACEWAY_CHROMIUM); `make browser` installs Debian's chromium when run as root")


def _run(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
           "--disable-extensions", "--hide-scrollbars", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1800", *args,
           page.as_uri()]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.insert(1, "--no-sandbox")        # Chromium refuses to run as root with its sandbox
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)


def _dump_dom(tmp_path: Path, page: Path) -> str:
    done = _run(tmp_path, page, "--dump-dom", "--virtual-time-budget=2000")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "</html>" in done.stdout, done.stderr[-2000:]
    return done.stdout


def _title(dom: str) -> str:
    m = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert m, dom[:500]
    return m.group(1)


def read_png(path: Path) -> Tuple[int, int, List[bytes], int]:
    """(width, height, rows of bytes, bytes per pixel) of an 8-bit non-interlaced RGB or RGBA
    PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: List[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r) for r in rows], bpp


@pytest.fixture
def page(tmp_path: Path) -> Path:
    path = tmp_path / "report.html"
    path.write_text(html.render(d.races(d.DATA_RACE, d.LOST_UPDATE, d.hostile()), d.batches()),
                    encoding="utf-8")
    return path


def test_page_renders_and_no_payload_runs(tmp_path, page):
    dom = _dump_dom(tmp_path, page)
    assert _title(dom) == "raceway: 3 races (1 lost update, 1 critical data race, 1 warning)"
    assert "PWNED" not in _title(dom)
    assert not re.search(r"<body[^>]*data-pwned", dom)
    assert "<img" not in dom.lower() and "<script" not in dom.lower()
    # The payloads are there, as text.
    assert "&lt;script&gt;document.title='PWNED'&lt;/script&gt;" in dom
    assert "onerror=" in dom
    # The policy the page declares is in the parsed document.
    meta = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)"', dom)
    assert meta and meta.group(1).startswith("default-src 'none'; style-src 'unsafe-inline'")
    assert dom.count('<svg class="timeline"') == 3


def test_csp_blocks_a_script_that_slipped_in(tmp_path, page):
    injected = "<script>document.title='INJECTED'</script>"
    text = page.read_text(encoding="utf-8")
    bad = tmp_path / "injected.html"
    bad.write_text(text.replace("<main>", "<main>" + injected, 1), encoding="utf-8")
    assert _title(_dump_dom(tmp_path, bad)) != "INJECTED"
    # The same injection without the policy does run: the check above can see a script run.
    meta = re.search(r'<meta http-equiv="Content-Security-Policy"[^>]*>', text).group(0)
    open_page = tmp_path / "no-csp.html"
    open_page.write_text(text.replace(meta, "").replace("<main>", "<main>" + injected, 1),
                         encoding="utf-8")
    assert _title(_dump_dom(tmp_path, open_page)) == "INJECTED"


def test_screenshot_shows_the_drawing(tmp_path, page):
    shot = tmp_path / "report.png"
    done = _run(tmp_path, page, f"--screenshot={shot}")
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    width, height, rows, bpp = read_png(shot)
    assert (width, height) == (1280, 1800)
    colours, red, dark = set(), 0, 0
    for row in rows[::2]:
        for x in range(0, width * bpp, bpp * 2):
            r, g, b = row[x], row[x + 1], row[x + 2]
            colours.add((r, g, b))
            red += r > 190 and g < 80 and b < 80          # the racing marks, the missing edge
            dark += r + g + b < 150                       # text, the header
    assert len(colours) > 100, "the screenshot is (nearly) blank"
    assert red > 200, "no red racing marks drawn"
    assert dark > 2000, "no text drawn"
    keep = os.environ.get("RACEWAY_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
