"""Typed, validated settings: every default of the data pipeline lives here, once.

Config files are YAML; a study config keeps these under `data:`. Relative paths in a file are
relative to the file's folder, so a config travels with its data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.errors import PainsearchError
from pipelines.models.specs import MODEL_NAMES, get_spec

PREPROCESS_VERSION = "2"  # 2: rows record whether their background was removed
Background = Literal["u2net_human_seg", "grabcut", "none"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PreprocessConfig(Strict):
    """How a source image becomes the stored square face."""

    size: int = Field(224, ge=16, le=1024, description="side of the stored face, pixels")
    margin: float = Field(0.2, ge=0.0, le=1.0, description="added on each side, as a fraction of the detector box")
    min_confidence: float = Field(0.9, ge=0.0, le=1.0, description="MTCNN probability a face needs")
    multiple_faces: Literal["largest", "reject"] = "largest"
    detect_max_side: int = Field(1024, ge=160, description="larger frames are downscaled for detection")
    background: Background = "u2net_human_seg"
    u2net_dir: str | None = Field(None, description="folder holding u2net_human_seg.onnx, or an s3:// prefix that "
                                                     "`models fetch-weights --u2net` filled (else rembg's cache)")
    max_image_pixels: int = Field(120_000_000, ge=1_000_000, le=178_956_970,
                                  description="larger images are refused as decompression bombs (at most Pillow's own limit)")


class SourcesConfig(Strict):
    unbc: str | None = None
    mintpain: str | None = None
    manifest: str | None = None
    cppain: str | None = None

    def given(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v}


class PrepareConfig(Strict):
    """Everything `painsearch data prepare` needs."""

    sources: SourcesConfig
    out: str
    preprocess: PreprocessConfig = PreprocessConfig()
    frames_per_subject_class: int = Field(20, ge=0, description="video sources; 0 keeps every frame")
    seed: int = 0
    engine: Literal["ray", "local"] = "ray"
    workers: int = Field(1, ge=1, description="Ray actors that detect faces")
    threads_per_worker: int = Field(1, ge=1)
    chunk_size: int = Field(32, ge=1, description="images per shard file and unit of resumable work")
    subject_key_file: str | None = None
    allow_outside_paths: bool = Field(False, description="let manifest and ratings paths leave their own folder")
    s3_endpoint: str | None = None

    @field_validator("out")
    @classmethod
    def _out_not_empty(cls, v: str) -> str:
        if not v:
            raise ValueError("must name a folder or s3://bucket/prefix")
        return v


def explain(exc: ValidationError, where: str) -> PainsearchError:
    """One sentence from pydantic's report: the first problem, its field, and what was expected."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "is not a known setting"
    elif err["type"] == "literal_error":
        msg = f"must be one of {err['ctx']['expected']}"
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return PainsearchError(f"In {where}, `{loc}` {msg}{more}; fix it and run again.")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise PainsearchError(f"The config file {path} does not exist; pass the path of a YAML config (see configs/).")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise PainsearchError(f"The config file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8.") from exc
    except yaml.YAMLError as exc:
        raise PainsearchError(f"The config file {path} is not valid YAML ({str(exc).splitlines()[0]}); fix its syntax.") from exc
    if not isinstance(data, dict):
        raise PainsearchError(f"The config file {path} does not hold a mapping of settings; see configs/ for examples.")
    return data


