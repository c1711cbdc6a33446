"""Face regions on the token grid and the pixel-to-token mask rule."""
import numpy as np
import pytest

from gptface_jax.generate.regions import REGIONS, RegionError, pixel_to_token_mask, region_mask


@pytest.mark.parametrize("grid", [8, 16])
def test_regions_cover_their_rows_and_columns(grid):
    for name in REGIONS:
        assert region_mask(name, grid).any(), name
    mouth = region_mask("mouth", grid)
    rows, cols = np.nonzero(mouth)
    def centre(i):
        return (i + 0.5) / grid
    assert all(0.62 <= centre(r) < 0.8 for r in rows) and all(0.3 <= centre(c) < 0.7 for c in cols)
    # every cell whose centre is in the box is included
    expected = sum(1 for r in range(grid) for c in range(grid)
                   if 0.62 <= centre(r) < 0.8 and 0.3 <= centre(c) < 0.7)
    assert mouth.sum() == expected
    assert not (region_mask("eyes", grid) & region_mask("mouth", grid)).any()
    assert (region_mask("mouth", grid) <= region_mask("lower-face", grid)).all()
    assert region_mask("hair", grid)[0].all()  # the top row is hair


def test_region_masks_at_8_and_16_agree_in_image_space():
    for name in REGIONS:
        def centroid(m):
            return (np.argwhere(m) + 0.5).mean(0) / m.shape[0]
        assert np.abs(centroid(region_mask(name, 8)) - centroid(region_mask(name, 16))).max() <= 0.125, name


def test_unknown_region_names_the_known_ones():
    with pytest.raises(RegionError, match="unknown region 'ears'.*mouth"):
        region_mask("ears", 8)


def test_pixel_mask_maps_to_the_expected_tokens():
    pixels = np.zeros((64, 64), np.uint8)
    pixels[8:16, 8:16] = 255      # exactly token (1, 1) at 8x8
    pixels[40:42, 40:48] = 255    # a quarter of token (5, 5)
    pixels[0, 63] = 255           # one stray pixel in token (0, 7)
    tokens = pixel_to_token_mask(pixels, 8)
    expected = np.zeros((8, 8), bool)
    expected[1, 1] = expected[5, 5] = True
    np.testing.assert_array_equal(tokens, expected)
    assert pixel_to_token_mask(pixels > 0, 16)[2:4, 2:4].all()
    with pytest.raises(RegionError, match="does not divide"):
        pixel_to_token_mask(np.zeros((60, 64)), 8)


@pytest.mark.parametrize("grid", [8, 16])
def test_hair_region_holds_the_pixels_a_hair_colour_or_a_hat_changes(grid):
    """Re-render SynthFaces faces with another hair colour, or with a hat: the pixels that change above
    the eyes (where beards and brows do not reach) lie in the hair region's cells."""
    import dataclasses

    from data_pipelines.synthfaces.attributes import sample_face
    from data_pipelines.synthfaces.render import render
    size = 64
    cells = np.repeat(np.repeat(region_mask("hair", grid), size // grid, 0), size // grid, 1)
    above_eyes = np.arange(size)[:, None] < 0.45 * size
    inside = total = 0
    for index in range(24):
        face = sample_face(0, index)
        base = render(face, size).astype(int)
        for other in (dataclasses.replace(face, hair_colour=(face.hair_colour + 2) % 5), face.replace(hat=True)):
            changed = (np.abs(render(other, size).astype(int) - base).max(-1) > 24) & above_eyes
            inside += (changed & cells).sum()
            total += changed.sum()
    assert total > 24 * 100 and inside / total >= 0.9, inside / total
