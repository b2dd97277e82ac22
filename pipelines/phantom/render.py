"""Photo-like faces whose expression is set by FACS action units.

The phantom must look enough like a photograph that the real MTCNN finds the face, and its pain
signal must live only where FACS puts it (brows, eyes, nose, upper lip), so that a model has to learn
the expression and an explanation can be checked against known regions. Identity, pose, light,
background and blur vary so that a model cannot shortcut through them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SUPERSAMPLE = 2
LAYER = 320  # side of the face layer before supersampling; the head spans about half of it


@dataclass(frozen=True)
class Identity:
    """What stays the same for one person across all their images."""

    skin: tuple[float, float, float]
    hair: tuple[int, int, int]
    iris: tuple[int, int, int]
    lips: tuple[int, int, int]
    clothes: tuple[int, int, int]
    head_ratio: float  # half-height / half-width of the head ellipse
    eye_dx: float  # half the distance between the eyes, in head half-widths
    eye_w: float
    eye_y: float
    brow_gap: float
    brow_thick: float
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_thick: float
    hair_style: int  # 0 short, 1 long, 2 receding, 3 bun
    beard: bool
    asymmetry: float = 0.0  # how far the weak side droops (0..1)
    weak_side: int = 0  # -1 or 1: the side whose expression is weak (one-sided motor impairment); 0: neither
    weak_gain: float = 1.0  # the share of each action unit's intensity that shows on the weak side

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Identity":
        tone = rng.uniform(0.0, 1.0)
        light = np.array([236, 200, 175]) / 255.0
        dark = np.array([110, 72, 52]) / 255.0
        skin = tuple(float(v) for v in (light * (1 - tone) + dark * tone) * rng.uniform(0.95, 1.05, 3))
        hair_choices = [(30, 22, 18), (70, 45, 25), (120, 85, 50), (190, 160, 110), (140, 140, 140), (20, 20, 22)]
        hair = hair_choices[rng.integers(len(hair_choices))]
        iris_choices = [(70, 45, 25), (40, 28, 20), (70, 100, 130), (90, 110, 70)]
        return cls(
            skin=skin,
            hair=hair,
            iris=iris_choices[rng.integers(len(iris_choices))],
            lips=tuple(int(c) for c in np.clip(np.array(skin) * 255 * np.array([0.85, 0.55, 0.55]) + rng.integers(-10, 10, 3), 0, 255)),
            clothes=tuple(int(c) for c in rng.integers(20, 220, 3)),
            head_ratio=float(rng.uniform(1.22, 1.42)),
            eye_dx=float(rng.uniform(0.36, 0.44)),
            eye_w=float(rng.uniform(0.30, 0.36)),
            eye_y=float(rng.uniform(-0.12, -0.02)),
            brow_gap=float(rng.uniform(0.17, 0.23)),
            brow_thick=float(rng.uniform(0.045, 0.075)),
            nose_len=float(rng.uniform(0.42, 0.55)),
            nose_w=float(rng.uniform(0.13, 0.19)),
            mouth_y=float(rng.uniform(0.70, 0.80)),
            mouth_w=float(rng.uniform(0.38, 0.48)),
            lip_thick=float(rng.uniform(0.05, 0.08)),
            hair_style=int(rng.integers(4)),
            beard=bool(rng.random() < 0.08),
        )


@dataclass(frozen=True)
class Nuisance:
    """What changes from one image to the next without changing the expression."""

    roll: float = 0.0  # in-plane rotation, degrees
    yaw: float = 0.0  # -1..1, shifts features sideways
    scale: float = 1.0  # head size relative to the frame's height
    cx: float = 0.5  # head centre, fraction of width
    cy: float = 0.5
    light_dir: tuple[float, float] = (-0.4, -0.5)
    brightness: float = 1.0
    blur: float = 0.0
    noise: float = 2.0
    gaze: tuple[float, float] = (0.0, 0.0)
    background_seed: int = 0
    motion: float = 0.0  # motion blur's length, as a share of the frame's height
    motion_angle: float = 0.0  # its direction, radians

    @classmethod
    def sample(cls, rng: np.random.Generator, background_seed: int, cx: float = 0.5, cy: float = 0.5, scale: float = 0.6,
               spread: float = 1.0) -> "Nuisance":
        """`spread` widens the head's roll and yaw by that factor (the same draws, scaled)."""
        return cls(
            roll=float(rng.normal(0, 5) * spread),
            yaw=float(rng.uniform(-0.25, 0.25) * spread),
            scale=float(scale * rng.uniform(0.9, 1.1)),
            cx=float(cx + rng.normal(0, 0.02)),
            cy=float(cy + rng.normal(0, 0.02)),
            light_dir=(float(rng.uniform(-0.7, 0.7)), float(rng.uniform(-0.7, 0.1))),
            brightness=float(rng.uniform(0.8, 1.15)),
            blur=float(rng.uniform(0.0, 1.0)),
            noise=float(rng.uniform(1.0, 4.0)),
            gaze=(float(rng.uniform(-0.3, 0.3)), float(rng.uniform(-0.2, 0.2))),
            background_seed=background_seed,
        )


