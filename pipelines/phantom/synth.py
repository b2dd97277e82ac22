"""The phantom: rendered stand-ins for the four licensed datasets, in their native layouts.

Real pain data cannot ship, so `painsearch data synth` writes UNBC-, MInt PAIN-, Delaware- and
CP-PAIN-like folders that the real adapters read. Expressions come from FACS action units with the
paper's labelling rule; the ground truth (true AUs, face regions) goes to `_phantom_truth.csv` beside
the sources, never inside them.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from pipelines.phantom import cp_shift
from pipelines.phantom.cp_shift import CPShift
from pipelines.phantom.render import Identity, Nuisance, render
from pipelines.errors import PainsearchError, choices
from pipelines.labels import PAIN_AUS, facs_score, pspi

PHANTOM_MARKER = ".painsearch-phantom"
TRUTH_FILE = "_phantom_truth.csv"
RATINGS_FILE = "ratings.csv"
MANIFEST_FILE = "manifest.csv"
FIRST_NAMES = ["Ana", "Ben", "Carla", "Dan", "Eva", "Femi", "Gil", "Hana", "Ivo", "Jun", "Kai", "Lena",
               "Marc", "Nia", "Omar", "Pia", "Quim", "Rosa", "Sami", "Tao"]


@dataclass(frozen=True)
class Scale:
    """How much phantom to render; `tiny` feeds the tests, `small` the demo, `paper` mimics PAIN-DB and CP-PAIN."""

    unbc_subjects: int
    unbc_sequences: int
    unbc_frames: int
    unbc_size: tuple[int, int]
    mint_subjects: int
    mint_trials: int
    mint_sweeps: int
    mint_frames: int
    mint_size: tuple[int, int]
    delaware_subjects: int
    delaware_size: tuple[int, int]
    cp_subjects: int
    cp_images: int  # a pain and a rest frame per kept video, the videos shared out over the people in turn
    cp_size: tuple[int, int]


SCALES: dict[str, Scale] = {
    "tiny": Scale(4, 2, 10, (320, 240), 3, 1, 4, 3, (480, 270), 8, (300, 400), 6, 12, (320, 240)),
    "small": Scale(10, 3, 16, (320, 240), 8, 2, 4, 4, (640, 360), 40, (300, 400), 20, 80, (480, 360)),
    # the smallest on which a network trained from scratch learns the expression (the training tests, benchmarks)
    "learn": Scale(6, 2, 16, (256, 192), 4, 1, 6, 4, (320, 180), 40, (240, 320), 8, 16, (256, 192)),
    # CP-PAIN: 109 images of the study's 53 participants (the paper's Methods)
    "paper": Scale(25, 8, 60, (320, 240), 20, 2, 40, 5, (1920, 1080), 240, (600, 800), 53, 109, (640, 480)),
}


def get_scale(name: str) -> Scale:
    if name not in SCALES:
        raise PainsearchError(f"Unknown phantom scale {name!r}; choose one of {choices(SCALES)}.")
    return SCALES[name]


def _pain_aus(rng: np.random.Generator, strength: float) -> dict[str, float]:
    """Pain action units of a given overall strength (0..1), each 0..5."""
    if strength <= 0:
        return {au: 0.0 for au in PAIN_AUS}
    out = {}
    for au in PAIN_AUS:
        p_active = 0.35 if au == "AU43" else 0.85
        out[au] = float(np.clip(np.round(rng.normal(strength * 4.5, 0.8)), 1, 5)) if rng.random() < p_active else 0.0
    if all(v == 0 for v in out.values()):
        out["AU4"] = float(max(1, round(strength * 4)))
    return out


def _mouth(rng: np.random.Generator, open_rate: float) -> dict[str, float]:
    """A smile on a quarter of faces whatever their expression, and an open mouth (lips parted, AU25; the jaw
    dropped, AU26) at `open_rate`. Every draw is made whatever the rate, so a factor switched on or off changes
    nothing else about the faces."""
    u = rng.random(3)
    levels = rng.integers(1, 5, 3)
    return {"AU12": float(levels[0]) if u[0] < 0.25 else 0.0,
            "AU25": float(min(levels[1], 3)) if u[1] < open_rate else 0.0,
            "AU26": float(levels[2]) if u[2] < open_rate * 0.8 else 0.0}


DRAWN_AUS = (*PAIN_AUS, "AU12", "AU19", "AU25", "AU26")  # the truth file's columns: every AU the renderer draws


class _Writer:
    def __init__(self, out: Path, seed: int, shift: CPShift) -> None:
        self.out = out
        self.seed = seed
        self.shift = shift
        self.truth: list[dict] = []
        self._bg = 0

    def start(self, dataset_index: int) -> None:
        """Backgrounds are numbered per dataset, so one dataset renders the same alone or with the others."""
        self._bg = (self.seed * 4 + dataset_index) * 100_000

    def face(self, ident: Identity, aus: dict[str, float], rng: np.random.Generator, size: tuple[int, int],
             scale: float = 0.6, spread: float = 1.0, motion: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, dict]:
        """One face showing `aus`, and what the truth file keeps of it: landmarks, regions and pose."""
        self._bg += 1
        nu = Nuisance.sample(rng, background_seed=self._bg, scale=scale, spread=spread)
        nu = replace(nu, motion=motion[0], motion_angle=motion[1])
        r = render(ident, aus, nu, size[0], size[1])
        return r.image, {"landmarks": r.landmarks.round(1).tolist(),
                         "regions": {k: [round(x, 1) for x in v] for k, v in r.regions.items()},
                         "pose": {"roll": round(nu.roll, 2), "yaw": round(nu.yaw, 3), "motion": round(nu.motion, 4)}}

    def save(self, path: Path, image: np.ndarray, dataset: str, aus: dict[str, float], extra: dict, pain: bool,
             factors: dict | None = None) -> None:
        """Write one image and its truth row: the AUs drawn, whether the face was drawn in pain, and the CP factors
        that shaped it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(image)
        if path.suffix.lower() in (".jpg", ".jpeg"):
            img.save(path, quality=92)
        else:
            img.save(path)
        self.truth.append({
            "dataset": dataset, "path": str(path.relative_to(self.out)), "state": "pain" if pain else "rest",
            **{au: aus.get(au, 0.0) for au in DRAWN_AUS},
            "geometry": json.dumps(extra), "factors": json.dumps(factors or {}),
        })


