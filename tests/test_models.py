"""The registry: every network builds, counts its parameters like the paper, trains a step, finds its weights."""

import json
import subprocess
import sys

import numpy as np
import pytest

from pipelines.errors import PainsearchError
from pipelines.models import MODELS, PRETRAINED, get_spec
from pipelines.models.build import build
from pipelines.models.weights import fetch_weights, weights_file_name

# The paper's Table 3 (6 classes), to the precision it was published with.
TABLE3 = {"alexnet": (88.7, 1e6), "weinet": (1.7, 1e6), "songnet": (172.7, 1e3), "silnet": (184.9, 1e6),
          "vgg16": (14.7, 1e6), "vgg19": (20.0, 1e6), "resnet50": (23.6, 1e6), "resnet101v2": (42.6, 1e6),
          "inceptionv3": (21.8, 1e6), "xception": (20.9, 1e6)}


def small_size(name: str) -> int:
    return max(32, get_spec(name).min_size)


def test_registry_is_the_paper_ten():
    assert set(MODELS) == set(TABLE3)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_paper_size_count_and_softmax(name):
    import tf_keras as keras

    spec = get_spec(name)
    model = build(name, n_classes=6)
    assert model.input_shape == (None, spec.paper_size, spec.paper_size, 3)
    published, unit = TABLE3[name]
    assert round(model.count_params() / unit, 1) == published
    out = model(np.random.default_rng(0).uniform(0, 255, (1, spec.paper_size, spec.paper_size, 3)).astype("float32")).numpy()
    assert out.shape == (1, 6) and np.isclose(out.sum(), 1.0, atol=1e-4)
    keras.backend.clear_session()


DEPTH = 0.5  # strictly between 0 and 1: part of the pretrained backbone frozen, as the paper's search tries


# the fast tier trains the networks without batch normalisation (the four trained from scratch, and the VGGs from
# ImageNet weights); the full suite every network, the deep ones with it among them
DEEP = {"inceptionv3", "resnet50", "resnet101v2", "xception"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in DEEP else n for n in sorted(MODELS)])
def test_one_step_save_reload_predict_explain(name, standin_weights, tmp_path):
    """Every network as a study trains it at a small size (pretrained ones from ImageNet weight files, part of the
    backbone frozen): one training step, save, reload through the one loader, the same predictions, one LIME map."""
    import tf_keras as keras

    from analysis.config import LimeConfig
    from analysis.lime_heatmaps import lime_maps
    from pipelines.bootstrap import tensorflow
    from pipelines.config import train_config
    from pipelines.models.loader import load_trained, rebuild
    from pipelines.training.loop import compile_model

    size = small_size(name)
    pretrained = get_spec(name).pretrained
    cfg = train_config({"model": name, "size": size, "weights": "imagenet", "weights_dir": str(standin_weights),
                        "finetune_depth": DEPTH if pretrained else 0.0, "learning_rate": 1e-4})
    model = compile_model(cfg, tensorflow().distribute.get_strategy())
    if pretrained:
        backbone = model.layers[[layer.name for layer in model.layers].index("avg_pool") - 1]
        assert not backbone.layers[0].trainable and backbone.layers[-1].trainable
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (4, size, size, 3)).astype("float32")
    assert np.isfinite(model.train_on_batch(x, np.array([0, 1, 0, 1]))).all()
    model.save_weights(str(tmp_path / "model.h5"))
    before = model(x, training=False).numpy()
    keras.backend.clear_session()
    loaded = load_trained(cfg, tmp_path / "model.h5")
    assert np.allclose(loaded(x, training=False).numpy(), before, atol=1e-5)
    if pretrained and name in ("vgg16", "resnet50"):  # the defect the loader mends: rebuilt unfrozen, the file does not fit
        with pytest.raises(ValueError):
            rebuild(cfg.model_copy(update={"finetune_depth": 0.0})).load_weights(str(tmp_path / "model.h5"))
    landmarks = [np.array([[0.35, 0.45], [0.65, 0.45], [0.5, 0.6], [0.38, 0.75], [0.62, 0.75]]) * size]
    (heat,) = lime_maps(loaded, x[:1], landmarks, [int(before[0].argmax())], LimeConfig(num_samples=20, n_segments=8))
    assert heat.shape == (112, 112) and np.isfinite(heat).any()
    keras.backend.clear_session()


def test_too_small_input_names_the_minimum():
    with pytest.raises(PainsearchError, match="inceptionv3 needs an input of at least 75 px"):
        build("inceptionv3", size=64)


def test_unknown_model_lists_the_choices():
    with pytest.raises(PainsearchError, match="alexnet, inceptionv3, resnet101v2"):
        build("lenet")


def test_imagenet_for_a_scratch_network_is_refused():
    with pytest.raises(PainsearchError, match="trained from scratch"):
        build("songnet", weights="imagenet")


def test_missing_imagenet_weights_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(PainsearchError) as err:
        build("resnet50", size=32, weights="imagenet")
    msg = str(err.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in msg and "fetch-weights" in msg


@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0])
def test_finetune_depth_freezes_the_backbone_from_its_input(depth):
    model = build("resnet50", size=32, finetune_depth=depth)
    backbone = model.get_layer("resnet50")
    frozen = [not layer.trainable for layer in backbone.layers]
    n = int(round(depth * len(frozen)))
    assert frozen == [True] * n + [False] * (len(frozen) - n)
    bn = [layer for layer in backbone.layers[:n] if "bn" in layer.name]
    assert all(not layer.trainable for layer in bn)
    if depth == 1.0:
        assert len(model.trainable_weights) == 2  # the head's kernel and bias