@dataclass
class Rendered:
    image: np.ndarray  # HxWx3 uint8
    landmarks: np.ndarray  # 5x2: left eye, right eye, nose, left mouth corner, right mouth corner
    regions: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)  # x0,y0,x1,y1


def _rgb(c: tuple[float, float, float], k: float = 1.0) -> tuple[int, int, int]:
    return tuple(int(np.clip(v * 255 * k, 0, 255)) for v in c)  # type: ignore[return-value]


def background(width: int, height: int, seed: int) -> Image.Image:
    """A cluttered, out-of-focus room: a wall gradient and furniture-like shapes."""
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, 3).astype(float)
    ys = np.linspace(0, 1, height)[:, None, None]
    xs = np.linspace(0, 1, width)[None, :, None]
    tilt = rng.uniform(-40, 40, 3)
    arr = base + tilt * ys + rng.uniform(-20, 20, 3) * xs
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 10))):
        x0, y0 = rng.uniform(-0.2, 1.0) * width, rng.uniform(-0.2, 1.0) * height
        w, h = rng.uniform(0.1, 0.5) * width, rng.uniform(0.1, 0.6) * height
        color = tuple(int(v) for v in rng.integers(30, 230, 3))
        if rng.random() < 0.6:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=color)
        else:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=color)
    return img.filter(ImageFilter.GaussianBlur(radius=max(1.0, width / 150)))


def motion_blur(image: np.ndarray, length: float, angle: float) -> np.ndarray:
    """The image averaged along a line `length` pixels long in direction `angle` (radians): a head that moved
    while the shutter was open."""
    n = max(2, int(round(length)))
    dx, dy = np.cos(angle), np.sin(angle)
    h, w = image.shape[:2]
    padded = np.pad(image.astype(np.float32), ((n, n), (n, n), (0, 0)), mode="edge")
    acc = np.zeros((h, w, image.shape[2]), np.float32)
    for i in range(n):
        step = i - (n - 1) / 2
        ox, oy = int(round(step * dx)), int(round(step * dy))
        acc += padded[n + oy:n + oy + h, n + ox:n + ox + w]
    return np.clip(np.round(acc / n), 0, 255).astype(np.uint8)


def _almond(ex: float, ey: float, w: float, up: float, lo: float, n: int = 24) -> list[tuple[float, float]]:
    t = np.linspace(-1, 1, n)
    xs = ex + t * w / 2
    upper = ey - up * (1 - t**2) ** 0.8
    lower = ey + lo * (1 - t**2) ** 0.9
    return list(zip(xs, upper)) + list(zip(xs[::-1], lower[::-1]))


AUS = ("AU4", "AU6", "AU7", "AU9", "AU10", "AU43", "AU12", "AU25", "AU26", "AU19")  # the action units drawn


