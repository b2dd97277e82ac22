"""The `painsearch` console script, run as a user runs it: bad input is one sentence and exit 2."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

PAINSEARCH = shutil.which("painsearch") or str(Path(__import__("sys").executable).parent / "painsearch")


def run(*args, env=None, timeout=300):
    return subprocess.run([PAINSEARCH, *args], capture_output=True, text=True, timeout=timeout, env=env)


def assert_one_sentence(result, *fragments):
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("painsearch: error:")]
    assert len(lines) == 1, result.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.mark.parametrize("args", [["--help"], ["data", "--help"], ["data", "prepare", "--help"],
                                  ["data", "synth", "--help"], ["data", "inspect", "--help"], ["demo", "--help"],
                                  ["models", "--help"], ["models", "fetch-weights", "--help"], ["search", "run", "--help"],
                                  ["analyze", "--help"], ["raters", "--help"], ["gpu-check", "--help"]])
def test_help(args, capsys):
    from cluster.cli import main

    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 0 and "usage: painsearch" in capsys.readouterr().out


def test_the_console_script_runs():
    r = run("--help")
    assert r.returncode == 0 and "usage: painsearch" in r.stdout


def test_the_native_log_is_private_and_never_follows_a_planted_link(tmp_path):
    """On a shared host another user may plant `$TMPDIR/painsearch-<uid>` or its `native.log` first: a link there is
    refused with a sentence and the file it points at stays untouched; otherwise the folder is the user's alone."""
    import os

    env = {**os.environ, "TMPDIR": str(tmp_path)}
    folder = tmp_path / f"painsearch-{os.getuid()}"
    victim = tmp_path / "victim.txt"
    victim.write_text("theirs\n")
    folder.mkdir()
    (folder / "native.log").symlink_to(victim)
    assert_one_sentence(run("raters", "missing.csv", env=env), "native.log", "link", "TMPDIR")
    assert victim.read_text() == "theirs\n"
    (folder / "native.log").unlink()
    folder.rmdir()
    folder.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    assert_one_sentence(run("raters", "missing.csv", env=env), "is not a folder of yours", "TMPDIR")
    assert list((tmp_path / "elsewhere").iterdir()) == []
    folder.unlink()
    r = run("--help", env=env)
    assert r.returncode == 0 and (folder.stat().st_mode & 0o777) == 0o700
    assert ((folder / "native.log").stat().st_mode & 0o777) == 0o600


def test_inspect_prints_table_2(tiny_shards):
    r = run("data", "inspect", str(tiny_shards))
    assert r.returncode == 0, r.stderr
    assert "PAIN-DB" in r.stdout and "unbc" in r.stdout
    table = json.loads(run("data", "inspect", str(tiny_shards), "--json").stdout)
    pain_db = [d for d in table["datasets"] if d["dataset"] != "cppain"]
    assert table["pain_db"]["total"] == sum(d["total"] for d in pain_db)


@pytest.mark.parametrize("args, fragments", [
    (["data", "prepare", "--out", "/tmp/painsearch-nothing"], ["No source was given", "--unbc DIR"]),
    (["data", "prepare", "--unbc", "/nonexistent/unbc", "--out", "/tmp/x"], ["--unbc /nonexistent/unbc", "UNBC-McMaster layout", "does not exist"]),
    (["data", "prepare", "--config", "/nonexistent.yaml"], ["does not exist", "YAML"]),
    (["data", "inspect", "/tmp"], ["no finished painsearch shards", "painsearch data prepare"]),
    (["data", "inspect", "ftp://host/x"], ["scheme 'ftp'", "s3://bucket/prefix"]),
])
def test_bad_input_is_one_sentence(args, fragments):
    assert_one_sentence(run(*args), *fragments)


def test_bad_config_value_names_the_choices(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  sources: {}\n  out: x\n  preprocess:\n    background: magic\n")
    assert_one_sentence(run("data", "prepare", "--config", str(cfg)), "preprocess.background", "grabcut", "none")
    cfg.write_text("data:\n  sources: {}\n  out: x\n  frames_per_subject: 3\n")
    assert_one_sentence(run("data", "prepare", "--config", str(cfg)), "frames_per_subject", "not a known setting")


def test_missing_u2net_weights_via_cli(tiny_phantom, tmp_path):
    env = {**__import__("os").environ, "U2NET_HOME": str(tmp_path / "none")}
    r = run("data", "prepare", "--config", str(tiny_phantom / "prepare.yaml"), "--out", str(tmp_path / "o"),
            "--engine", "local", env=env)
    assert_one_sentence(r, "u2net_human_seg.onnx", "--background grabcut")


def test_synth_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    assert_one_sentence(run("data", "synth", str(tmp_path)), "not an earlier phantom")


def test_synth_names_the_cp_factors_when_one_is_unknown(tmp_path):
    out = run("data", "synth", str(tmp_path / "p"), "--cp-factors", "shortcut,drool")
    assert_one_sentence(out, "Unknown CP factor(s) 'drool'; choose from")
    assert "expressiveness" in out.stderr and not (tmp_path / "p").exists()
