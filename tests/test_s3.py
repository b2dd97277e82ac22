"""Shards on a real S3 server: SeaweedFS on 127.0.0.1, started by the `seaweed` fixture."""

import json
import subprocess
import sys

import pytest

from pipelines.errors import PainsearchError
from pipelines.shards.breakdown import breakdown
from pipelines.shards.prepare import prepare
from pipelines.shards.read import read_table
from pipelines.shards.schema import MANIFEST, REPORT
from pipelines.storage import open_store

from conftest import tiny_prepare_config

QUIET = lambda m: None  # noqa: E731


def test_round_trip_through_ray_and_s3(s3_env, ray_local, tiny_phantom, tiny_shards):
    uri = "s3://painsearch/shards/tiny"
    prepare(tiny_prepare_config(tiny_phantom, uri, engine="ray", workers=2), log=QUIET)
    keys = {o["Key"] for o in s3_env["client"].list_objects_v2(Bucket="painsearch", Prefix="shards/tiny/")["Contents"]}
    assert f"shards/tiny/{MANIFEST}" in keys and f"shards/tiny/{REPORT}" in keys
    assert any(k.startswith("shards/tiny/dataset=unbc/part-") for k in keys)
    remote = {r["source_sha256"]: r for r in read_table(uri).to_pylist()}
    local = {r["source_sha256"]: r for r in read_table(str(tiny_shards)).to_pylist()}
    assert remote == local
    assert breakdown(uri) == breakdown(str(tiny_shards))
    from pipelines.shards.read import open_dataset

    assert open_dataset(uri, columns=["label"]).count() == len(local)
    # a rerun against S3 resumes: nothing left to do
    logs = []
    prepare(tiny_prepare_config(tiny_phantom, uri), log=logs.append)
    assert "0 to do" in next(line for line in logs if "chunks;" in line)


def test_cli_inspect_on_s3(s3_env, tiny_phantom):
    uri = "s3://painsearch/shards/cli"
    prepare(tiny_prepare_config(tiny_phantom, uri), log=QUIET)
    out = subprocess.run([sys.executable, "-m", "cluster.cli", "data", "inspect", uri, "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    table = json.loads(out.stdout)
    assert {r["dataset"] for r in table["datasets"]} == {"unbc", "mintpain", "delaware", "cppain"}


def test_wrong_secret_is_one_clear_sentence(s3_env, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(PainsearchError) as err:
        open_store("s3://painsearch/x").check_writable()
    msg = str(err.value)
    assert "credentials were refused" in msg and "AWS_SECRET_ACCESS_KEY" in msg and "\n" not in msg


def test_unreachable_endpoint(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    with pytest.raises(PainsearchError) as err:
        open_store("s3://painsearch/x").check_writable()
    assert "could not be reached" in str(err.value) and "127.0.0.1:9" in str(err.value)


def test_imagenet_weights_from_an_s3_prefix(s3_env, weights_mirror, tmp_path, monkeypatch):
    """fetch-weights fills an S3 prefix once (the stand-in file's own hash in place of Keras's, as the real file
    cannot be fetched here); building from it copies the file into this node's Keras cache."""
    import dataclasses

    import numpy as np

    from pipelines.models import specs
    from pipelines.models.build import build
    from pipelines.models.weights import fetch_weights

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "cache"))
    url, expected, md5 = weights_mirror
    monkeypatch.setitem(specs.MODELS, "vgg16", dataclasses.replace(specs.MODELS["vgg16"], weights_md5=md5))
    assert len(fetch_weights("s3://painsearch/weights", ["vgg16"], url)) == 1
    model = build("vgg16", size=32, weights="imagenet", weights_dir="s3://painsearch/weights")
    got = model.get_layer("vgg16").get_weights()
    assert len(got) == len(expected) > 0 and all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert any((tmp_path / "cache" / "models").iterdir())
    with pytest.raises(PainsearchError, match="fetch-weights --to s3://painsearch/empty"):
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / "other"))
        build("resnet50", size=32, weights="imagenet", weights_dir="s3://painsearch/empty")


def test_an_s3_searchs_optuna_journal_starts_fresh_and_resumes_from_the_store(s3_env, tmp_path, monkeypatch):
    """A search started afresh on an S3 store opens an empty Optuna study even when an earlier run of the same
    store path left a journal (in the store and in this node's cache); a resumed one goes on from the store's."""
    import optuna

    from search import optuna_store
    from search.layout import OPTUNA_JOURNAL, SearchKey

    monkeypatch.setattr(optuna_store, "CACHE", tmp_path / "cache")
    store, key = open_store("s3://painsearch/journal-study"), SearchKey("weinet", "external", 0)

    def run_trials(n: int, sync: bool = True) -> int:
        study = optuna.create_study(study_name=key.slug, storage=optuna_store.storage(store, key), load_if_exists=True)
        for _ in range(n):
            study.optimize(lambda t: t.suggest_float("lr", 1e-5, 1e-2), n_trials=1)
        if sync:
            optuna_store.sync(store, key)
        return len(study.trials)

    optuna_store.begin(store, key, resumed=False)
    assert run_trials(3) == 3 and store.exists(key.path, OPTUNA_JOURNAL)
    optuna_store.begin(store, key, resumed=False)  # the same store path searched again from the start
    assert run_trials(2) == 2
    optuna_store.journal_path(store, key).unlink()  # the search resumes on another node: no local copy
    optuna_store.begin(store, key, resumed=True)
    assert run_trials(1) == 3
    assert run_trials(1, sync=False) == 4  # killed before this trial reached the store
    optuna_store.begin(store, key, resumed=True)  # resumed on the same node: its newer copy goes on
    assert run_trials(0) == 4


def test_a_file_moved_into_an_s3_store_arrives_whole(s3_env, tmp_path):
    """`Store.move_file` (how a checkpoint reaches the store) streams a local file to S3 and removes it."""
    store = open_store("s3://painsearch/moved")
    local = tmp_path / "model.h5"
    data = bytes(range(256)) * 40_000  # 10 MB: more than one part of a multipart upload
    local.write_bytes(data)
    store.move_file(local, "run", "checkpoint_000000", "model.h5")
    assert not local.exists()
    assert store.read_bytes("run", "checkpoint_000000", "model.h5") == data
    assert store.list("run", "checkpoint_000000") == ["model.h5"]


def test_a_searchs_keys_live_in_a_private_file_not_its_environment(tmp_path, monkeypatch):
    """While a search runs, the AWS keys Tune would copy into its trials' logged runtime envs are in a file only
    this user reads, under every profile name the SDKs look up; after, the environment is as it was and the file
    gone. A file a killed search left behind is swept."""
    import os

    from pipelines.storage import credentials

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "canary-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-secret")
    monkeypatch.setenv("AWS_DEFAULT_PROFILE", "lab")
    monkeypatch.delenv("AWS_SHARED_CREDENTIALS_FILE", raising=False)
    folder = tmp_path / f"painsearch-{os.getuid()}"
    folder.mkdir(mode=0o700)
    stale = folder / f"{credentials.PREFIX}999999999-1"  # no such process
    stale.write_text("[default]\n")
    with credentials.out_of_environment():
        assert "canary-secret" not in "".join(os.environ.values())
        path = os.environ["AWS_SHARED_CREDENTIALS_FILE"]
        text = open(path).read()
        assert "[lab]\n" in text and "aws_secret_access_key = canary-secret" in text
        assert (os.stat(path).st_mode & 0o777) == 0o600 and not stale.exists()
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "canary-secret" and "AWS_SHARED_CREDENTIALS_FILE" not in os.environ
    assert not os.path.exists(path)