@dataclass
class _Face:
    """One face being drawn on the supersampled layer: its geometry (head half-width `a`, half-height `b`, centre,
    features' centre `fx` shifted by yaw), its action units as 0..1, and what the drawing steps record: landmarks
    (eye centres, nose tip, mouth corners, in that order) and the boxes of the regions where pain shows."""

    identity: Identity
    nuisance: Nuisance
    au: dict[str, float]
    size: int
    layer: Image.Image
    draw: ImageDraw.ImageDraw
    a: float
    b: float
    cx: float
    cy: float
    fx: float
    landmarks: list[tuple[float, float]] = field(default_factory=list)
    regions: dict[str, list[float]] = field(default_factory=dict)
    nose_y: float = 0.0  # where the nose's tip sits, in head half-widths (the mouth's folds start there)

    def P(self, x: float, y: float) -> tuple[float, float]:
        """A point given in head half-widths from the features' centre, in the layer's pixels."""
        return (self.fx + x * self.a, self.cy + y * self.a)

    def gain(self, side: int) -> float:
        """How much of an action unit shows on this side of the face (-1 left, 1 right)."""
        return self.identity.weak_gain if side == self.identity.weak_side else 1.0

    def weak(self, side: int) -> bool:
        return side == self.identity.weak_side

    def grow(self, name: str, pts: list[tuple[float, float]]) -> None:
        """Widen region `name`'s box to hold `pts`."""
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        box = self.regions.setdefault(name, [min(xs), min(ys), max(xs), max(ys)])
        box[:] = [min(box[0], *xs), min(box[1], *ys), max(box[2], *xs), max(box[3], *ys)]


def _start(identity: Identity, aus: dict[str, float], nuisance: Nuisance) -> _Face:
    size = LAYER * SUPERSAMPLE
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    a = size * 0.26  # head half-width
    cx, cy = size / 2, size * 0.44
    return _Face(identity=identity, nuisance=nuisance, size=size, layer=layer, draw=ImageDraw.Draw(layer),
                 au={n: float(np.clip(aus.get(n, 0.0), 0, 5)) / 5.0 for n in AUS},
                 a=a, b=a * identity.head_ratio, cx=cx, cy=cy, fx=cx + nuisance.yaw * a * 0.25)  # features shift with yaw


def _head(f: _Face) -> None:
    """Shoulders, neck, hair behind the head, ears, the head, beard and fringe."""
    d, a, b, cx, cy, ident = f.draw, f.a, f.b, f.cx, f.cy, f.identity
    skin_rgb, shadow = _rgb(ident.skin), _rgb(ident.skin, 0.72)
    d.ellipse([cx - 2.6 * a, cy + b + 0.45 * a, cx + 2.6 * a, cy + b + 3.5 * a], fill=ident.clothes + (255,))
    d.rectangle([cx - 0.42 * a, cy + 0.4 * b, cx + 0.42 * a, cy + b + 0.8 * a], fill=shadow + (255,))
    hair = ident.hair + (255,)
    if ident.hair_style == 1:
        d.ellipse([cx - 1.25 * a, cy - 1.12 * b, cx + 1.25 * a, cy + 1.1 * b], fill=hair)
        d.rectangle([cx - 1.25 * a, cy, cx + 1.25 * a, cy + 1.3 * b], fill=hair)
    elif ident.hair_style == 3:
        d.ellipse([cx - 0.45 * a, cy - 1.45 * b, cx + 0.45 * a, cy - 0.8 * b], fill=hair)
    for side in (-1, 1):
        ex = cx + side * 0.98 * a
        d.ellipse([ex - 0.14 * a, cy - 0.15 * b, ex + 0.14 * a, cy + 0.25 * b], fill=shadow + (255,))
    d.ellipse([cx - a, cy - b, cx + a, cy + b], fill=skin_rgb + (255,))
    if ident.beard:
        d.chord([cx - a, cy - b * 0.2, cx + a, cy + b], 10, 170, fill=_rgb(np.array(ident.hair) / 255.0, 1.0) + (255,))
    if ident.hair_style != 2:
        d.chord([cx - 1.04 * a, cy - 1.08 * b, cx + 1.04 * a, cy + 0.1 * b], 180, 360, fill=hair)
        # forehead shows below the fringe
        d.ellipse([cx - 0.86 * a, cy - 0.78 * b, cx + 0.86 * a, cy + 0.5 * b], fill=skin_rgb + (255,))
    else:
        d.chord([cx - 1.04 * a, cy - 1.08 * b, cx + 1.04 * a, cy - 0.3 * b], 180, 360, fill=hair)
        d.ellipse([cx - 0.8 * a, cy - 0.92 * b, cx + 0.8 * a, cy + 0.5 * b], fill=skin_rgb + (255,))
    if ident.beard:
        d.chord([cx - 0.95 * a, cy + 0.1 * b, cx + 0.95 * a, cy + b], 0, 180, fill=hair)


