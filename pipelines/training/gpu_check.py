"""`painsearch gpu-check`: whether this machine can run the study's trials on its GPU, and what a trial pays there.

It reports what TensorFlow sees (devices, the CUDA and cuDNN it was built with, the GPU architectures it carries
compiled kernels for, memory growth, mixed precision, determinism), times CUDA's first compilation of kernels in
this process apart (an H100 has only PTX in this TensorFlow: every kernel is compiled at first use unless CUDA's
compute cache holds it), then runs every network of the registry for a few steps at its paper size, with the
paper's augmentation, a half-frozen backbone where there is one and the study's determinism, and times what a
trial pays: building and compiling the network, its first step (the trace), a step, images per second, the
host's work to lay out an epoch's input, and writing a checkpoint. Each network's traced step is also checked
for ops a GPU refuses under determinism (`pipelines.training.determinism`).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from pipelines.errors import PainsearchError
from pipelines.models.specs import MODELS, get_spec
from pipelines.progress import say


def tensorflow_report() -> dict[str, Any]:
    """What TensorFlow sees and was built for, with the settings a trial's process runs under."""
    from pipelines.bootstrap import tensorflow
    from pipelines.training.devices import build_info

    tf = tensorflow()
    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        gpus.append({"name": device.name, "model": details.get("device_name"),
                     "compute_capability": ".".join(map(str, details.get("compute_capability") or ())),
                     "memory_growth": tf.config.experimental.get_memory_growth(device)})
    info = build_info()
    built_for = info.get("cuda_compute_capabilities") or []
    for g in gpus:  # a card whose architecture has no compiled kernels runs CUDA's compiler on their PTX first
        sm = "sm_" + g["compute_capability"].replace(".", "")
        g["compiled_kernels"] = sm in built_for or any(sm[:4] == b[:4] and sm >= b for b in built_for if b.startswith("sm_"))
    return {"tensorflow": tf.__version__, **info, "gpus": gpus,
            "cuda_cache_path": os.environ.get("CUDA_CACHE_PATH", "~/.nv/ComputeCache (CUDA's default)"),
            "cuda_cache_maxsize": os.environ.get("CUDA_CACHE_MAXSIZE", "268435456 (CUDA's default, too small)"),
            "tf_force_gpu_allow_growth": os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH", "")}


def first_kernels_s() -> dict[str, float]:
    """A convolution's first run in this process (CUDA's context and, without compiled kernels for the card,
    its compilation from PTX) and its second."""
    from pipelines.bootstrap import tensorflow

    tf = tensorflow()
    x = tf.random.stateless_uniform((8, 64, 64, 3), seed=(0, 0))
    w = tf.random.stateless_uniform((3, 3, 3, 16), seed=(0, 1))
    times = []
    for _ in range(2):
        t = time.perf_counter()
        float(tf.reduce_sum(tf.nn.conv2d(x, w, 1, "SAME")))
        times.append(time.perf_counter() - t)
    return {"first_kernels_s": times[0], "warm_kernels_s": times[1]}


def check_network(name: str, size: int | None, steps: int, batch: int, mixed_precision: bool,
                  deterministic: bool) -> dict[str, Any]:
    """One network, as a trial runs it, timed part by part."""
    import tf_keras as keras

    from pipelines.bootstrap import tensorflow
    from pipelines.config import TrainConfig
    from pipelines.training import determinism
    from pipelines.training.loop import compile_model

    tf = tensorflow()
    spec = get_spec(name)
    size = max(size or spec.paper_size, spec.min_size)
    depth = 0.5 if spec.pretrained else 0.0
    cfg = TrainConfig(model=name, size=size, finetune_depth=depth, weights="none", augment=True, batch_size=batch,
                      deterministic=deterministic)
    determinism.apply(cfg.deterministic)
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")
    keras.utils.set_random_seed(cfg.seed)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (steps * batch, size, size, 3)).astype(np.float32)
    y = (np.arange(len(x)) % 2).astype(np.int64)
    out: dict[str, Any] = {"network": name, "size": size, "finetune_depth": depth, "batch": batch, "steps": steps,
                           "refused_ops": [], "error": ""}
    t = time.perf_counter()
    model = compile_model(cfg, tf.distribute.get_strategy())
    out["build_s"] = time.perf_counter() - t
    if deterministic:  # before anything runs: a refused op stops the first step on a GPU
        images = tf.TensorSpec((None, size, size, 3), tf.float32)
        step = tf.function(lambda a, b, w: model.train_step((a, b, w))).get_concrete_function(
            images, tf.TensorSpec((None,), tf.int64), tf.TensorSpec((None,), tf.float32))
        out["refused_ops"] = [str(f) for f in determinism.rejected(step)]
    try:
        if not out["refused_ops"]:
            out.update(_timings(model, x, y, batch, steps, cfg.seed))
    except tf.errors.OpError as exc:  # out of memory, a kernel that fails: the row says which, the check goes on
        out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    finally:
        keras.backend.clear_session()
        keras.mixed_precision.set_global_policy("float32")
    return out


