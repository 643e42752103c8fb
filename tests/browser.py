"""Headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium) with a fake camera
fed from a video: what the live page's test and bench/bench_serve.py share. No browser is downloaded:
Selenium is pointed at /usr/bin/chromium and /usr/bin/chromedriver."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromedriver")


def chromium_missing() -> str | None:
    """Why the browser cannot run here (None: it can)."""
    for path in CHROMIUM:
        if not Path(path).is_file() and not shutil.which(Path(path).name):
            return f"{path} is missing: apt-get install -y chromium chromium-driver"
    return None


def bgr_frames(video: Path) -> list[np.ndarray]:
    """Every frame of a video, BGR as OpenCV writes and encodes them (read by the extractor's reader)."""
    from sign_ctc.extraction.frames import rgb_video_frames

    frames, _, _ = rgb_video_frames(str(video))
    return [np.ascontiguousarray(rgb[..., ::-1]) for rgb in frames]


def write_y4m(frames_bgr: list[np.ndarray], path: Path, fps: int) -> Path:
    """A YUV4MPEG2 file (4:2:0, BT.601 limited range, as OpenCV's I420 conversion gives) of BGR frames:
    Chromium's fake camera plays it in a loop, and OpenCV reads it back for sign-ctc-live."""
    import cv2

    h, w = frames_bgr[0].shape[:2]
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420mpeg2\n".encode())
        for frame in frames_bgr:
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


def start_chromium(camera_file: Path, profile: Path):
    """A headless Chromium whose camera is ``camera_file`` (allowed without asking); the closed network
    refuses Chromium's background connections, so those are switched off."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,900", f"--user-data-dir={profile}",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                 f"--use-file-for-fake-video-capture={camera_file}", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMIUM[1]), options=options)


def console_errors(driver) -> list[str]:
    """The browser console's errors since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def canvas_drawn_pixels(driver) -> int:
    """Pixels of the skeleton canvas that are not transparent."""
    return driver.execute_script(
        "const c = document.getElementById('skeleton'); if (!c.width || !c.height) return 0;"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
        "for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;")
