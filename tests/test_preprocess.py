import hashlib
import io
import os

import numpy as np
import pytest
from PIL import Image

from pipelines.config import PreprocessConfig
from pipelines.phantom.render import Identity, Nuisance, render
from pipelines.errors import PainsearchError
from pipelines.errors import Rejection
from pipelines.preprocess.background import U2NET_FILE, u2net_weights
from pipelines.preprocess.decode import decode
from pipelines.preprocess.faces import Face, square_crop
from pipelines.preprocess.preprocessor import Preprocessor


def encode(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def face_image(seed=0, width=320, height=240, scale=0.6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return render(Identity.sample(rng), {"AU4": 3}, Nuisance.sample(rng, background_seed=seed, scale=scale), width, height).image


# ------------------------------------------------------------ decoding


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = decode(encode(img, "JPEG", exif=exif), 10**8)
    assert out.shape == (40, 20, 3)


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "1", "LA", "RGBA"])
def test_modes_become_rgb(mode):
    img = Image.new("RGB", (16, 12), (10, 120, 240)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = decode(encode(img, fmt), 10**8)
    assert out.shape == (12, 16, 3) and out.dtype == np.uint8


def test_cmyk_colours_survive():
    out = decode(encode(Image.new("RGB", (8, 8), (200, 30, 30)).convert("CMYK"), "JPEG", quality=100), 10**8)
    assert out[..., 0].mean() > 150 and out[..., 1].mean() < 80


def test_palette_transparency_becomes_white():
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.info["transparency"] = 0
    assert decode(encode(img, transparency=0), 10**8).min() == 255


def test_16_bit_is_scaled_not_clipped():
    arr = np.array([[0, 32896, 65535, 1000]], dtype=np.uint16)
    img = Image.fromarray(arr)
    assert img.mode == "I;16"
    out = decode(encode(img), 10**8)[..., 0]
    assert out.tolist() == [[0, 128, 255, 4]]


def test_decompression_bomb_is_refused():
    data = encode(Image.new("L", (3000, 3000)))
    with pytest.raises(Rejection, match="decompression bomb"):
        decode(data, 1_000_000)


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"this is a text file, not a picture", "not an image"),
    (encode(Image.new("RGB", (64, 64), (1, 2, 3)))[:60], "corrupt or truncated"),
])
def test_broken_files(data, reason):
    with pytest.raises(Rejection, match=reason):
        decode(data, 10**8)