def test_frozen_batchnorm_uses_its_moving_statistics():
    """A fully frozen backbone gives the same output in training and inference mode."""
    model = build("resnet50", size=32, finetune_depth=1.0)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    assert np.allclose(model(x, training=True).numpy(), model(x, training=False).numpy(), atol=1e-5)


def test_augmentation_draws_as_a_sequential_and_is_traced_once_per_build(monkeypatch):
    """The augmentation layer gives the draws a `keras.Sequential` of the same steps gives under the same seed (a
    trial trains as it did), inactive at inference, with no weights; building a model traces each step once, where
    a Sequential traces it twice (most of building a small network: tests of speed live in benchmarks/)."""
    import tf_keras as keras
    from tf_keras import layers

    from pipelines.bootstrap import tensorflow
    from pipelines.models.build import Augment

    tf = tensorflow()
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")

    def draws(block):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((32, 32, 3))
        model = keras.Model(inputs, block()(inputs))
        step = tf.function(lambda t: model(t, training=True))
        return [step(x).numpy(), step(x).numpy()], model

    ours, model = draws(lambda: Augment(name="augment"))
    theirs, _ = draws(lambda: keras.Sequential(Augment().steps, name="augment"))
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs)) and not np.array_equal(ours[0], x)
    assert np.array_equal(model(x, training=False).numpy(), x) and model.weights == []
    calls = []
    original = layers.RandomRotation.call
    monkeypatch.setattr(layers.RandomRotation, "call", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    build("weinet", size=32, augment=True)
    assert len(calls) == 1
    keras.backend.clear_session()


def test_preprocessing_choice():
    app = build("vgg16", size=32)
    rescale = build("vgg16", size=32, preprocessing="rescale")
    assert "preprocess_input" in [layer.name for layer in app.layers]
    assert "rescale" in [layer.name for layer in rescale.layers]
    assert "rescale" in [layer.name for layer in build("weinet", size=32).layers]


def test_fetched_weights_are_checked_against_kerass_hash(weights_mirror, tmp_path):
    """A mirror serving other bytes than Keras's published file (here, random weights) is refused, nothing written."""
    url, _, _ = weights_mirror
    with pytest.raises(PainsearchError, match="md5 is [0-9a-f]{32}, not the 6d6bbae143d832006294945121d1f1fc") as err:
        fetch_weights(str(tmp_path / "w"), ["vgg16"], url)
    assert "nothing was written" in str(err.value) and not (tmp_path / "w").exists()


def test_fetch_weights_then_build_from_the_folder(weights_mirror, tmp_path, monkeypatch):
    """The stand-in file's own hash in place of Keras's (the real file cannot be fetched here): fetched once,
    then built from."""
    import dataclasses

    from pipelines.models import specs

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-cache"))
    url, expected, md5 = weights_mirror
    monkeypatch.setitem(specs.MODELS, "vgg16", dataclasses.replace(specs.MODELS["vgg16"], weights_md5=md5))
    assert fetch_weights(str(tmp_path / "w"), ["vgg16"], url) == [weights_file_name("vgg16")]
    assert fetch_weights(str(tmp_path / "w"), ["vgg16"], url) == []  # already there: nothing fetched again
    model = build("vgg16", size=32, weights="imagenet", weights_dir=str(tmp_path / "w"))
    loaded = model.get_layer("vgg16").get_weights()
    assert len(loaded) == len(expected) > 0 and all(np.array_equal(a, b) for a, b in zip(loaded, expected))


def test_fetch_weights_cli_and_unreachable_mirror(weights_mirror, tmp_path):
    url, _, _ = weights_mirror
    exe = [sys.executable, "-m", "cluster.cli", "models", "fetch-weights", "--to", str(tmp_path / "w"), "--models", "vgg16"]
    refused = subprocess.run(exe + ["--from", url], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "that Keras publishes" in refused.stderr and "Traceback" not in refused.stderr
    bad = subprocess.run([*exe[:-2], "--models", "resnet50", "--from", "http://127.0.0.1:9/"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Could not download" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow  # builds all ten networks again: test_paper_size_count_and_softmax checks each count in the fast tier
def test_models_cli_prints_table_3(capsys):
    from cluster.cli import main

    assert main(["models", "--classes", "6", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name, (published, unit) in TABLE3.items():
        assert round(rows[name]["parameters"] / unit, 1) == published
        assert rows[name]["pretrained"] == (name in PRETRAINED)
    assert rows["weinet"]["input_size"] == 64 and rows["silnet"]["input_size"] == 150


def test_detector_and_trainer_live_in_one_process():
    """torchvision imported after TensorFlow segfaults here: `torch_first` prevents it, and without it the detector
    refuses to load with a sentence instead of crashing."""
    code = ("import numpy as np; from pipelines.bootstrap import tensorflow, torch_first; torch_first(); tensorflow(); "
            "from facenet_pytorch import MTCNN; "
            "MTCNN(keep_all=True).detect(np.zeros((64, 64, 3), np.uint8)); print('alive')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "alive" in r.stdout, r.stderr[-500:]
    refused = ("from pipelines.bootstrap import tensorflow; tensorflow(); from pipelines.config import PreprocessConfig; "
               "from pipelines.errors import PainsearchError; from pipelines.preprocess.faces import FaceDetector\n"
               "try:\n    FaceDetector(PreprocessConfig())\nexcept PainsearchError as e:\n    print('refused:', e)")
    r = subprocess.run([sys.executable, "-c", refused], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "refused: Face detection cannot start" in r.stdout, r.stderr[-500:]
