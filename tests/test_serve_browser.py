"""The README's serve command, run as written, with the page in a real browser: headless Chromium
(Debian's, driven by Selenium) whose fake camera plays the real signing video. The page must show the
glosses sign-ctc-live gives on the same video, draw the skeleton, read out a latency, and log no
console error; a screenshot of the page goes to the server's run folder.

The camera file is the video between stretches of an empty frame: Chromium loops it and the page joins at
some frame of the first stretch, so the signing arrives whole, after a pause (a new segment), and ends
with one (its glosses committed) - the same segments sign-ctc-live finds reading that file from frame 0.
It plays at 5 frames a second so that this 2-core machine tracks every frame (none dropped), even busy."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.browser import (bgr_frames, canvas_drawn_pixels, chromium_missing, console_errors, start_chromium,
                           write_y4m)
from tests.helpers import DATA, ROOT, SMALL_CORPUS, compose_cfg

# The README line, verbatim (<run>: the run folder the test makes); tests/test_front_door.py runs the
# other README commands the same way.
SERVE = "sign-ctc-serve ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt"
LIVE = "sign-ctc-live source=<camera file> ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt"
CAMERA_FPS = 5
LEAD, TAIL = 20, 10  # empty frames before (page start-up + a pause) and after (a pause) the signing


def argv(command: str, **fill: str) -> list[str]:
    for key, value in fill.items():
        command = command.replace(key, value)
    args = shlex.split(command)
    return [str(Path(sys.executable).parent / args[0]), *args[1:]]


def camera_file(folder: Path) -> Path:
    frames = bgr_frames(DATA / "signer_58f.mp4")
    empty = np.zeros_like(frames[0])
    return write_y4m([empty] * LEAD + frames + [empty] * TAIL, folder / "signer_58f_camera.y4m", CAMERA_FPS)


@pytest.mark.slow
def test_serve_page_in_a_real_browser_shows_lives_glosses(tmp_path: Path, cache_dir: Path, small_corpus) -> None:
    from tests.test_export import write_tiny_checkpoint

    assert SERVE in (ROOT / "README.md").read_text()  # the README's line, verbatim
    reason = chromium_missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    run = tmp_path / "outputs" / "train" / "runs" / "serve_student"
    cfg = compose_cfg("train", ["logger=none", *SMALL_CORPUS, "model=student", "model.net.blank_bias=-1"], run,
                      cache_dir)
    write_tiny_checkpoint(cfg, run / "checkpoints" / "best.ckpt")
    camera = camera_file(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    live = subprocess.run(argv(LIVE, **{"<run>": run.name, "<camera file>": str(camera)}), cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert live.returncode == 0, live.stderr[-3000:]
    (line,) = [ln for ln in live.stdout.splitlines() if ln.startswith(f"{camera.stem}\t")]
    expected = line.split("\t")[1].split()
    assert expected, "the tiny student should emit glosses on the video"

    server = subprocess.Popen(argv(SERVE, **{"<run>": run.name}), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    driver = None
    try:
        opened = server.stdout.readline()
        assert opened.startswith("serve: open http://127.0.0.1:"), opened + server.stderr.read()[-3000:]
        url = opened.split()[2]
        (serve_run,) = (tmp_path / "outputs" / "serve" / "runs").iterdir()
        assert json.loads((serve_run / "serve.json").read_text())["url"] == url
        driver = start_chromium(camera, tmp_path / "chromium-profile")
        driver.get(url + "?camera")
        deadline = time.time() + 300
        state: dict = {}
        while time.time() < deadline:  # the signing's segment ended: every one of its glosses committed
            state = driver.execute_script("return {glosses: signCtc.committed.map(g => g.gloss), "
                                          "segments: signCtc.segments, dropped: signCtc.dropped, errors: signCtc.errors, fps: signCtc.streamFps}")
            if state["segments"] >= 3:
                break
            time.sleep(1)
        assert state["segments"] >= 3, state
        assert state["fps"] == CAMERA_FPS, state  # the camera's rate, as sign-ctc-live reads the file's
        assert state["glosses"][: len(expected)] == expected and state["errors"] == [], state
        shown = driver.find_element("id", "committed").text.split()
        assert shown[: len(expected)] == expected  # on the page, not only in its state
        assert canvas_drawn_pixels(driver) > 1000  # the skeleton is drawn
        latency = driver.find_element("id", "latency").text
        assert float(latency) > 0, latency
        assert float(driver.find_element("id", "fps").text) > 0
        assert console_errors(driver) == []
        driver.save_screenshot(str(serve_run / "serve.png"))
        assert (serve_run / "serve.png").stat().st_size > 10_000
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.communicate(timeout=30)
