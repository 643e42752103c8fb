"""The live demo server (sign_ctc/serve) over real sockets: a uvicorn server in this process, clients
speaking WebSocket (the ``websockets`` library). Each client's glosses equal a StreamingRecognizer fed the
same frames in the same chunks; bad messages get an error to their client only; sessions are freed."""

from __future__ import annotations

import gc
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

from sign_ctc.extraction.tracker import HolisticOptions
from sign_ctc.features.pose_io import read_pose
from sign_ctc.serve.limits import Limits
from sign_ctc.serve.session import Settings
from sign_ctc.streaming.recognizer import StreamingRecognizer
from tests.helpers import DATA, ROOT
from tests.test_streaming import student_module

pytest.importorskip("fastapi")
FPS = 25.0
CHUNK = 10
LIMITS = Limits(max_message_bytes=500_000, max_landmark_frames=64)


@pytest.fixture(scope="module")
def module():
    return student_module(seed=5, modalities=("pose", "hands", "face", "temporal"), sharpen=4.0)


@pytest.fixture(scope="module")
def server(module):
    """(ws url, app) of a real uvicorn server on a free port, in a thread of this process."""
    import uvicorn

    from sign_ctc.serve.app import create_app

    app = create_app(Settings(module=module, tracker=HolisticOptions(), limits=LIMITS, default_fps=FPS))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", ws_max_size=4 * LIMITS.max_message_bytes, lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    yield f"ws://127.0.0.1:{sock.getsockname()[1]}/ws", app
    srv.should_exit = True
    thread.join(10)


def inputs(n: int):
    """``n`` different real streams: stretches of a real signer (97 frames) at different offsets and lengths."""
    lm = read_pose(DATA / "signer_holistic_97f.pose")
    return [(lm.points[i * 4 : 57 + i * 5], lm.presence[i * 4 : 57 + i * 5]) for i in range(n)]


def landmarks_message(points: np.ndarray, presence: np.ndarray) -> bytes:
    return b"L" + points.astype("<f4").tobytes() + presence.astype(np.uint8).tobytes()


def expected(module, points, presence, chunk: int = CHUNK) -> list[dict]:
    """What a StreamingRecognizer fed the same chunks commits (glosses with times)."""
    rec = StreamingRecognizer(module, fps=FPS, pause_frames=round(FPS))
    out = []
    for i in range(0, len(points), chunk):
        out += rec.push(points[i : i + chunk], presence[i : i + chunk]).committed
    out += rec.end().committed
    return [g.as_dict() for g in out]


def stream(url: str, points, presence, errors: list | None = None, chunk: int = CHUNK) -> list[dict]:
    """One client: hello, the landmarks in chunks, end; the committed glosses (without the frame index)."""
    from websockets.sync.client import connect

    got = []
    with connect(url, max_size=None) as ws:
        assert json.loads(ws.recv())["type"] == "ready"
        ws.send(json.dumps({"type": "hello", "fps": FPS}))
        for i in range(0, len(points), chunk):
            ws.send(landmarks_message(points[i : i + chunk], presence[i : i + chunk]))
        ws.send(json.dumps({"type": "end"}))
        while True:
            msg = json.loads(ws.recv())
            if msg["type"] == "error":
                (errors if errors is not None else []).append(msg["message"])
                continue
            got += [{k: v for k, v in g.items() if k != "frame"} for g in msg.get("committed", [])]
            if msg.get("ended"):
                return got


def test_eight_concurrent_clients_each_get_their_own_glosses(server, module) -> None:
    url, app = server
    streams = inputs(8)
    want = [expected(module, p, q) for p, q in streams]
    assert all(want) and len({json.dumps(w) for w in want}) > 1  # glosses, and not all alike
    results: dict[int, list] = {}
    barrier = threading.Barrier(8)

    def client(i: int) -> None:
        barrier.wait()
        results[i] = stream(url, *streams[i])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [results.get(i) for i in range(8)] == want
    deadline = time.time() + 5
    while app.state.sessions and time.time() < deadline:
        time.sleep(0.02)
    assert app.state.sessions == {}


def test_a_client_sending_faster_than_recognition_is_held_back_not_dropped(server, module) -> None:
    """Frame by frame, 57 messages at once: more than the inbox holds (the socket is not read meanwhile);
    every frame is recognized, the glosses as a recognizer fed frame by frame."""
    from sign_ctc.serve.app import INBOX_LIMIT

    url, _ = server
    points, presence = inputs(1)[0]
    assert len(points) > 2 * INBOX_LIMIT
    assert stream(url, points, presence, chunk=1) == expected(module, points, presence, chunk=1)


GARBAGE = {
    b"": "binary message must start with",
    b"\x00\x01garbage": "binary message must start with",
    b"Dx": "that one byte",
    b"L" + b"\x00" * 1001: "expected k * 6520 bytes",
    b"L" + np.full((1, 543, 3), np.nan, "<f4").tobytes() + b"\x01" * 4: "NaN or infinite",
    b"L" + np.zeros((1, 543, 3), "<f4").tobytes() + b"\x02" * 4: "presence bytes must be 0 or 1",
    b"L" + np.zeros((65, 543, 3), "<f4").tobytes() + b"\x00" * 260: "at most 64 in one message",
    b"F" + b"\xff" * 600_000: "refused: the limit is 500000 bytes",
    b"Fnot an image": "could not be decoded as an image",
    "not json": "is not JSON",
    '{"type": "format c:"}': "type one of hello, end, clear",
    '{"type": "hello", "fps": "fast"}': "fps must be a number",
    '["hello"]': "type one of",
}


