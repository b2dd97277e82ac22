"""How the phantom's CP faces differ from its PAIN-DB sources, each difference taken from the paper's own account.

The paper (Discussion) gives its reasons why networks trained on the public pain datasets do worse on adults
with cerebral palsy. Each factor below draws one of them, and each can be switched off alone, so the scenario-gap
benchmark can measure what each one costs. With every factor off, a CP face is drawn like a source face.

- `expressiveness`: "Cognitive factors and motor impairment may affect the gestures, body movement, and mimics
  ... what could lead to idiosyncratic pain expressions or mask pain of low intensity": each CP person's pain
  action units show a few intensity steps weaker, so weak pain does not show and strong pain shows weakened.
- `one_sided`: the same sentence, for people whose motor impairment is on one side: their expression shows on
  one half of the face only, and that half droops.
- `rest_movements`: involuntary movements at rest (the same sentence): brow lowering, cheek raising, lid
  tightening, nose wrinkling and lip raising at low intensity, in frames of both classes. The raters scored
  with the video's context, so these movements do not make a rest frame's label pain.
- `pose`: wider head pose and motion blur in CP frames (the same sentence: "body movement").
- `shortcut`: "the frequent appearance of subjects in the test images exhibiting open mouths and exposed teeth,
  a phenomenon potentially associated by the networks with pain expressions seen during training": in the
  sources an open mouth goes with pain more often than with rest, as in their painful frames, while CP faces
  open their mouths and show teeth in both classes.
- `tongue`: "sticking out the tongue can be misleadingly labeled as pain ... while they can express other
  physiological or emotional events": CP rest frames show the tongue as often as pain frames do.
- `smile`: "smiling or laughing, may be used to express pain in individuals with poorer communication or motor
  ability": some CP people smile in their pain frames.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from pipelines.errors import PainsearchError, choices

# `expressiveness`: each pain action unit of a CP person shows this many intensity steps weaker (drawn once per
# person, never below 0): weak pain vanishes, strong pain shows weakened
EXPRESSIVENESS = (0.5, 2.0)
# `one_sided`: this share of CP people shows expression on one side only, at this share of its strength there
ONE_SIDED_SHARE = 0.4
ONE_SIDED_GAIN = 0.15
# `rest_movements`: this share of CP frames (of both classes) has 2-3 of these AUs at intensity 1-2
REST_MOVEMENT_RATE = 0.6
REST_MOVEMENT_AUS = ("AU4", "AU6", "AU7", "AU9", "AU10")
# `pose`: head roll and yaw spread this many times wider than in the sources; this share of frames has motion
# blur along a random direction, as long as this share of the frame's height
POSE_SPREAD = 2.2
MOTION_BLUR_RATE = 0.5
MOTION_BLUR_LENGTH = (0.012, 0.03)
# `shortcut`: how often the mouth is open (lips parted, AU25; the jaw dropped, AU26, at 0.8 of that), by dataset
# group and class
MOUTH_OPEN = {"sources_pain": 0.75, "sources_rest": 0.1, "cp": 0.7}
MOUTH_OPEN_UNLINKED = 0.3  # every group and class, with the factor off
# `tongue`: this share of CP frames of both classes shows the tongue (FACS AU19, tongue show)
TONGUE_RATE = 0.3
# `smile`: this share of CP people smile (AU12 at 3-5) in their pain frames
SMILE_SHARE = 0.25


@dataclass(frozen=True)
class CPShift:
    """Which of the paper's reasons the phantom's CP faces show; all of them by default."""

    expressiveness: bool = True
    one_sided: bool = True
    rest_movements: bool = True
    pose: bool = True
    shortcut: bool = True
    tongue: bool = True
    smile: bool = True

    @classmethod
    def none(cls) -> "CPShift":
        return cls(**{name: False for name in FACTORS})

    @classmethod
    def only(cls, *names: str) -> "CPShift":
        """Just the named factors, the rest off: one factor alone for an ablation."""
        unknown = [n for n in names if n not in FACTORS]
        if unknown:
            raise PainsearchError(f"Unknown CP factor(s) {', '.join(map(repr, unknown))}; choose from {choices(FACTORS)}.")
        return replace(cls.none(), **{n: True for n in names})

    @classmethod
    def parse(cls, text: str) -> "CPShift":
        """`all`, `none`, or a comma-separated list of factors (`shortcut,tongue`)."""
        text = text.strip()
        if text == "all":
            return cls()
        if text == "none":
            return cls.none()
        return cls.only(*[t.strip() for t in text.split(",") if t.strip()])

    def mouth_open(self, cp: bool, pain: bool) -> float:
        """How often a face's mouth is open: tied to pain in the sources and open in both classes on CP faces
        with `shortcut` on; the same everywhere with it off."""
        if not self.shortcut:
            return MOUTH_OPEN_UNLINKED
        return MOUTH_OPEN["cp"] if cp else MOUTH_OPEN["sources_pain" if pain else "sources_rest"]

    def names(self) -> list[str]:
        return [name for name in FACTORS if getattr(self, name)]

    def label(self) -> str:
        """The inverse of `parse`: `all`, `none` or the factors on."""
        on = self.names()
        return "all" if len(on) == len(FACTORS) else "none" if not on else ",".join(on)


FACTORS: tuple[str, ...] = tuple(f.name for f in fields(CPShift))