def test_truncated_jpeg():
    data = encode(Image.fromarray(face_image()), "JPEG")
    with pytest.raises(Rejection, match="truncated"):
        decode(data[: len(data) // 2], 10**8)


# ------------------------------------------------------------ crop and detect


def test_square_crop_pads_white_outside_the_frame():
    rgb = np.zeros((50, 80, 3), np.uint8)
    face = Face((0.0, 0.0, 20.0, 20.0), 0.99, np.array([[5, 5], [15, 5], [10, 10], [6, 15], [14, 15]], float))
    crop, points, box = square_crop(rgb, face, margin=0.5)
    assert crop.shape == (40, 40, 3)
    assert crop[0, 0].tolist() == [255, 255, 255] and crop[20, 20].tolist() == [0, 0, 0]
    assert points[0].tolist() == [15.0, 15.0] and box == (10.0, 10.0, 30.0, 30.0)


@pytest.fixture(scope="module")
def grabcut_pre():
    return Preprocessor(PreprocessConfig(size=64, background="grabcut"))


def test_landmarks_land_on_the_rendered_face(grabcut_pre):
    rng = np.random.default_rng(5)
    r = render(Identity.sample(rng), {}, Nuisance.sample(rng, background_seed=5, scale=0.6), 320, 240)
    face = grabcut_pre.detector.detect(r.image)
    err = np.linalg.norm(face.landmarks - r.landmarks, axis=1)
    box_side = face.box[2] - face.box[0]
    assert err.max() < 0.2 * box_side, (face.landmarks, r.landmarks)


def test_large_frames_are_downscaled_and_boxes_mapped_back():
    rng = np.random.default_rng(9)
    r = render(Identity.sample(rng), {}, Nuisance.sample(rng, background_seed=9, scale=0.45), 1280, 720)
    small = Preprocessor(PreprocessConfig(size=32, background="none", detect_max_side=320)).detector.detect(r.image)
    assert np.linalg.norm(small.landmarks - r.landmarks, axis=1).max() < 0.2 * (small.box[2] - small.box[0])


def test_grabcut_whitens_the_background(grabcut_pre):
    out = grabcut_pre(encode(Image.fromarray(face_image(seed=2))))
    img = np.asarray(Image.open(io.BytesIO(out.image)))
    assert img.shape == (64, 64, 3)
    corners = np.concatenate([img[:4, :4], img[:4, -4:]]).reshape(-1, 3)
    assert (corners == 255).all()
    assert (img[24:40, 24:40] != 255).any(axis=-1).mean() > 0.9  # the face itself is kept
    assert len(out.landmarks) == 10 and all(0 <= v <= 64 for v in out.landmarks)


@pytest.mark.parametrize("image, reason", [
    (np.zeros((240, 320, 3), np.uint8), "blank image"),
    ((np.random.default_rng(0).random((240, 320, 3)) * 255).astype(np.uint8), "no face"),
])
def test_no_face_is_a_rejection_not_a_full_frame_crop(grabcut_pre, image, reason):
    with pytest.raises(Rejection, match=reason):
        grabcut_pre(encode(Image.fromarray(image)))


def test_two_faces_policy():
    a, b = face_image(seed=1, width=320, height=240, scale=0.55), face_image(seed=4, width=320, height=240, scale=0.45)
    both = Image.fromarray(np.concatenate([a, b], axis=1))
    largest = Preprocessor(PreprocessConfig(size=32, background="none"))
    face = largest.detector.detect(np.asarray(both))
    assert face.box[2] < 330  # the larger face, on the left
    strict = Preprocessor(PreprocessConfig(size=32, background="none", multiple_faces="reject"))
    with pytest.raises(Rejection, match="2 faces"):
        strict(encode(both))


# ------------------------------------------------------------ U2-Net


def test_missing_u2net_weights_say_which_file(tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(PainsearchError) as err:
        u2net_weights(None)
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and U2NET_FILE in msg and "--background grabcut" in msg


def standin_u2net(folder) -> bytes:
    """A stand-in network with U2-Net's inputs and outputs (its mask is the brightness), as `u2net_human_seg.onnx`
    in `folder`: the real weights cannot be fetched here. Returns the file's bytes."""
    import torch

    net = torch.nn.Conv2d(3, 1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1 / 3)
    folder.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(net, torch.zeros(1, 3, 320, 320), str(folder / U2NET_FILE), dynamo=False, input_names=["input.1"])
    return (folder / U2NET_FILE).read_bytes()


def assert_removes_the_dark_half(u2net_dir: str) -> None:
    from pipelines.preprocess.background import _u2net

    remove = _u2net(PreprocessConfig(background="u2net_human_seg", u2net_dir=u2net_dir), threads=1)
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :32] = 200
    img[:, 32:] = 20
    out, removed = remove(img, (0, 0, 64, 64))
    assert removed and (out[:, 4:28] == 200).all() and (out[:, 36:60] == 255).all()


def test_u2net_path_runs_the_onnx_model(tmp_path):
    standin_u2net(tmp_path)
    assert_removes_the_dark_half(str(tmp_path))


@pytest.mark.slow
def test_u2net_weights_come_from_the_store_checked_by_their_hash(s3_env, tmp_path, monkeypatch):
    """Workers that prepare shards take the U2-Net weights from the store that `fetch-weights --u2net` filled: copied
    once per node into rembg's folder, and only if the bytes have the hash recorded beside them."""
    from pipelines.preprocess.background import U2NET_HASH_FILE, publish_u2net
    from pipelines.storage import open_store

    data = standin_u2net(tmp_path / "made")
    uri = "s3://painsearch/u2net"
    store = open_store(uri)
    publish_u2net(store, data)
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "node"))
    endpoint = os.environ["AWS_ENDPOINT_URL"]  # a prepare config's s3_endpoint, not the environment, names it
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert u2net_weights(uri, endpoint).read_bytes() == data
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    local = u2net_weights(uri)
    assert local.is_relative_to(tmp_path / "node") and local.name == U2NET_FILE and local.read_bytes() == data
    assert_removes_the_dark_half(uri)
    local.write_bytes(b"an older file")  # a stale copy on the node is replaced by the store's
    assert u2net_weights(uri).read_bytes() == data
    store.write_bytes(data[:-100], U2NET_FILE)  # the store's copy damaged after it was fetched
    local.unlink()
    with pytest.raises(PainsearchError) as err:
        u2net_weights(uri)
    assert f"not the {hashlib.sha256(data).hexdigest()} recorded" in str(err.value) and "nothing was copied" in str(err.value)
    assert not local.exists()
    with pytest.raises(PainsearchError, match=f"{U2NET_HASH_FILE} in s3://painsearch/nothing-here.*--u2net"):
        u2net_weights("s3://painsearch/nothing-here")


def test_fetched_u2net_weights_are_checked_against_rembgs_hash(tmp_path):
    """A mirror serving other bytes than rembg's file is refused, nothing written; with the stand-in's own md5 in
    place of rembg's (the real file cannot be fetched here) the file and its sha256 are written once."""
    import functools
    import http.server
    import threading

    from pipelines.preprocess.background import U2NET_HASH_FILE, U2NET_MD5, fetch_u2net

    data = standin_u2net(tmp_path / "mirror")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "mirror")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{U2NET_FILE}"
        with pytest.raises(PainsearchError, match=f"md5 is [0-9a-f]{{32}}, not the {U2NET_MD5}.*nothing was written"):
            fetch_u2net(str(tmp_path / "w"), url)
        assert not (tmp_path / "w").exists()
        md5 = hashlib.md5(data).hexdigest()
        assert fetch_u2net(str(tmp_path / "w"), url, md5) is True and fetch_u2net(str(tmp_path / "w"), url, md5) is False
        (tmp_path / "w" / U2NET_FILE).write_bytes(data[:-100])  # damaged after it was fetched: fetched again
        assert fetch_u2net(str(tmp_path / "w"), url, md5) is True
    finally:
        server.shutdown()
    assert (tmp_path / "w" / U2NET_FILE).read_bytes() == data
    assert (tmp_path / "w" / U2NET_HASH_FILE).read_text().split()[0] == hashlib.sha256(data).hexdigest()


def test_broken_u2net_file_is_a_clear_error(tmp_path):
    (tmp_path / U2NET_FILE).write_bytes(b"not a model")
    from pipelines.preprocess.background import _u2net

    with pytest.raises(PainsearchError, match="could not be loaded"):
        _u2net(PreprocessConfig(background="u2net_human_seg", u2net_dir=str(tmp_path)), threads=1)
