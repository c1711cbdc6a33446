"""Editing on a tiny pre-trained model: untouched tokens, paste-back, outputs, and clear bad-input errors."""
import os

import cv2
import numpy as np
import pytest

from data_pipelines.errors import DataError
from data_pipelines.synthfaces.attributes import sample_face
from data_pipelines.synthfaces.render import render
from gptface_jax.generate import editing, regions
from gptface_jax.serving import inference


@pytest.fixture(scope="module")
def pretrained(trained_workdir):
    return inference.load(trained_workdir)


def _photo_file(tmp_path, name="face.png"):
    """An aligned SynthFaces face pasted into a larger photo with a margin of background."""
    face = render(sample_face(11, 3), 48)
    photo = np.full((80, 96, 3), 200, np.uint8)
    photo[16:64, 24:72] = face
    path = str(tmp_path / name)
    cv2.imwrite(path, cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    return path, photo


def test_edit_changes_only_the_region_and_pastes_back(pretrained, tmp_path):
    path, original = _photo_file(tmp_path)
    photo = editing.load_photo(path, pretrained.image_size, aligned=True)
    mask = editing.token_mask_for(["mouth"], grid=pretrained.grid, size=pretrained.image_size)
    result = editing.edit(pretrained, photo, mask, "a smiling woman", seeds=(0, 1), guidances=(0.0, 2.0))
    assert set(result.crops) == {(0, 0.0), (1, 0.0), (0, 2.0), (1, 2.0)}
    assert all(crop.shape == photo.crop.shape for crop in result.crops.values())
    # the decoder never touches tokens outside the mask (tests/test_decoding.py); here the pasted
    # photo equals the original away from the edited region
    for pasted in result.pasted.values():
        assert pasted.shape == original.shape
        np.testing.assert_array_equal(pasted[:8], original[:8])       # rows far above the mouth
        np.testing.assert_array_equal(pasted[:, :16], original[:, :16])
    assert all(np.isfinite(v) for v in result.itm.values())
    paths = editing.write_result(result, str(tmp_path / "out"), "edit")
    assert all(os.path.getsize(p) > 0 for p in paths) and len(paths) == 5
    grid = cv2.imread(paths[0])
    assert grid.shape[1] > grid.shape[0]  # input | mask | seeds, one row per guidance


def test_bad_inputs_get_one_clear_error_and_write_nothing(pretrained, tmp_path):
    blank = str(tmp_path / "blank.png")
    cv2.imwrite(blank, np.full((120, 120, 3), 128, np.uint8))
    with pytest.raises(DataError, match="no_face.*--aligned"):
        editing.load_photo(blank, pretrained.image_size)
    with pytest.raises(regions.RegionError, match="unknown region 'ears'"):
        editing.token_mask_for(["ears"], grid=pretrained.grid, size=pretrained.image_size)
    with pytest.raises(regions.RegionError, match="the mask is 64x64 but the face crop is 32x32"):
        editing.token_mask_for([], np.zeros((64, 64), np.uint8), grid=pretrained.grid, size=pretrained.image_size)
    path, _ = _photo_file(tmp_path)
    photo = editing.load_photo(path, pretrained.image_size, aligned=True)
    mask = editing.token_mask_for(["eyes"], grid=pretrained.grid, size=pretrained.image_size)
    with pytest.raises(DataError, match="the text is empty"):
        editing.edit(pretrained, photo, mask, "   ")
    with pytest.raises(DataError, match="cannot read"):
        editing.load_photo(str(tmp_path / "missing.jpg"), 32)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_edit_writes_pngs_and_refuses_bad_input(pretrained, tmp_path):
    from gptface_jax import cli
    workdir = pretrained.workdir
    path, _ = _photo_file(tmp_path)
    out = tmp_path / "cli"
    args = ["edit", "--workdir", workdir, "--image", path, "--aligned", "--region", "mouth", "--text", "a smiling man",
            "--seeds", "0", "--guidance", "0", "1", "--steps", "4", "--out", str(out)]
    assert cli.main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["edit_grid.png", "edit_seed0_guidance0.png",
                                                     "edit_seed0_guidance1.png"]
    bad = tmp_path / "bad"
    for change in (["--region", "ears"], ["--text", ""]):
        argv = list(args)
        argv[argv.index(change[0]) + 1] = change[1]
        argv[argv.index("--out") + 1] = str(bad)
        assert cli.main(argv) == 2
    assert cli.main(["inpaint", "--workdir", workdir, "--image", path, "--aligned", "--mask",
                     str(tmp_path / "none.png"),
                     "--text", "a face", "--out", str(bad)]) == 2
    assert not bad.exists()


def test_cli_caption_honours_every_sampling_flag(pretrained, tmp_path, capsys):
    from gptface_jax import cli
    path, _ = _photo_file(tmp_path)
    args = ["caption", "--workdir", pretrained.workdir, "--image", path, "--aligned", "--length", "6", "--steps", "3",
            "--seeds", "0", "1", "--guidance", "0", "1.5"]
    assert cli.main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["guidance 0 seed 0", "guidance 0 seed 1",
                                                      "guidance 1.5 seed 0", "guidance 1.5 seed 1"]
    assert all(line.split(":", 1)[1].strip() for line in lines)  # a caption on every line
    assert not any(line.split(":", 1)[1].strip().startswith("[") for line in lines)  # the text, not a list
    assert cli.main(args + ["--temperature", "0"]) == 2  # a bad setting is refused before any work
    assert "temperature" in capsys.readouterr().err


def test_cli_eval_captions_judges_every_face(pretrained, tmp_path, capsys):
    import json

    from gptface_jax import cli
    args = ["eval", "captions", "--workdir", pretrained.workdir, "--faces", "6", "--length", "6", "--steps", "3",
            "--out", str(tmp_path)]
    assert cli.main(args) == 0
    report = json.loads((tmp_path / "captions_eval.json").read_text())
    assert report["faces"] == 6 and len(report["examples"]) == 6
    assert 0 <= report["stating_share"] <= 1 and 0 <= report["repeat_share"] <= 1
    assert all(e["true_facts"] + e["false_facts"] >= 0 and isinstance(e["caption"], str) for e in report["examples"])
    assert cli.main(args + ["--temperature", "0"]) == 2