def _eyes(f: _Face) -> None:
    """Eyes and lids: AU43 closes, AU7 tightens both lids, AU6 pushes the lower lid up (with crow's feet)."""
    d, a, size, ident, skin = f.draw, f.a, f.size, f.identity, f.identity.skin
    asym, ew = ident.asymmetry, ident.eye_w
    for side in (-1, 1):
        droop = asym * 0.04 if f.weak(side) else 0.0
        au43_, au7_, au6_ = f.au["AU43"] * f.gain(side), f.au["AU7"] * f.gain(side), f.au["AU6"] * f.gain(side)
        ex, ey = f.P(side * ident.eye_dx, ident.eye_y + droop)
        w = ew * a
        openness = max(0.0, 1.0 - 0.95 * au43_ - 0.35 * au7_ - 0.15 * au6_ - (0.25 * asym if f.weak(side) else 0.0))
        up = 0.14 * a * openness + 0.004 * a
        lo = 0.08 * a * max(0.05, openness - 0.45 * au6_) + 0.004 * a
        # socket shadow
        d.ellipse([ex - 0.62 * w, ey - 0.5 * w, ex + 0.62 * w, ey + 0.45 * w], fill=_rgb(skin, 0.9) + (255,))
        almond = _almond(ex, ey, w, up, lo)
        d.polygon(almond, fill=(238, 236, 230, 255))
        if openness > 0.08:
            mask = Image.new("L", (size, size), 0)
            ImageDraw.Draw(mask).polygon(almond, fill=255)
            iris = Image.new("RGBA", (size, size), (0, 0, 0, 0))
            di = ImageDraw.Draw(iris)
            r = 0.085 * a
            ix, iy = ex + f.nuisance.gaze[0] * 0.06 * a, ey + f.nuisance.gaze[1] * 0.04 * a
            di.ellipse([ix - r, iy - r, ix + r, iy + r], fill=ident.iris + (255,))
            di.ellipse([ix - 0.45 * r, iy - 0.45 * r, ix + 0.45 * r, iy + 0.45 * r], fill=(12, 10, 10, 255))
            di.ellipse([ix - 0.3 * r + 0.3 * r, iy - 0.5 * r, ix + 0.05 * r + 0.3 * r, iy - 0.15 * r], fill=(250, 250, 250, 255))
            f.layer.paste(iris, (0, 0), Image.fromarray(np.minimum(np.array(mask), np.array(iris)[..., 3])))
        upper_line = almond[: len(almond) // 2]
        d.line(upper_line, fill=(25, 18, 15, 255), width=max(2, int(0.035 * a)))
        d.line(almond[len(almond) // 2 :], fill=_rgb(skin, 0.55) + (255,), width=max(1, int(0.012 * a)))
        # lid fold above the eye
        fold = [(x, y - 0.05 * a - up * 0.3) for x, y in upper_line[3:-3]]
        d.line(fold, fill=_rgb(skin, 0.6) + (255,), width=max(1, int(0.012 * a)))
        if au6_ > 0:  # crow's feet and a raised cheek
            ox = ex + side * 0.55 * w
            for j in (-1, 0, 1):
                d.line([(ox, ey + j * 0.03 * a), (ox + side * 0.12 * a, ey + j * 0.06 * a)], fill=_rgb(skin, 1 - 0.35 * au6_) + (255,), width=max(1, int(0.01 * a * (1 + au6_))))
            d.arc([ex - 0.6 * w, ey + 0.05 * a, ex + 0.6 * w, ey + 0.3 * a], 200, 340, fill=_rgb(skin, 1 - 0.3 * au6_) + (255,), width=max(1, int(0.02 * a * au6_)))
        f.landmarks.append((ex, ey))
        f.grow("eyes", [(ex - 0.7 * w, ey - 0.4 * w), (ex + 0.7 * w, ey + 0.45 * w)])


def _brows(f: _Face) -> None:
    """Brows: AU4 lowers them and draws the inner ends together, with furrows between; AU9 lowers them a little."""
    d, a, ident, skin = f.draw, f.a, f.identity, f.identity.skin
    asym, eye_y, ew, au4 = ident.asymmetry, ident.eye_y, ident.eye_w, f.au["AU4"]
    for side in (-1, 1):
        droop = asym * 0.05 if f.weak(side) else 0.0
        au4_, au9_ = au4 * f.gain(side), f.au["AU9"] * f.gain(side)
        base_y = eye_y - ident.brow_gap + 0.09 * au4_ + 0.03 * au9_ + droop
        inner_x = side * max(0.1, ident.eye_dx - ew * 0.62 - 0.05 * au4_)
        outer_x = side * (ident.eye_dx + ew * 0.7)
        inner_y = base_y + 0.06 * au4_ - 0.01 * (1 - au4_)
        t = np.linspace(0, 1, 12)
        xs = inner_x + (outer_x - inner_x) * t
        ys = inner_y + (base_y + 0.02 - inner_y) * t - 0.06 * np.sin(np.pi * t) * (1 - 0.5 * au4_)
        th = ident.brow_thick * (1 - 0.4 * t)
        top = [f.P(x, y - h / 2) for x, y, h in zip(xs, ys, th)]
        bot = [f.P(x, y + h / 2) for x, y, h in zip(xs[::-1], ys[::-1], th[::-1])]
        brow_color = tuple(int(c * 0.8) for c in ident.hair)
        d.polygon(top + bot, fill=brow_color + (255,))
        f.grow("brows", top + bot)
    if au4 > 0:
        for j in (-1, 1):
            x = j * 0.045
            y0 = eye_y - ident.brow_gap + 0.02
            d.line([f.P(x, y0), f.P(x * 0.8, y0 + 0.14)], fill=_rgb(skin, 1 - 0.4 * au4) + (255,), width=max(1, int(0.016 * a * (0.5 + au4))))
        f.grow("brows", [f.P(-0.1, eye_y - ident.brow_gap), f.P(0.1, eye_y - ident.brow_gap + 0.2)])


def _nose(f: _Face) -> None:
    """Nose: bridge shading, tip, nostrils. AU9 wrinkles the bridge and lifts the nostrils (AU10 a little)."""
    d, a, P, ident, skin = f.draw, f.a, f.P, f.identity, f.identity.skin
    eye_y, au9 = ident.eye_y, f.au["AU9"]
    nose_y = f.nose_y = eye_y + ident.nose_len
    nw = ident.nose_w
    lift = 0.03 * au9 + 0.015 * f.au["AU10"]
    d.line([P(-0.07, eye_y + 0.05), P(-0.09, nose_y - 0.08)], fill=_rgb(skin, 0.85) + (255,), width=max(2, int(0.03 * a)))
    d.ellipse([*P(-nw * 0.55, nose_y - 0.1 - lift), *P(nw * 0.55, nose_y + 0.03 - lift)], fill=_rgb(skin, 1.05) + (255,))
    for side in (-1, 1):
        nx = side * nw * (0.45 + 0.15 * au9)
        d.ellipse([*P(nx - 0.11, nose_y - 0.09 - lift), *P(nx + 0.11, nose_y + 0.03 - lift)], fill=_rgb(skin, 0.93) + (255,))
        d.ellipse([*P(side * nw * 0.38 - 0.05, nose_y - 0.02 - lift), *P(side * nw * 0.38 + 0.05, nose_y + 0.02 - lift)], fill=(50, 30, 28, 255))
    if au9 > 0:
        for j in range(3):
            y = eye_y + 0.1 + j * 0.05
            d.line([P(-0.09, y), P(0.09, y)], fill=_rgb(skin, 1 - 0.35 * au9) + (255,), width=max(1, int(0.014 * a * (0.5 + au9))))
    f.landmarks.append(P(0, nose_y - lift))
    f.grow("nose", [P(-nw - 0.1, eye_y + 0.05), P(nw + 0.1, nose_y + 0.05)])


def _mouth(f: _Face) -> None:
    """Mouth: AU10 lifts the upper lip, AU12 pulls the corners up, AU25/26 part the lips and drop the jaw, AU19 puts
    the tongue out; the nasolabial folds deepen with AU10, AU12 and AU6."""
    d, a, P, size, ident, skin = f.draw, f.a, f.P, f.size, f.identity, f.identity.skin
    au = f.au
    asym, gain = ident.asymmetry, f.gain
    my = ident.mouth_y
    mw = ident.mouth_w * (1 + 0.15 * au["AU12"]) / 2
    corner_up = {side: 0.07 * au["AU12"] * gain(side) for side in (-1, 1)}
    gap = 0.02 * au["AU25"] + 0.12 * au["AU26"]
    if au["AU19"] > 0:  # the tongue shows: the mouth opens for it
        gap = max(gap, 0.05 + 0.04 * au["AU19"])
    lt = ident.lip_thick
    left_corner = P(-mw, my - corner_up[-1] + (asym * 0.05 if f.weak(-1) else 0.0))
    right_corner = P(mw, my - corner_up[1] + (asym * 0.05 if f.weak(1) else 0.0))
    t = np.linspace(-1, 1, 20)
    xs = t * mw
    bow = 0.012 * np.cos(np.pi * t * 1.5)
    curve = -np.where(t < 0, corner_up[-1], corner_up[1]) * np.abs(t) ** 2 + asym * 0.05 * np.clip(t * ident.weak_side, 0, None)
    raise_ = 0.05 * au["AU10"] * np.where(t < 0, gain(-1), gain(1))  # AU10 lifts the upper lip
    up_top = [P(x, my - lt - r * (1 - t_**2) - b_ + c) for x, t_, b_, c, r in zip(xs, t, bow, curve, raise_)]
    up_bot = [P(x, my - 0.002 - r * (1 - t_**2) * 0.8 + c) for x, t_, c, r in zip(xs, t, curve, raise_)]
    lo_top = [P(x, my + gap * (1 - t_**2) + c) for x, t_, c in zip(xs, t, curve)]
    lo_bot = [P(x, my + gap * (1 - t_**2) + lt * 1.2 * (1 - t_**2) ** 0.5 + 0.01 + c) for x, t_, c in zip(xs, t, curve)]
    opening = up_bot + lo_top[::-1]
    if gap > 0.005 or raise_.max() > 0.01:
        d.polygon(opening, fill=(60, 20, 22, 255))
        teeth = [(x, y) for x, y in up_bot] + [(x, y + 0.05 * a) for x, y in up_bot[::-1]]
        mask = Image.new("L", (size, size), 0)
        ImageDraw.Draw(mask).polygon(opening, fill=255)
        tl = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        ImageDraw.Draw(tl).polygon(teeth, fill=(235, 232, 220, 255))
        f.layer.paste(tl, (0, 0), Image.fromarray(np.minimum(np.array(mask), np.array(tl)[..., 3])))
    d.polygon(up_top + up_bot[::-1], fill=ident.lips + (255,))
    d.polygon(lo_top + lo_bot[::-1], fill=tuple(min(255, int(c * 1.08)) for c in ident.lips) + (255,))
    d.line(up_bot, fill=(70, 30, 30, 255), width=max(1, int(0.012 * a)))
    tongue: list[tuple[float, float]] = []
    if au["AU19"] > 0:  # stuck out over the lower lip, a little to one side
        tx, ty = P(0.04, my + gap * 0.7)
        tw, th = 0.2 * a, (0.12 + 0.14 * au["AU19"]) * a
        tongue = [(tx - tw, ty - 0.04 * a), (tx + tw, ty + th)]
        d.ellipse([*tongue[0], *tongue[1]], fill=(196, 88, 98, 255))
        d.line([(tx, ty), (tx, ty + 0.6 * th)], fill=(160, 60, 72, 255), width=max(1, int(0.01 * a)))
    nw = ident.nose_w
    for side in (-1, 1):
        fold_k = min(1.0, 0.3 + (0.8 * au["AU10"] + 0.6 * au["AU12"] + 0.3 * au["AU6"]) * gain(side))
        pts = [P(side * (nw + 0.06), f.nose_y - 0.02), P(side * (ident.mouth_w / 2 + 0.08), my - corner_up[side] - 0.02), P(side * (ident.mouth_w / 2 + 0.1), my + 0.08)]
        d.line(pts, fill=_rgb(skin, 1 - 0.3 * fold_k) + (255,), width=max(1, int(0.018 * a * fold_k + 1)), joint="curve")
    f.landmarks.extend([left_corner, right_corner])
    f.grow("mouth", up_top + lo_bot + tongue)
    # AU10's region: the upper lip and what its raise uncovers, up to where the lip rests when AU10 is full
    f.grow("upper_lip", up_top + up_bot + [P(x, my - lt - 0.05 - b_) for x, b_ in zip(xs, bow)])
    # the jaw drops with AU26: extend the chin
    if au["AU26"] > 0:
        d.chord([f.cx - 0.7 * a, f.cy + f.b - 0.3 * a, f.cx + 0.7 * a, f.cy + f.b + 0.12 * a * au["AU26"]], 0, 180,
                fill=_rgb(skin) + (255,))


def _lit(f: _Face) -> Image.Image:
    """The layer lit: an ellipsoid's Lambert shading over the head, a shadow under the chin, a faint skin texture,
    then softened."""
    size, a, b, cx, cy = f.size, f.a, f.b, f.cx, f.cy
    arr = np.asarray(f.layer).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    nx_ = (xx - cx) / (a * 1.05)
    ny_ = (yy - cy) / (b * 1.05)
    r2 = nx_**2 + ny_**2
    nz = np.sqrt(np.clip(1 - r2, 0, 1))
    lx, ly = f.nuisance.light_dir
    lz = np.sqrt(max(0.05, 1 - lx * lx - ly * ly))
    lam = np.clip(nx_ * lx + ny_ * ly + nz * lz, 0, 1)
    shade = np.where(r2 < 1, 0.72 + 0.4 * lam, 0.85)
    arr[..., :3] *= shade[..., None]
    chin = np.exp(-(((yy - (cy + b)) / (0.12 * a)) ** 2)) * (np.abs(xx - cx) < 0.5 * a)
    arr[..., :3] *= (1 - 0.3 * chin)[..., None]
    tex = np.random.default_rng(f.nuisance.background_seed + 1).normal(0, 1.5, (size // 8, size // 8)).astype(np.float32)
    tex_img = np.asarray(Image.fromarray(tex).resize((size, size), Image.BICUBIC))
    arr[..., :3] += tex_img[..., None]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGBA").filter(ImageFilter.GaussianBlur(radius=SUPERSAMPLE * 0.6))


def _placed(f: _Face, layer: Image.Image, width: int, height: int) -> Rendered:
    """The lit face scaled to the frame, rolled, pasted over a background, with the camera's brightness, noise and
    blur; its landmarks and regions carried into the frame's pixels."""
    nuisance, size, cx, cy = f.nuisance, f.size, f.cx, f.cy
    target_head_h = nuisance.scale * height  # head height (2b) in output pixels
    zoom = target_head_h / (2 * f.b / SUPERSAMPLE) / SUPERSAMPLE
    out_side = max(8, int(round(size * zoom)))
    layer = layer.resize((out_side, out_side), Image.LANCZOS)
    # rolled at the frame's scale, not the supersampled layer's: the same turn about the same point, a ninth of
    # the pixels at the usual sizes
    layer = layer.rotate(nuisance.roll, resample=Image.BICUBIC, center=(cx * out_side / size, cy * out_side / size))
    frame = background(width, height, nuisance.background_seed)
    ox = int(round(nuisance.cx * width - cx * zoom))
    oy = int(round(nuisance.cy * height - cy * zoom))
    frame.paste(layer, (ox, oy), layer)

    theta = np.deg2rad(-nuisance.roll)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])

    def to_frame(p: tuple[float, float]) -> tuple[float, float]:
        v = rot @ (np.array(p) - np.array([cx, cy])) + np.array([cx, cy])
        return (float(v[0] * zoom + ox), float(v[1] * zoom + oy))

    out = np.asarray(frame).astype(np.float32) * nuisance.brightness
    out += np.random.default_rng(nuisance.background_seed + 2).normal(0, nuisance.noise, out.shape)
    img = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    if nuisance.blur > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(radius=nuisance.blur))
    if nuisance.motion > 0:
        img = Image.fromarray(motion_blur(np.asarray(img), nuisance.motion * height, nuisance.motion_angle))
    region_boxes = {}
    for name, (x0, y0, x1, y1) in f.regions.items():
        corners = [to_frame(p) for p in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))]
        xs_, ys_ = [c[0] for c in corners], [c[1] for c in corners]
        region_boxes[name] = (min(xs_), min(ys_), max(xs_), max(ys_))
    return Rendered(image=np.asarray(img), landmarks=np.array([to_frame(p) for p in f.landmarks], dtype=np.float32),
                    regions=region_boxes)


def render(identity: Identity, aus: dict[str, float], nuisance: Nuisance, width: int, height: int) -> Rendered:
    """Draw one face with the given action-unit intensities (0..5) into a width x height frame: the head, eyes,
    brows, nose and mouth on a supersampled layer (in that order: later parts cover earlier ones), then light,
    then placement in the frame."""
    face = _start(identity, aus, nuisance)
    for step in (_head, _eyes, _brows, _nose, _mouth):
        step(face)
    return _placed(face, _lit(face), width, height)
