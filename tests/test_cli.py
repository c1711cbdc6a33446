"""The `gptface data` commands end to end, as a user runs them."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def _gptface(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "gptface_jax.cli", *args], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.mark.slow
def test_synth_then_preview(tmp_path):
    out = tmp_path / "data"
    _gptface("data", "synth", "--num", "40", "--num-test", "4", "--image-size", "64", "--out", str(out),
             "--workers", "1")
    grid = tmp_path / "grid.png"
    _gptface("data", "preview", str(out), "--out", str(grid), "--num", "16", "--cols", "4", "--tile", "96")
    img = np.asarray(Image.open(grid).convert("RGB"))
    assert img.shape[1] == 4 * 96 and img.shape[0] > 4 * 96  # 4 rows of faces plus caption lines
    faces = img[:96, :96].astype(float)
    assert faces.std() > 20  # a face, not a blank tile
    stats = _gptface("data", "stats", str(out))
    assert '"records": 40' in stats.stdout and '"caption_bookkeeping_mismatches": 0' in stats.stdout


def test_modules_run_standalone(tmp_path):
    out = tmp_path / "d"
    proc = subprocess.run([sys.executable, "-m", "data_pipelines.synthfaces.builder", "--num", "8",
                           "--num-test", "0", "--image-size", "32", "--out", str(out), "--workers", "1"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = subprocess.run([sys.executable, "-m", "data_pipelines.preview", str(out), "--out",
                           str(tmp_path / "g.png")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_bad_input_gets_one_clear_line(tmp_path):
    proc = _gptface("data", "preview", str(tmp_path / "missing"), "--out", str(tmp_path / "g.png"), check=False)
    assert proc.returncode == 2
    assert "no such dataset folder" in proc.stderr and "Traceback" not in proc.stderr
    proc = _gptface("data", "synth", "--num", "0", "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode != 0 and "num_train >= 1" in proc.stderr


def test_classifier_free_guidance_defaults_on_for_text_to_face_and_edits_not_inpainting():
    from gptface_jax import cli
    parser = cli.build_parser()
    common = ["--workdir", "w", "--text", "a man"]
    assert parser.parse_args(["generate", *common]).cfg_scale == 3.0
    assert parser.parse_args(["edit", *common, "--image", "x.jpg", "--region", "mouth"]).cfg_scale == 8.0
    assert parser.parse_args(["remove-mask", *common, "--image", "x.jpg"]).cfg_scale == 8.0
    assert parser.parse_args(["inpaint", *common, "--image", "x.jpg", "--mask", "m.png"]).cfg_scale == 0.0
    # the edit evaluation sets the editor's default beside no classifier-free guidance
    assert parser.parse_args(["eval", "edits", "--workdir", "w"]).cfg_scale == [0.0, 8.0]
    # mask removal steers away from the mask by default; other edits have no negative caption unless given
    assert parser.parse_args(["remove-mask", *common, "--image", "x.jpg"]).negative == "a person wearing a face mask"
    assert parser.parse_args(["edit", *common, "--image", "x.jpg", "--region", "mouth"]).negative is None
    assert parser.parse_args(["generate", *common, "--cfg-scale", "0"]).cfg_scale == 0.0
    assert parser.parse_args(["eval", "edits", "--workdir", "w", "--cfg-scale", "0", "3"]).cfg_scale == [0.0, 3.0]
    assert not parser.parse_args(["generate", *common]).guidance_contrast
    assert parser.parse_args(["generate", *common, "--guidance-contrast"]).guidance_contrast
    assert parser.parse_args(["eval", "edits", "--workdir", "w", "--guidance-contrast"]).guidance_contrast