def _timings(model, x: np.ndarray, y: np.ndarray, batch: int, steps: int, seed: int) -> dict[str, float]:
    """What a trial pays per part, on arrays already in memory."""
    from pipelines.training import checkpoint
    from pipelines.training.loop import numpy_batches

    out: dict[str, float] = {}
    epochs = numpy_batches(x, y, batch, seed)
    t = time.perf_counter()
    for _ in epochs(0):  # the host's part of an epoch: the order, the copies, the dataset
        pass
    out["host_epoch_s"] = time.perf_counter() - t
    t = time.perf_counter()
    model.fit(epochs(0), epochs=1, verbose=0)  # traces the step, then runs it
    out["first_epoch_s"] = time.perf_counter() - t
    t = time.perf_counter()
    model.fit(epochs(1), epochs=1, verbose=0)
    epoch_s = time.perf_counter() - t
    out["step_s"] = epoch_s / steps
    out["images_per_s"] = steps * batch / epoch_s
    out["trace_s"] = max(out["first_epoch_s"] - epoch_s, 0.0)
    with tempfile.TemporaryDirectory(prefix="painsearch-gpu-check-") as tmp:
        t = time.perf_counter()
        checkpoint.save(model, tmp, 0, {})
        out["checkpoint_s"] = time.perf_counter() - t
        out["checkpoint_mb"] = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp)) / 2**20
    return out


def run(models: list[str] | None = None, size: int | None = None, steps: int = 10, batch: int = 32,
        expect_gpu: bool = True, deterministic: bool = True, log=say) -> dict[str, Any]:
    """The whole check; raises `PainsearchError` (after the report is complete) when a GPU was expected and is
    missing or a network's step holds an op a GPU refuses."""
    names = list(models or MODELS)
    for n in names:
        get_spec(n)
    report: dict[str, Any] = {"tensorflow": tensorflow_report()}
    report["kernels"] = first_kernels_s()
    on_gpu = bool(report["tensorflow"]["gpus"])
    report["mixed_precision"] = on_gpu  # what `mixed_precision: auto` chooses
    report["deterministic"] = deterministic
    report["networks"] = []
    problems = []
    for n in names if on_gpu or not expect_gpu else []:  # no GPU where one is expected: say so at once
        row = check_network(n, size, steps, batch, on_gpu, deterministic)
        log(f"gpu-check: {n} " + (f"done ({row['images_per_s']:.0f} images/s)" if "images_per_s" in row
                                  else f"failed: {row['error'] or row['refused_ops'][0]}"))
        report["networks"].append(row)
    if expect_gpu and not on_gpu:
        problems.append("TensorFlow sees no GPU on this machine (its CUDA build: "
                        f"{report['tensorflow']['cuda_version']}); check `nvidia-smi`, the container's access to the "
                        "card (NVIDIA_VISIBLE_DEVICES, docker --gpus) and `tensorflow[and-cuda]`, or pass --cpu to "
                        "time the CPU")
    refused = [f"{r['network']}: {r['refused_ops'][0]}" for r in report["networks"] if r["refused_ops"]]
    if refused:
        problems.append(f"{len(refused)} network(s) hold ops a GPU refuses under determinism ({refused[0]}); report "
                        "it, or set train.deterministic: false")
    failed = [f"{r['network']}: {r['error']}" for r in report["networks"] if r["error"]]
    if failed:
        problems.append(f"{len(failed)} network(s) failed to train ({failed[0]}); a network that runs out of memory "
                        "needs a smaller batch or a whole card")
    report["ready"] = not problems
    report["problems"] = problems
    return report


def table(report: dict[str, Any]) -> str:
    tf = report["tensorflow"]
    lines = [f"TensorFlow {tf['tensorflow']} (CUDA {tf['cuda_version']}, cuDNN {tf['cudnn_version']}, kernels for "
             f"{', '.join(tf['cuda_compute_capabilities'] or [])})"]
    for g in tf["gpus"] or [{"name": "no GPU", "model": "", "compute_capability": "", "memory_growth": "",
                             "compiled_kernels": ""}]:
        lines.append(f"  {g['name']} {g['model']} sm {g['compute_capability']} memory growth {g['memory_growth']} "
                     f"compiled kernels {g['compiled_kernels']}")
    k = report["kernels"]
    lines.append(f"first kernels {k['first_kernels_s']:.2f} s (warm {k['warm_kernels_s']:.3f} s); CUDA cache "
                 f"{tf['cuda_cache_path']}, max {tf['cuda_cache_maxsize']}; mixed precision "
                 f"{'on' if report['mixed_precision'] else 'off'}; deterministic {report['deterministic']}")
    lines.append(f"{'network':<13}{'size':>5}{'build s':>9}{'trace s':>9}{'step s':>9}{'img/s':>9}{'host/epoch s':>14}"
                 f"{'ckpt s':>8}{'ckpt MB':>9}  refused ops")
    timed = [r for r in report["networks"] if "step_s" in r]
    for r in report["networks"]:
        if "step_s" not in r:
            lines.append(f"{r['network']:<13}{r['size']:>5}{r['build_s']:>9.2f}  not run: "
                         f"{r['error'] or r['refused_ops'][0]}")
            continue
        lines.append(f"{r['network']:<13}{r['size']:>5}{r['build_s']:>9.2f}{r['trace_s']:>9.2f}{r['step_s']:>9.3f}"
                     f"{r['images_per_s']:>9.0f}{r['host_epoch_s']:>14.3f}{r['checkpoint_s']:>8.2f}"
                     f"{r['checkpoint_mb']:>9.1f}  {len(r['refused_ops'])}")
    if timed:
        lines.append(f"median step {statistics.median(r['step_s'] for r in timed):.3f} s")
    lines.append("ready" if report["ready"] else "NOT READY: " + "; ".join(report["problems"]))
    return "\n".join(lines)


def require_ready(report: dict[str, Any]) -> None:
    if not report["ready"]:
        raise PainsearchError(f"gpu-check: {report['problems'][0]}.")
