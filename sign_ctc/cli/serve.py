"""The live demo page: a local web server that recognizes signing from a browser's camera or video.

    sign-ctc-serve ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt     # then open the printed address

The page (``sign_ctc/serve/static``) sends the frames it shows; the server tracks them with the extractor's
MediaPipe tracker and recognizes them with the streaming recognizer of ``sign-ctc-live``, one state per
tab (:mod:`sign_ctc.serve`). Binds 127.0.0.1 unless ``host=`` says otherwise (with a warning). The
address is printed and written to ``serve.json`` in the run folder; Ctrl+C stops the server.
"""

from __future__ import annotations

import errno
import ipaddress
import pickle
import socket
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from sign_ctc.atomic import write_text_atomic
from sign_ctc.cli import CONF_DIR, report_error, run_command
from sign_ctc.errors import ConfigError
from sign_ctc.models.checkpoint import CheckpointError
from sign_ctc.run.backend import apply_backend



def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``port``, or on a free port when that one is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        if err.errno != errno.EADDRINUSE or port == 0:
            sock.close()
            raise
        print(f"serve: port {port} is taken; using a free one", file=sys.stderr)
        sock.bind((host, 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def settings_from(cfg: DictConfig):
    """The sessions' shared settings: the checkpoint loaded once, checked for streaming."""
    from sign_ctc.extraction.tracker import HolisticOptions, check_backend
    from sign_ctc.models.checkpoint import load_module
    from sign_ctc.serve.limits import Limits
    from sign_ctc.serve.session import Settings
    from sign_ctc.streaming.recognizer import NotStreamableError, stream_refusal

    if cfg.get("model_path"):
        raise ConfigError("model_path: an exported model runs whole sentences and cannot stream; "
                          "give ckpt_path=<the checkpoint it was exported from>")
    if not cfg.get("ckpt_path"):
        raise ConfigError("give ckpt_path=<checkpoint of a streaming model, e.g. the student>")
    if not Path(str(cfg.ckpt_path)).is_file():
        raise FileNotFoundError(f"checkpoint not found: {cfg.ckpt_path}")
    if cfg.frame_format not in ("png", "jpeg"):
        raise ConfigError(f"frame_format must be png or jpeg, got {cfg.frame_format!r}")
    options = HolisticOptions(model_complexity=int(cfg.model_complexity), refine_face=bool(cfg.refine_face),
                              backend=str(cfg.tracker), model_asset=cfg.get("model_asset"))
    check_backend(options)
    try:
        module = load_module(cfg.ckpt_path).eval()
    except (pickle.UnpicklingError, EOFError, KeyError, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{cfg.ckpt_path} is not a training checkpoint ({first})") from None
    reason = stream_refusal(module)
    if reason:
        raise NotStreamableError(f"this model cannot stream: {reason}")
    limits = Limits(**{k: int(v) for k, v in cfg.limits.items()})
    return Settings(module=module, tracker=options, limits=limits, fps=float(cfg.fps) if cfg.fps else None,
                    default_fps=float(cfg.default_fps),
                    pause_seconds=float(cfg.pause_seconds) if cfg.pause_seconds else None,
                    tentative=bool(cfg.tentative), frame_format=str(cfg.frame_format))


def run(cfg: DictConfig) -> int:
    import json

    apply_backend(cfg, announce=False)
    host = str(cfg.host)
    try:
        settings = settings_from(cfg)
        sock = bind(host, int(cfg.port))
    except (CheckpointError, FileNotFoundError, ValueError, RuntimeError, OSError) as exc:
        return report_error("serve", exc)
    import uvicorn

    from sign_ctc.serve.app import create_app

    if not is_loopback(host):
        print(f"serve: warning: host={host} serves the page and its camera stream to other machines on the "
              f"network, with no authentication; use host=127.0.0.1 (the default) to keep it on this one",
              file=sys.stderr)
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    out = Path(cfg.paths.output_dir)
    write_text_atomic(out / "serve.json", json.dumps({"url": url, "host": host, "port": port}, indent=1) + "\n")
    print(f"serve: open {url} (Ctrl+C stops)", flush=True)
    config = uvicorn.Config(create_app(settings), log_level="warning", ws_max_size=4 * settings.limits.max_message_bytes,
                            ws_ping_interval=None, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
    print("serve: stopped", file=sys.stderr)
    return 0


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="serve")
def main(cfg: DictConfig) -> None:
    run_command("serve", run, cfg)


if __name__ == "__main__":
    main()