def _unbc(w: _Writer, sc: Scale, rng: np.random.Generator) -> None:
    root = w.out / "unbc"
    for s in range(sc.unbc_subjects):
        code = f"{'abcdefghijklmnopqrstuvwxyz'[s % 26]}{'mnopqrstuvwxyzabcdefghijkl'[s % 26]}{100 + s:03d}"
        subject = f"{100 + s:03d}-{code}"
        ident = Identity.sample(rng)
        for q in range(sc.unbc_sequences):
            seq = f"{code}t{q + 1}a{'abcdefgh'[q % 8]}aff"
            n = sc.unbc_frames
            # one pain episode in most sequences: a rise and fall of intensity over the frames
            curve = np.zeros(n)
            if rng.random() < 0.8:
                start = int(rng.integers(0, max(1, n // 2)))
                length = int(rng.integers(max(2, n // 4), max(3, n // 2) + 1))
                peak = rng.uniform(0.4, 1.0)
                idx = np.arange(start, min(n, start + length))
                curve[idx] = peak * np.sin(np.pi * (idx - start + 0.5) / length)
            # the mouth keeps its state through a sequence's rest and its pain, mostly
            base = {pain: _mouth(rng, w.shift.mouth_open(cp=False, pain=pain)) for pain in (False, True)}
            for f in range(n):
                frame_no = f + 1
                name = f"{seq}{frame_no:03d}"
                rel = Path(subject) / seq
                strength = float(curve[f]) if curve[f] > 0.15 else 0.0
                pain = strength > 0
                fresh = _mouth(rng, w.shift.mouth_open(cp=False, pain=pain))
                aus = {**_pain_aus(rng, strength), **(base[pain] if rng.random() < 0.7 else fresh)}
                image, geo = w.face(ident, aus, rng, sc.unbc_size, scale=0.75)
                if s == 0 and q == 0 and f == 0:
                    image = np.zeros_like(image)  # like the known pure-black UNBC frames
                w.save(root / "Images" / rel / f"{name}.png", image, "unbc", aus, geo, pain)
                (root / "Frame_Labels" / "PSPI" / rel).mkdir(parents=True, exist_ok=True)
                (root / "Frame_Labels" / "PSPI" / rel / f"{name}_facs.txt").write_text(f"{pspi(aus):.7e}\n")
                (root / "Frame_Labels" / "FACS" / rel).mkdir(parents=True, exist_ok=True)
                (root / "Frame_Labels" / "FACS" / rel / f"{name}_facs.txt").write_text(
                    "".join(f"{float(au[2:]):.7e}   {aus[au]:.7e}\n" for au in PAIN_AUS if aus[au] > 0)
                )
        (root / "Sequence_Labels" / "OPR" / subject).mkdir(parents=True, exist_ok=True)


def _mintpain(w: _Writer, sc: Scale, rng: np.random.Generator) -> None:
    root = w.out / "mintpain"
    for s in range(sc.mint_subjects):
        sub = f"Sub{s + 1:02d}"
        ident = Identity.sample(rng)
        folder = root / f"{sub} {FIRST_NAMES[s % len(FIRST_NAMES)]}"
        for t in range(sc.mint_trials):
            trial = f"Trial{t + 1:02d}"
            for sw in range(sc.mint_sweeps):
                # about half the sweeps are label 0, the rest spread over 1..4
                level = 0 if sw % 2 == 0 else int(rng.integers(1, 5))
                sweep = folder / f"Annotated_data_{sub}_{trial}" / f"{sub}_{trial}_Sweep{sw + 1:02d}_Label{level}" / "RGB"
                base = _mouth(rng, w.shift.mouth_open(cp=False, pain=level > 0))
                for f in range(sc.mint_frames):
                    aus = {**_pain_aus(rng, level / 4.0), **base}
                    image, geo = w.face(ident, aus, rng, sc.mint_size, scale=0.45)
                    stamp = f"RGB-12-{sw:02d}-{f:02d}-{rng.integers(0, 1000):03d}.jpg"
                    w.save(sweep / stamp, image, "mintpain", aus, geo, level > 0)


def _delaware(w: _Writer, sc: Scale, rng: np.random.Generator) -> None:
    root = w.out / "delaware"
    rows = []
    for s in range(sc.delaware_subjects):
        ident = Identity.sample(rng)
        sid = f"{'FM'[s % 2]}{s + 1:03d}"
        for label in (0, 1):
            # posed expressions: strong pain, or neutral
            aus = {**_pain_aus(rng, rng.uniform(0.6, 1.0) if label else 0.0),
                   **_mouth(rng, w.shift.mouth_open(cp=False, pain=bool(label)))}
            image, geo = w.face(ident, aus, rng, sc.delaware_size, scale=0.5)
            rel = Path("images") / f"{sid}_{'pain' if label else 'neutral'}.jpg"
            w.save(root / rel, image, "delaware", aus, geo, bool(label))
            rows.append({"path": str(rel), "subject": sid, "label": "pain" if label else "no pain", "level": label})
    with open(root / MANIFEST_FILE, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "subject", "label", "level"])
        writer.writeheader()
        writer.writerows(rows)


STIMULI = (("injection", 77), ("stretching", 32), ("other", 18))


def cp_videos(sc: Scale) -> list[tuple[int, int, tuple[str, ...]]]:
    """The kept CP videos: (person, the video's number for that person, the moments kept from it). Each video
    gives a pain and a rest frame; an odd image count leaves one video with its rest frame only (its pain frame
    occluded, as the paper's Methods say of the videos it dropped)."""
    n = (sc.cp_images + 1) // 2
    videos = [(v % sc.cp_subjects, v // sc.cp_subjects, ("pain", "rest")) for v in range(n)]
    if sc.cp_images % 2:
        person, number, _ = videos[-1]
        videos[-1] = (person, number, ("rest",))
    return videos


def cp_person(rng: np.random.Generator, shift: CPShift) -> tuple[Identity, dict]:
    """A CP person's identity and their own factors (drawn whatever the shift, so that switching one factor
    keeps every other draw)."""
    ident = Identity.sample(rng)
    masked = float(rng.uniform(*cp_shift.EXPRESSIVENESS))
    one_sided = bool(rng.random() < cp_shift.ONE_SIDED_SHARE)
    side = int(rng.choice([-1, 1]))
    droop = float(rng.uniform(0.3, 1.0))
    smiles = bool(rng.random() < cp_shift.SMILE_SHARE)
    if shift.one_sided and one_sided:
        ident = replace(ident, weak_side=side, weak_gain=cp_shift.ONE_SIDED_GAIN, asymmetry=droop)
    return ident, {"masked_steps": masked if shift.expressiveness else 0.0,
                   "weak_side": ident.weak_side, "smiles_in_pain": smiles and shift.smile}


def cp_frame(rng: np.random.Generator, shift: CPShift, person: dict, pain: bool) -> tuple[dict, dict, dict]:
    """One CP frame's expression: the pain AUs the raters score, the AUs drawn, and the frame's factors."""
    scored = _pain_aus(rng, rng.uniform(0.3, 1.0) if pain else 0.0)
    mouth = _mouth(rng, shift.mouth_open(cp=True, pain=pain))
    moving = rng.random() < cp_shift.REST_MOVEMENT_RATE
    which = rng.permutation(cp_shift.REST_MOVEMENT_AUS)[: int(rng.integers(2, 4))]
    levels = rng.integers(1, 3, len(which))
    tongue, tongue_level = rng.random() < cp_shift.TONGUE_RATE, float(rng.integers(2, 5))
    smile_level = float(rng.integers(3, 6))
    blurred = rng.random() < cp_shift.MOTION_BLUR_RATE
    blur = (float(rng.uniform(*cp_shift.MOTION_BLUR_LENGTH)), float(rng.uniform(0, np.pi)))

    drawn = {au: max(0.0, v - person["masked_steps"]) for au, v in scored.items()}
    involuntary = {}
    if shift.rest_movements and moving:
        involuntary = {str(au): float(v) for au, v in zip(which, levels)}
        drawn.update({au: max(drawn[au], v) for au, v in involuntary.items()})
    drawn.update(mouth)
    if pain and person["smiles_in_pain"]:
        drawn["AU12"] = max(drawn["AU12"], smile_level)
    drawn["AU19"] = tongue_level if shift.tongue and tongue else 0.0
    motion = blur if shift.pose and blurred else (0.0, 0.0)
    return scored, drawn, {**person, "involuntary": involuntary, "motion": motion}


def _cppain(w: _Writer, sc: Scale, rng: np.random.Generator) -> None:
    root = w.out / "cppain"
    ratings = []
    stimuli = [s for s, n in STIMULI for _ in range(n)]
    people = [cp_person(rng, w.shift) for _ in range(sc.cp_subjects)]
    for person, number, moments in cp_videos(sc):
        ident, traits = people[person]
        pid = f"P{person + 1:03d}"
        video = f"V{number + 1:02d}"
        stimulus = stimuli[int(rng.integers(len(stimuli)))]
        for moment in moments:
            scored, drawn, factors = cp_frame(rng, w.shift, traits, moment == "pain")
            spread = cp_shift.POSE_SPREAD if w.shift.pose else 1.0
            image, geo = w.face(ident, drawn, rng, sc.cp_size, scale=0.6, spread=spread, motion=factors.pop("motion"))
            rel = Path("images") / f"{pid}_{video}_{moment}.png"
            w.save(root / rel, image, "cppain", drawn, geo, moment == "pain", factors)
            # the raters scored the pain they saw in the video's context: involuntary movements at rest are not pain
            for rater in ("R1", "R2"):
                rated = {}
                for au in PAIN_AUS:
                    noisy = scored[au] * 0.7 + rng.normal(0, 0.6)
                    if scored[au] == 0 and rng.random() < 0.93:
                        noisy = 0.0
                    rated[au] = int(np.clip(round(noisy), 0, 5))
                score = facs_score(rated)
                ratings.append({
                    "image": str(rel), "subject": pid, "video": video, "stimulus": stimulus, "rater": rater,
                    **{au.lower(): rated[au] for au in PAIN_AUS},
                    "ncapc": int(np.clip(round(score * 1.4 + rng.normal(0, 2)), 0, 54)),
                    "wong_baker": int(np.clip(2 * round((score / 4) + rng.normal(0, 0.7)), 0, 10)),
                })
    with open(root / RATINGS_FILE, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(ratings[0]))
        writer.writeheader()
        writer.writerows(ratings)


SOURCES = {"unbc": _unbc, "mintpain": _mintpain, "delaware": _delaware, "cppain": _cppain}


def sources(root: str | Path, datasets: tuple[str, ...] = tuple(SOURCES)) -> dict[str, str]:
    """The `data prepare` sources of a phantom rendered under `root`: kind -> the folder (or manifest) to read."""
    root = Path(root).resolve()
    every = {"unbc": ("unbc", str(root / "unbc")), "mintpain": ("mintpain", str(root / "mintpain")),
             "delaware": ("manifest", str(root / "delaware" / MANIFEST_FILE)), "cppain": ("cppain", str(root / "cppain"))}
    return dict(every[d] for d in SOURCES if d in datasets)


def _rendered(folder: Path) -> dict[str, str]:
    """Every file under `folder` but the marker, by its path there, with its sha256."""
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file() and f.name != PHANTOM_MARKER}


def write_marker(folder: Path) -> None:
    """The marker of a source folder the phantom rendered: what it rendered there, file by file, with hashes."""
    (folder / PHANTOM_MARKER).write_text(json.dumps({"rendered_by": "painsearch data synth",
                                                     "files": _rendered(folder)}, indent=0) + "\n")


def is_verified_phantom(folder: str | Path) -> bool:
    """Whether `folder` holds exactly what the phantom rendered there: its marker lists every file it holds, with
    the same bytes. Only such data may be pseudonymised with the public demo key: a marker copied beside real
    faces, or real faces added to a phantom, do not pass."""
    folder = Path(folder)
    try:
        listed = json.loads((folder / PHANTOM_MARKER).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return isinstance(listed, dict) and bool(listed) and _rendered(folder) == listed


def synth(out: str | Path, scale: str | Scale = "tiny", seed: int = 0, shift: CPShift | None = None,
          datasets: tuple[str, ...] = tuple(SOURCES)) -> dict:
    """Render the phantom's sources under `out`; the same seed gives the same bytes. `shift` says which of the
    paper's reasons the CP faces show (all of them unless told: `pipelines/phantom/cp_shift.py`). `datasets`
    renders some of the four only, each exactly as a whole render draws it (CP faces again with other factors,
    say)."""
    sc = scale if isinstance(scale, Scale) else get_scale(scale)
    shift = CPShift() if shift is None else shift
    unknown = [d for d in datasets if d not in SOURCES]
    if unknown or not datasets:
        raise PainsearchError(f"Unknown phantom dataset(s) {', '.join(map(repr, unknown))}; choose from "
                              f"{choices(SOURCES)}.")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / PHANTOM_MARKER).exists():
        raise PainsearchError(
            f"{out} exists and is not an earlier phantom; name an empty or new folder for `data synth`."
        )
    out.mkdir(parents=True, exist_ok=True)
    writer = _Writer(out, seed, shift)
    counts = {}
    for i, (name, fn) in enumerate(SOURCES.items()):
        if name not in datasets:
            continue
        before = len(writer.truth)
        writer.start(i)
        fn(writer, sc, np.random.default_rng([seed, i]))
        counts[name] = len(writer.truth) - before
        write_marker(out / name)
    with open(out / TRUTH_FILE, "w", newline="") as f:
        fields = list(writer.truth[0])
        csvw = csv.DictWriter(f, fieldnames=fields)
        csvw.writeheader()
        csvw.writerows(writer.truth)
    info = {"scale": scale if isinstance(scale, str) else "custom", "seed": seed, "cp_factors": shift.label(),
            "counts": counts, "params": asdict(sc)}
    (out / PHANTOM_MARKER).write_text(json.dumps(info, indent=2) + "\n")
    (out / "prepare.yaml").write_text(
        "# painsearch data prepare --config this file: the phantom's sources.\n"
        + yaml.safe_dump({"sources": sources(out, datasets), "out": str(out.resolve() / "shards")}, sort_keys=False)
    )
    return info
