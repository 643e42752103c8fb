"""The web app: the page (static files shipped in the package) and one WebSocket per browser tab.

Starlette (through FastAPI) does the HTTP and WebSocket work, uvicorn serves it. Each connection gets a
:class:`~sign_ctc.serve.session.Session`; two tasks serve it: a receiver that reads every message at
once (so a slow tracker never stalls the socket) and checks it against the limits, and a worker that
runs the session in a thread, in order, one item at a time. When camera frames arrive faster than the
tracker takes them, the oldest waiting frame is dropped and counted, its place in the stream kept by the
last landmarks (as ``sign-ctc-live realtime=true`` does). A bad message gets an error message to its
client only; other clients never see it. The session is closed and forgotten when the socket closes.
"""

import asyncio
import itertools
import logging
from collections import deque
from importlib.resources import files
from pathlib import Path
from typing import Any

from sign_ctc.serve.limits import DROPPED, FRAME, LANDMARKS, MessageError, check_size, parse_command, parse_landmarks
from sign_ctc.serve.session import Item, Session, Settings

log = logging.getLogger(__name__)
# Items a client may have waiting; past it the socket is not read until the worker catches up (TCP holds
# the sender back), so a client streaming landmarks faster than they are recognized cannot fill memory.
INBOX_LIMIT = 16


def static_dir() -> Path:
    """The page's files, inside the installed package (a checkout or a wheel alike)."""
    return Path(str(files("sign_ctc.serve") / "static"))


def to_item(message: dict[str, Any], settings: Settings) -> Item:
    """One received ASGI WebSocket message as an :class:`Item` (or :class:`MessageError`)."""
    limits = settings.limits
    data, text = message.get("bytes"), message.get("text")
    if data is not None:
        check_size(len(data), limits)
        if not data or data[0] not in (FRAME, LANDMARKS, DROPPED):
            raise MessageError("binary message must start with b'F' (an encoded frame), b'L' (landmarks) "
                               "or b'D' (a frame not sent)")
        if data[0] == DROPPED:
            if len(data) != 1:
                raise MessageError("a b'D' message is that one byte")
            return Item("dropped")
        if data[0] == LANDMARKS:
            points, presence = parse_landmarks(data[1:], limits)
            return Item("landmarks", points=points, presence=presence)
        return Item("frame", payload=bytes(data[1:]))
    if text is not None:
        msg = parse_command(text, limits)
        return Item(msg["type"], fps=float(msg["fps"]) if msg.get("fps") is not None else None)
    raise MessageError("empty message")


class Connection:
    """One client's socket, session and waiting items."""

    def __init__(self, websocket: Any, session: Session, settings: Settings):
        self.ws = websocket
        self.session = session
        self.settings = settings
        self.inbox: deque[Item] = deque()
        self.wake = asyncio.Event()
        self.send_lock = asyncio.Lock()
        self.room = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.ws.send_json(message)

    async def receive(self) -> None:
        """Every message read as it comes; bad ones answered with an error; frames beyond the lag dropped."""
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                item = to_item(message, self.settings)
            except MessageError as err:
                await self.send({"type": "error", "message": str(err)})
                continue
            if item.kind == "frame":
                waiting = [i for i, it in enumerate(self.inbox) if it.kind == "frame"]
                if len(waiting) >= self.settings.limits.max_lag_frames:
                    self.inbox[waiting[0]] = Item("dropped")
            while len(self.inbox) >= INBOX_LIMIT:
                self.room.clear()
                await self.room.wait()
            self.inbox.append(item)
            self.wake.set()

    async def work(self) -> None:
        from anyio import to_thread

        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.inbox:
                item = self.inbox.popleft()
                self.room.set()
                try:
                    replies = await to_thread.run_sync(self.session.process, item)
                except MessageError as err:
                    replies = [{"type": "error", "message": str(err)}]
                except Exception as err:  # this client's stream only; the server goes on
                    log.exception("client stream failed on a %s message", item.kind)
                    replies = [{"type": "error", "message": f"{item.kind} failed: {type(err).__name__}: {err}"}]
                for reply in replies:
                    await self.send(reply)


def create_app(settings: Settings) -> Any:
    """The FastAPI app (this module has no ``from __future__ import annotations``: FastAPI reads the
    endpoints' annotations as classes): ``/`` the page, ``/static`` its files, ``/ws`` the stream. ``app.state.sessions``
    holds the open sessions (by connection number)."""
    from fastapi import FastAPI, WebSocket, WebSocketDisconnect
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles
    from anyio import to_thread

    app = FastAPI(title="sign-ctc live demo", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sessions = {}
    app.state.settings = settings
    numbers = itertools.count()
    static = static_dir()
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(static / "index.html", headers={"Cache-Control": "no-store"})

    @app.websocket("/ws")
    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        number = next(numbers)
        session = await to_thread.run_sync(Session, settings)
        app.state.sessions[number] = session
        conn = Connection(websocket, session, settings)
        worker = asyncio.ensure_future(conn.work())
        try:
            await conn.send({"type": "ready", "fps": settings.fps, "default_fps": settings.default_fps,
                             "vocabulary": len(session.recognizer.vocab), "limits": {
                                 "max_message_bytes": settings.limits.max_message_bytes,
                                 "max_pixels": settings.limits.max_pixels,
                                 "max_landmark_frames": settings.limits.max_landmark_frames,
                                 "max_lag_frames": settings.limits.max_lag_frames,
                                 "frame_format": settings.frame_format}})
            await conn.receive()
        except WebSocketDisconnect:
            pass
        finally:
            worker.cancel()
            try:
                await worker
            except (asyncio.CancelledError, Exception):
                pass
            await to_thread.run_sync(session.close)
            del app.state.sessions[number]  # the last reference: the recognizer's state goes with it

    return app