def validate(model: type[BaseModel], data: dict[str, Any], where: str):
    """`data` validated into `model`, or the one-sentence error that names the setting and `where` it was."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise explain(exc, where) from exc


def resolve_path(base: Path, value: Any) -> Any:
    """A config's path relative to the config file's folder; URIs and absolute paths stay as they are, and so does
    anything that is not text (validation then says what the field expects)."""
    if not isinstance(value, str) or not value or "://" in value:
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def prepare_config(data: dict[str, Any], base: Path | None = None, where: str = "the prepare settings") -> PrepareConfig:
    """Validate a mapping into a `PrepareConfig`; relative paths are taken from `base`."""
    data = dict(data)
    if base is not None:
        if isinstance(data.get("sources"), dict):
            data["sources"] = {k: resolve_path(base, v) for k, v in data["sources"].items()}
        data["out"] = resolve_path(base, data.get("out"))
        if data.get("subject_key_file"):
            data["subject_key_file"] = resolve_path(base, data["subject_key_file"])
        if isinstance(data.get("preprocess"), dict) and data["preprocess"].get("u2net_dir"):
            data["preprocess"] = {**data["preprocess"], "u2net_dir": resolve_path(base, data["preprocess"]["u2net_dir"])}
    return validate(PrepareConfig, data, where)


def load_prepare_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PrepareConfig:
    """A prepare config from a file: the `data:` section of a study config, or a file of its own."""
    path = Path(path)
    raw = load_yaml(path)
    data = raw.get("data", raw)
    if not isinstance(data, dict):
        raise PainsearchError(f"In {path}, `data` must be a mapping of prepare settings; see configs/ for examples.")
    merged = merge(data, overrides or {})
    return prepare_config(merged, base=path.parent.resolve(), where=str(path))


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """`a` updated by `b`, nested mappings merged; None in `b` means "not given" and changes nothing."""
    out = dict(a)
    for k, v in b.items():
        if v is None:
            continue
        if isinstance(v, dict):
            out[k] = merge(out.get(k) if isinstance(out.get(k), dict) else {}, v)
        else:
            out[k] = v
    return out


class TrainSettings(Strict):
    """What every run of a study shares (the search varies none of it): the `study.train` section of a config."""

    size: int | None = Field(None, ge=8, description="input side in pixels; None: the paper's size for each network")
    n_classes: int = Field(2, ge=2)
    batch_size: int = Field(32, ge=1, description="global: split across workers")
    weights: Literal["imagenet", "none"] = Field("imagenet", description="ImageNet where the network has it")
    weights_dir: str | None = Field(None, description="folder or s3:// prefix of the ImageNet weights (else Keras's cache)")
    preprocessing: Literal["application", "rescale"] = "application"
    augment: bool = True
    imbalance: Literal["class_weight", "oversample", "none"] = "class_weight"
    patience: int = Field(5, ge=0, description="epochs without improvement before stopping; 0 never stops early")
    optimizer: Literal["adam", "rmsprop", "sgd"] | None = Field(None, description="None: the reference code's choice")
    mixed_precision: Literal["auto", "on", "off"] = Field("auto", description="auto: on when GPUs are used")
    deterministic: bool = Field(True, description="TensorFlow's op determinism: the same seed gives the same run on "
                                                  "the same hardware; false lets cuDNN pick its fastest kernels")
    allow_cpu_fallback: bool = Field(False, description="a run Ray gave a GPU that TensorFlow cannot see trains on the "
                                                         "CPU instead of stopping (nodes that declare GPUs they lack)")
    checkpoint_every_s: float = Field(300.0, ge=0, description="a run writes its weights when an epoch improves on its "
                                      "best, at its end, and else after this many seconds of training since the last "
                                      "write (what a kill can cost it); 0: after every epoch")
    steps_per_execution: int = Field(1, ge=1, le=1000, description="training steps per call into the compiled train "
                                     "step: more keep a GPU busy with a small network between the host's calls; the "
                                     "steps, and so the trained weights, are the same")


class TrainConfig(TrainSettings):
    """One training run of one network: the shared settings plus what the search varies."""

    model: str
    learning_rate: float | None = Field(None, gt=0, le=1.0, description="None: the reference code's choice")
    epochs: int = Field(30, ge=1, le=500)
    finetune_depth: float = Field(0.0, ge=0.0, le=1.0, description="fraction of the pretrained backbone frozen")
    monitor: Literal["f1_macro", "accuracy", "loss"] = "f1_macro"
    seed: int = 0

    @model_validator(mode="after")
    def _weights_where_the_network_has_them(self) -> TrainConfig:
        if self.model not in MODEL_NAMES:
            raise ValueError(f"names an unknown network {self.model!r}; choose from {', '.join(sorted(MODEL_NAMES))}")
        if self.weights == "imagenet" and not get_spec(self.model).pretrained:
            object.__setattr__(self, "weights", "none")  # `imagenet` means ImageNet where the network has it
        return self


def train_config(data: dict[str, Any], where: str = "the training settings") -> TrainConfig:
    return validate(TrainConfig, data, where)
