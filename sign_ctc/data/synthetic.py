"""The embedded synthetic signing corpus: generated from a seed, cached, written as real corpora are.

Each gloss is a distinct movement of a rendered MediaPipe Holistic skeleton: a wrist trajectory
in signing space relative to the body (straight, curved or circling), a handshape (finger
flexion, possibly opening or closing), a hand orientation, one or two hands, and for some glosses a
mouth or eyebrow movement. Sentences of 2-10 glosses come from a small weather-report grammar,
signs last 6-20 frames at 25 fps and are joined by co-articulated transitions. Signers differ in
body size, position, speed, signing-space size and dominant hand; dev and test signers are not in
train. Real faults are added: jitter, hands undetected in bursts (mostly when resting), and frames
where nothing is detected.

A harder corpus comes from the same generator (``sign_ctc/conf/data/synthetic_hard.yaml``): a larger
lexicon (``lexicon_size``), longer sentences (``min_glosses``/``max_glosses``), more signers and
more detection noise (``detection_noise`` scales jitter and lost hands and frames).

The corpus is written as ``{split}.corpus.csv`` (PHOENIX-2014 form) plus ``{split}/{id}.pose``
(pose-format, 543 points, pixel coordinates, undetected parts masked with confidence 0), so it is
read by exactly the same code as a real extracted corpus.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sign_ctc.atomic import write_text_atomic
from sign_ctc.data.corpus import SPLITS, Corpus, Sentence, write_phoenix2014
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.features.layout import NUM_POINTS, RAW_PARTS

GENERATOR_VERSION = 1

# A weather-report lexicon (PHOENIX-like glosses) grouped by grammatical role.
LEXICON: dict[str, tuple[str, ...]] = {
    "TIME": ("MORGEN", "HEUTE", "ABEND", "NACHT", "MONTAG", "WOCHENENDE", "SPAETER"),
    "SUBJ": ("REGEN", "SONNE", "WIND", "SCHNEE", "GEWITTER", "NEBEL", "WOLKE", "FROST", "HAGEL",
             "TEMPERATUR"),
    "ADJ": ("STARK", "SCHWACH", "KALT", "WARM", "MILD", "FREUNDLICH", "TRUEB", "HEISS"),
    "LOC": ("NORD", "SUED", "OST", "WEST", "KUESTE", "BERG", "REGION", "MEER", "ALPEN", "FLUSS",
            "STADT", "MITTE"),
    "VERB": ("KOMMEN", "STEIGEN", "SINKEN", "BLEIBEN", "ZIEHEN", "SCHEINEN", "FALLEN", "WEHEN",
             "AUFLOCKERN", "ENTSTEHEN", "WERDEN", "ERWARTEN"),
    "ADV": ("NICHT", "AUCH", "MEHR", "VIEL", "WENIG", "WIEDER"),
    "Q": ("WIE", "WAS", "WO", "WANN", "WARUM"),
}

# Finger flexion prototypes (thumb, index, middle, ring, pinky): 0 = straight, 1 = fully bent.
HANDSHAPES = np.array([
    [0.0, 0.0, 0.0, 0.0, 0.0],  # flat B
    [1.0, 1.0, 1.0, 1.0, 1.0],  # fist A/S
    [0.8, 0.0, 1.0, 1.0, 1.0],  # index 1
    [0.8, 0.0, 0.0, 1.0, 1.0],  # V
    [0.0, 0.0, 1.0, 1.0, 0.0],  # Y-ish
    [0.5, 0.5, 0.5, 0.5, 0.5],  # C
    [0.0, 1.0, 1.0, 1.0, 1.0],  # thumb up
    [0.8, 0.0, 0.0, 0.0, 1.0],  # W
    [1.0, 0.9, 0.0, 0.0, 0.0],  # F/OK
])
REST = np.array([0.45, 1.35])  # resting wrist (dominant side, body units below the shoulders)
HAND_SIZE = 0.42  # wrist to middle fingertip, in shoulder widths
FINGER_BASE_ANGLE = np.radians([55.0, 18.0, 0.0, -14.0, -28.0])
FINGER_BASE_DIST = np.array([0.18, 0.45, 0.46, 0.44, 0.40])
FINGER_SEGMENTS = np.array([[0.22, 0.16, 0.13], [0.24, 0.14, 0.11], [0.26, 0.16, 0.12],
                            [0.24, 0.15, 0.11], [0.19, 0.11, 0.09]])


@dataclass
class Gloss:
    name: str
    start: np.ndarray  # dominant wrist start (x toward the dominant side, y down), shoulder widths
    end: np.ndarray
    curve: float  # perpendicular bow of the path
    circle: float  # radius of a circling movement (0: none)
    cycles: float
    shape_from: int
    shape_to: int
    angle: float  # hand orientation (radians; 0 = fingers up)
    hands: str  # "one", "sym" (mirrored) or "base" (non-dominant hand held still)
    face: str  # "none", "mouth" or "brows"
    duration: int  # frames at speed 1


@dataclass
class Signer:
    id: str
    centre: np.ndarray  # shoulder midpoint, pixels
    scale: float  # shoulder width, pixels
    speed: float
    space: float  # signing-space size
    offset: np.ndarray  # habitual shift of the signing space
    dominant: str  # "right" or "left"


def _face_template() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """468 face points on an oval (fixed, not seeded by the corpus), with mouth and brow sets."""
    rng = np.random.default_rng(468)
    ang = rng.uniform(0, 2 * np.pi, 468)
    rad = np.sqrt(rng.uniform(0, 1, 468))
    pts = np.stack([0.2 * rad * np.cos(ang), -0.8 + 0.27 * rad * np.sin(ang)], -1)
    mouth = (pts[:, 1] > -0.66) & (pts[:, 1] < -0.58) & (np.abs(pts[:, 0]) < 0.09)
    brows = (pts[:, 1] < -0.92) & (pts[:, 1] > -1.0) & (np.abs(pts[:, 0]) > 0.03)
    return pts, mouth, brows


FACE_POINTS, MOUTH, BROWS = _face_template()
# Pose points (MediaPipe order) that do not depend on the arms, in shoulder widths.
POSE_FIXED = {
    0: (0.0, -0.78), 1: (-0.05, -0.86), 2: (-0.08, -0.86), 3: (-0.11, -0.86), 4: (0.05, -0.86),
    5: (0.08, -0.86), 6: (0.11, -0.86), 7: (-0.2, -0.82), 8: (0.2, -0.82), 9: (-0.05, -0.66),
    10: (0.05, -0.66), 11: (0.5, 0.0), 12: (-0.5, 0.0), 23: (0.32, 1.55), 24: (-0.32, 1.55),
    25: (0.33, 2.4), 26: (-0.33, 2.4), 27: (0.33, 3.2), 28: (-0.33, 3.2), 29: (0.34, 3.3),
    30: (-0.34, 3.3), 31: (0.3, 3.4), 32: (-0.3, 3.4),
}


def _grammar_sentence(rng: np.random.Generator, lexicon: dict[str, tuple[str, ...]] = LEXICON,
                      min_glosses: int = 0, max_glosses: int = 10) -> list[str]:
    """A weather-report sentence; clauses are added until it has ``min_glosses`` (0: the default
    corpus's 2-10 gloss sentences), then it is cut at ``max_glosses``."""
    def pick(role: str) -> str:
        return str(rng.choice(lexicon[role]))

    def clause(first: bool) -> list[str]:
        words = []
        if first and rng.random() < 0.5:
            words.append(pick("TIME"))
        words.append(pick("SUBJ"))
        if rng.random() < 0.5:
            words.append(pick("ADJ"))
        for _ in range(int(rng.integers(0, 3))):
            words.append(pick("LOC"))
        words.append(pick("VERB"))
        if rng.random() < 0.25:
            words.append(pick("ADV"))
        return words

    words = clause(True)
    if rng.random() < 0.15:
        words = [pick("Q"), *words]
    if len(words) <= 5 and rng.random() < 0.4:
        words += clause(False)
    while len(words) < min_glosses:
        words += clause(False)
    return words[:max_glosses]


def _roles(size: int | None) -> dict[str, tuple[str, ...]]:
    """The lexicon by role, grown to ``size`` glosses (None: the 60 built-in ones) by adding
    numbered variants (``REGEN2``, ``NORD3``, ...), each a sign of its own, to every role but the
    question words in turn."""
    roles = {role: list(words) for role, words in LEXICON.items()}
    total = sum(map(len, roles.values()))
    if size is None or size <= total:
        if size is not None and size < total:
            raise ValueError(f"lexicon_size={size} is smaller than the built-in lexicon ({total} glosses)")
        return {role: tuple(words) for role, words in roles.items()}
    growing = [role for role in roles if role != "Q"]
    k = 0
    while total < size:
        role = growing[k % len(growing)]
        base = LEXICON[role][(k // len(growing)) % len(LEXICON[role])]
        roles[role].append(f"{base}{2 + k // (len(growing) * len(LEXICON[role]))}")
        total += 1
        k += 1
    return {role: tuple(words) for role, words in roles.items()}


def _make_lexicon(rng: np.random.Generator, roles: dict[str, tuple[str, ...]] = LEXICON) -> dict[str, Gloss]:
    names = [g for role in roles.values() for g in role]
    glosses = {}
    for name in names:
        start = np.array([rng.uniform(-0.5, 0.7), rng.uniform(-1.0, 0.9)])
        delta = rng.normal(size=2)
        delta = delta / np.linalg.norm(delta) * rng.uniform(0.2, 0.6)
        kind = rng.choice(["line", "curve", "circle"], p=[0.4, 0.35, 0.25])
        glosses[name] = Gloss(
            name=name, start=start, end=start + delta,
            curve=float(rng.uniform(-0.35, 0.35)) if kind == "curve" else 0.0,
            circle=float(rng.uniform(0.08, 0.18)) if kind == "circle" else 0.0,
            cycles=float(rng.choice([1.0, 1.5, 2.0])),
            shape_from=int(rng.integers(len(HANDSHAPES))),
            shape_to=int(rng.integers(len(HANDSHAPES))) if rng.random() < 0.3 else -1,
            angle=float(rng.choice(np.radians([-60, -30, 0, 30, 60, 90, 150]))),
            hands=str(rng.choice(["one", "sym", "base"], p=[0.6, 0.25, 0.15])),
            face=str(rng.choice(["none", "mouth", "brows"], p=[0.6, 0.2, 0.2])),
            duration=int(rng.integers(8, 16)),
        )
        if glosses[name].shape_to < 0:
            glosses[name].shape_to = glosses[name].shape_from
    return glosses


def _make_signers(rng: np.random.Generator, n: int, left_handed: tuple[int, ...]) -> list[Signer]:
    return [
        Signer(
            id=f"S{i:02d}",
            centre=np.array([rng.uniform(95, 115), rng.uniform(100, 125)]),
            scale=float(rng.uniform(48, 66)),
            speed=float(rng.uniform(0.8, 1.25)),
            space=float(rng.uniform(0.88, 1.12)),
            offset=rng.normal(scale=0.05, size=2),
            dominant="left" if i in left_handed else "right",
        )
        for i in range(n)
    ]


# Per-frame parameter vector of the articulators.
P_DOM, P_ND, P_DFLEX, P_NFLEX, P_DANG, P_NANG, P_MOUTH, P_BROWS = (
    slice(0, 2), slice(2, 4), slice(4, 9), slice(9, 14), 14, 15, 16, 17)
N_PARAMS = 18


def _rest_state() -> np.ndarray:
    s = np.zeros(N_PARAMS)
    s[P_DOM] = REST
    s[P_ND] = REST
    s[P_DFLEX] = 0.3
    s[P_NFLEX] = 0.3
    s[P_DANG] = s[P_NANG] = np.pi  # fingers hanging down
    return s


def _sign_frames(g: Gloss, signer: Signer, rng: np.random.Generator) -> np.ndarray:
    dur = int(np.clip(round(g.duration / signer.speed * rng.uniform(0.85, 1.15)), 6, 20))
    t = np.linspace(0.0, 1.0, dur)
    start = g.start * signer.space + signer.offset + rng.normal(scale=0.04, size=2)
    end = g.end * signer.space + signer.offset + rng.normal(scale=0.04, size=2)
    path = start[None] + (end - start)[None] * t[:, None]
    d = end - start
    normal = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-9)
    path += normal[None] * (g.curve * np.sin(np.pi * t))[:, None]
    if g.circle > 0:
        phase = 2 * np.pi * g.cycles * t
        path += g.circle * np.stack([np.cos(phase) - 1, np.sin(phase)], -1)
    out = np.tile(_rest_state(), (dur, 1))
    out[:, P_DOM] = path
    shape = (1 - t)[:, None] * HANDSHAPES[g.shape_from] + t[:, None] * HANDSHAPES[g.shape_to]
    out[:, P_DFLEX] = np.clip(shape + rng.normal(scale=0.05, size=5), 0, 1)
    out[:, P_DANG] = g.angle
    if g.hands == "sym":
        out[:, P_ND] = path
        out[:, P_NFLEX] = out[:, P_DFLEX]
        out[:, P_NANG] = g.angle
    elif g.hands == "base":
        out[:, P_ND] = end + np.array([-0.1, 0.18])
        out[:, P_NFLEX] = HANDSHAPES[0]
        out[:, P_NANG] = np.radians(90)
    bump = np.sin(np.pi * t)
    if g.face == "mouth":
        out[:, P_MOUTH] = bump
    elif g.face == "brows":
        out[:, P_BROWS] = bump
    return out


def _transition(a: np.ndarray, b: np.ndarray, frames: int) -> np.ndarray:
    t = np.linspace(0, 1, frames + 2)[1:-1]
    s = t * t * (3 - 2 * t)  # smoothstep: co-articulated, no jumps in velocity at the ends
    return a[None] + (b - a)[None] * s[:, None]


def _articulate(glosses: list[Gloss], signer: Signer, rng: np.random.Generator) -> np.ndarray:
    rest = _rest_state()
    parts = [np.tile(rest, (int(rng.integers(3, 8)), 1))]
    prev = rest
    for g in glosses:
        sign = _sign_frames(g, signer, rng)
        parts.append(_transition(prev, sign[0], int(np.clip(round(rng.uniform(3, 6) / signer.speed), 2, 8))))
        parts.append(sign)
        prev = sign[-1]
    parts.append(_transition(prev, rest, 4))
    parts.append(np.tile(rest, (int(rng.integers(3, 8)), 1)))
    return np.concatenate(parts)


def _hand_points(wrist: np.ndarray, angle: np.ndarray, flex: np.ndarray, mirror: float) -> np.ndarray:
    """[T,2] wrist, [T] orientation, [T,5] flexion -> [T,21,3] hand points in shoulder widths."""
    T = wrist.shape[0]
    pts = np.zeros((T, 21, 3))
    pts[:, 0, :2] = wrist
    for f in range(5):
        base_dir = angle + mirror * FINGER_BASE_ANGLE[f]
        pos = wrist + HAND_SIZE * FINGER_BASE_DIST[f] * np.stack([np.sin(base_dir), -np.cos(base_dir)], -1)
        first = 1 + 4 * f
        pts[:, first, :2] = pos
        direction = base_dir.copy()
        for k in range(3):
            direction = direction + mirror * flex[:, f] * np.radians(60 if f else 35)
            seg = HAND_SIZE * FINGER_SEGMENTS[f, k] * (1 - 0.35 * flex[:, f])
            pos = pos + seg[:, None] * np.stack([np.sin(direction), -np.cos(direction)], -1)
            pts[:, first + 1 + k, :2] = pos
            pts[:, first + 1 + k, 2] = -0.04 * (k + 1) * flex[:, f]
    return pts


def _render(params: np.ndarray, signer: Signer) -> np.ndarray:
    """Articulator parameters [T, 18] -> skeleton [T, 543, 3] in shoulder widths (x right, y down)."""
    T = params.shape[0]
    side = -1.0 if signer.dominant == "right" else 1.0  # the person's right hand is on the image left
    pts = np.zeros((T, NUM_POINTS, 3))
    pose = pts[:, : RAW_PARTS["pose"][1]]
    for i, (x, y) in POSE_FIXED.items():
        pose[:, i, :2] = (x, y)
    dom = params[:, P_DOM] * np.array([side, 1.0])
    nd = params[:, P_ND] * np.array([-side, 1.0])
    dom_hand = _hand_points(dom, side * params[:, P_DANG], params[:, P_DFLEX], -side)
    nd_hand = _hand_points(nd, -side * params[:, P_NANG], params[:, P_NFLEX], side)
    right, left = (dom_hand, nd_hand) if signer.dominant == "right" else (nd_hand, dom_hand)
    pts[:, slice(*RAW_PARTS["left_hand"])] = left
    pts[:, slice(*RAW_PARTS["right_hand"])] = right
    for hand, shoulder, elbow, wrist, pinky, index, thumb in ((left, 11, 13, 15, 17, 19, 21),
                                                              (right, 12, 14, 16, 18, 20, 22)):
        s = pose[:, shoulder, :2]
        w = hand[:, 0, :2]
        out = np.sign(s[:, :1])
        pose[:, elbow, :2] = (s + w) / 2 + np.concatenate([0.18 * out, np.full_like(out, 0.22)], -1)
        pose[:, wrist] = hand[:, 0]
        pose[:, pinky] = hand[:, 17]
        pose[:, index] = hand[:, 5]
        pose[:, thumb] = hand[:, 2]
    face = np.repeat(FACE_POINTS[None], T, 0).copy()
    lower_lip = MOUTH & (FACE_POINTS[:, 1] > -0.62)
    face[:, lower_lip, 1] += 0.07 * params[:, P_MOUTH, None]
    face[:, BROWS, 1] -= 0.06 * params[:, P_BROWS, None]
    pts[:, slice(*RAW_PARTS["face"]), :2] = face
    pts[:, slice(*RAW_PARTS["face"]), 2] = -0.05
    return pts


def _detections(params: np.ndarray, signer: Signer, rng: np.random.Generator, noise: float = 1.0) -> np.ndarray:
    """Part presence [T, 4] (pose, left hand, right hand, face) with realistic dropouts; ``noise``
    scales the chance that a signing hand or a whole frame is lost."""
    T = params.shape[0]
    presence = np.ones((T, 4), dtype=bool)
    dom_col, nd_col = (2, 1) if signer.dominant == "right" else (1, 2)
    for col, wrist in ((dom_col, params[:, P_DOM]), (nd_col, params[:, P_ND])):
        resting = wrist[:, 1] > 1.1
        missing = False
        for t in range(T):
            p_drop, p_back = (0.5, 0.3) if resting[t] else (0.05 * noise, 0.25)
            missing = rng.random() < (1 - p_back if missing else p_drop)
            presence[t, col] = not missing
    blank = rng.random(T) < 0.01 * noise
    presence[blank] = False
    return presence


def _to_landmarks(skeleton: np.ndarray, presence: np.ndarray, signer: Signer, width: int, height: int,
                  rng: np.random.Generator, noise: float = 1.0) -> Landmarks:
    T = skeleton.shape[0]
    sway = np.cumsum(rng.normal(scale=0.004, size=(T, 2)), 0)
    px = signer.centre[None, None] + (skeleton[..., :2] + sway[:, None]) * signer.scale
    jitter = {"pose": 0.6, "face": 0.35, "left_hand": 0.9, "right_hand": 0.9}  # pixels
    for part, sigma in jitter.items():
        sl = slice(*RAW_PARTS[part])
        px[:, sl] += rng.normal(scale=sigma * noise, size=px[:, sl].shape)
    points = np.zeros((T, NUM_POINTS, 3), dtype=np.float32)
    points[..., 0] = px[..., 0] / width
    points[..., 1] = px[..., 1] / height
    points[..., 2] = skeleton[..., 2] * signer.scale / width
    from sign_ctc.features.layout import PARTS

    for i, part in enumerate(PARTS):
        points[~presence[:, i], slice(*RAW_PARTS[part])] = 0.0
    return Landmarks(points=points, presence=presence, fps=25.0)


class SyntheticCorpus(Corpus):
    """Generated corpus; ``prepare()`` builds it once under ``root`` and reuses it while the
    generation settings are unchanged."""

    def __init__(self, root: str | Path, landmarks_dir: str | Path | None = None, seed: int = 1234, train: int = 1200, dev: int = 150,
                 test: int = 150, num_signers: int = 9, dev_signers: tuple[int, ...] = (6,),
                 test_signers: tuple[int, ...] = (7, 8), left_handed: tuple[int, ...] = (2,),
                 width: int = 210, height: int = 260, source: str = "pose", lexicon_size: int | None = None,
                 min_glosses: int = 0, max_glosses: int = 10, detection_noise: float = 1.0):
        if source != "pose":
            raise ValueError(f"the synthetic corpus is written as .pose files; source={source!r} is not available")
        super().__init__(root, landmarks_dir=landmarks_dir, source="pose")
        self.settings = {
            "version": GENERATOR_VERSION, "seed": seed, "sizes": {"train": train, "dev": dev, "test": test},
            "num_signers": num_signers, "dev_signers": list(dev_signers), "test_signers": list(test_signers),
            "left_handed": list(left_handed), "width": width, "height": height,
        }
        # Settings beyond the default corpus's (a harder corpus): recorded only when changed, so the
        # default corpus's manifest, and with it every cached copy, stays valid.
        harder = {"lexicon_size": lexicon_size, "min_glosses": min_glosses, "max_glosses": max_glosses,
                  "detection_noise": detection_noise}
        defaults = {"lexicon_size": None, "min_glosses": 0, "max_glosses": 10, "detection_noise": 1.0}
        self.settings.update({k: v for k, v in harder.items() if v != defaults[k]})
        if max_glosses < max(min_glosses, 1):
            raise ValueError(f"max_glosses={max_glosses} must be at least min_glosses={min_glosses} and 1")
        _roles(lexicon_size)  # a lexicon_size below the built-in one fails here, before any file is written

    @property
    def manifest(self) -> Path:
        return self.root / "corpus.json"

    def is_built(self) -> bool:
        try:
            return json.loads(self.manifest.read_text()) == self.settings
        except (OSError, ValueError):
            return False

    def prepare(self) -> None:
        if not self.is_built():
            self.build()

    def build(self, progress: bool = True) -> None:
        from rich.progress import Progress

        from sign_ctc.features.pose_io import pose_from_landmarks, write_pose_atomic

        s = self.settings
        rng = np.random.default_rng(s["seed"])
        roles = _roles(s.get("lexicon_size"))
        min_glosses, max_glosses = s.get("min_glosses", 0), s.get("max_glosses", 10)
        noise = s.get("detection_noise", 1.0)
        lexicon = _make_lexicon(rng, roles)
        signers = _make_signers(rng, s["num_signers"], tuple(s["left_handed"]))
        held_out = set(s["dev_signers"]) | set(s["test_signers"])
        split_signers = {
            "train": [i for i in range(s["num_signers"]) if i not in held_out],
            "dev": s["dev_signers"], "test": s["test_signers"],
        }
        self.manifest.unlink(missing_ok=True)
        total = sum(s["sizes"].values())
        frame_rows = ["split|id|num_frames"]
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task(f"building synthetic corpus in {self.root}", total=total)
            for split in SPLITS:
                sentences = []
                for n in range(s["sizes"][split]):
                    signer = signers[int(rng.choice(split_signers[split]))]
                    words = _grammar_sentence(rng, roles, min_glosses, max_glosses)
                    params = _articulate([lexicon[w] for w in words], signer, rng)
                    presence = _detections(params, signer, rng, noise)
                    lm = _to_landmarks(_render(params, signer), presence, signer, s["width"], s["height"], rng, noise)
                    sentence = Sentence(id=f"{split}_{n:05d}_{signer.id}", glosses=tuple(words), signer=signer.id)
                    write_pose_atomic(pose_from_landmarks(lm, s["width"], s["height"]),
                                      self.landmark_path(split, sentence))
                    sentences.append(sentence)
                    frame_rows.append(f"{split}|{sentence.id}|{len(lm)}")
                    bar.advance(task)
                write_phoenix2014(self.annotation_path(split), sentences)
        write_text_atomic(self.landmarks_dir / "num_frames.csv", "\n".join(frame_rows) + "\n")
        write_text_atomic(self.manifest, json.dumps(self.settings))