def test_garbage_gets_errors_and_does_not_disturb_another_client(server, module) -> None:
    from websockets.sync.client import connect

    url, _ = server
    (good_in, bad_in) = inputs(2)
    good: list = []
    thread = threading.Thread(target=lambda: good.extend(stream(url, *good_in)))
    with connect(url, max_size=None) as ws:
        assert json.loads(ws.recv())["type"] == "ready"
        thread.start()
        for message, says in GARBAGE.items():
            ws.send(message)
            reply = json.loads(ws.recv())
            assert reply["type"] == "error" and says in reply["message"], (message[:20], reply)
            if isinstance(message, bytes) and message.startswith(b"F") and says.startswith("could not"):  # its place kept: the stream's timing holds
                assert json.loads(ws.recv())["type"] == "update"
        ws.send(json.dumps({"type": "clear"}))
        assert json.loads(ws.recv())["type"] == "cleared"
    thread.join(60)
    assert good == expected(module, *good_in)
    errors: list = []
    assert stream(url, *bad_in, errors=errors) == expected(module, *bad_in) and errors == []  # the server goes on


def test_a_camera_frame_is_tracked_and_its_landmarks_come_back(server) -> None:
    import cv2
    from websockets.sync.client import connect

    url, app = server
    cap = cv2.VideoCapture(str(DATA / "signer_58f.mp4"))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    with connect(url, max_size=None) as ws:
        json.loads(ws.recv())
        ws.send(b"F" + cv2.imencode(".png", bgr)[1].tobytes())
        msg = json.loads(ws.recv())
        session = next(iter(app.state.sessions.values()))
        tracker, recognizer = weakref.ref(session.tracker), weakref.ref(session.recognizer)
    assert msg["type"] == "update" and msg["frame"] == 0 and msg["presence"][0] is True  # the signer's body
    points = np.array(msg["points"])
    assert points.shape == (543, 2) and (0 < points[0]).all() and (points[0] < 1).all()  # the nose, in view
    deadline = time.time() + 5
    while app.state.sessions and time.time() < deadline:
        time.sleep(0.02)
    del session
    while recognizer() is not None and time.time() < deadline + 5:
        gc.collect()
        time.sleep(0.05)
    assert app.state.sessions == {} and recognizer() is None  # freed on disconnect
    assert tracker() is None or tracker()._holistic._graph is None  # MediaPipe's graph closed


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, cache_dir, small_corpus) -> Path:
    """A small untrained student checkpoint, saved as train.py saves it."""
    from tests.helpers import SMALL_CORPUS, compose_cfg
    from tests.test_export import write_tiny_checkpoint

    run = tmp_path_factory.mktemp("serve_student")
    cfg = compose_cfg("train", ["logger=none", *SMALL_CORPUS, "model=student", "model.net.blank_bias=-1"], run,
                      cache_dir)
    return write_tiny_checkpoint(cfg, run / "checkpoints" / "best.ckpt")


def test_host_defaults_to_loopback_and_warns_otherwise(tmp_path: Path, tiny_ckpt: Path) -> None:
    from omegaconf import OmegaConf

    from sign_ctc.cli.serve import bind, is_loopback

    cfg = OmegaConf.load(ROOT / "sign_ctc" / "conf" / "serve.yaml")
    assert cfg.host == "127.0.0.1" and is_loopback(cfg.host) and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    taken = bind("127.0.0.1", 0)
    other = bind("127.0.0.1", taken.getsockname()[1])  # taken: a free one instead
    assert other.getsockname()[0] == "127.0.0.1" and other.getsockname()[1] != taken.getsockname()[1]
    taken.close(), other.close()
    ckpt = tiny_ckpt
    proc = subprocess.Popen([sys.executable, "-m", "sign_ctc.cli.serve", f"ckpt_path={ckpt}", "host=0.0.0.0", "port=0",
                             f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line:
            proc.wait(30)
        assert line.startswith("serve: open http://0.0.0.0:"), proc.stderr.read()[-3000:] if not line else line
        record = json.loads((tmp_path / "run" / "serve.json").read_text())
        assert record["host"] == "0.0.0.0" and f":{record['port']}/" in line
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "warning: host=0.0.0.0 serves the page" in err


def test_bad_arguments_get_one_clear_error(tmp_path: Path, cache_dir: Path, capsys) -> None:
    """The command's checks, in this process (sign-ctc-serve's run() on the composed config): exit 2 and
    one line that says what to give."""
    from sign_ctc.cli.serve import run
    from tests.helpers import compose_cfg

    for args, says in ((["ckpt_path=/nowhere/best.ckpt"], "checkpoint not found: /nowhere/best.ckpt"),
                       (["model_path=best.onnx"], "cannot stream; give ckpt_path"),
                       ([], "give ckpt_path"),
                       ([f"ckpt_path={__file__}", "frame_format=gif"], "frame_format must be png or jpeg"),
                       ([f"ckpt_path={__file__}"], "is not a training checkpoint")):
        assert run(compose_cfg("serve", args, tmp_path, cache_dir)) == 2
        err = capsys.readouterr().err
        assert err.startswith("serve: error: ") and says in err and len(err.splitlines()) == 1, err


@pytest.mark.slow
def test_thousand_connections_leave_memory_where_it_was(server) -> None:
    """1,000 connect / stream / disconnect cycles: the server process's RSS stays within 30 MB."""
    url, app = server
    points, presence = inputs(1)[0]
    points, presence = points[:20], presence[:20]

    def rss_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20

    for _ in range(30):  # warm: thread pools, allocator arenas
        stream(url, points, presence)
    gc.collect()
    start = rss_mb()
    for _ in range(1000):
        stream(url, points, presence)
    gc.collect()
    time.sleep(0.5)
    assert app.state.sessions == {}
    assert rss_mb() - start < 30, (start, rss_mb())
