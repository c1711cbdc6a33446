"""Crawled-data ingestion on real photos: the face filter, every reader, and every kind of bad input."""
import collections
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_pipelines.ingest.builder import ingest
from data_pipelines.ingest.captions import CaptionOptions, clean_caption
from data_pipelines.ingest.dedup import NearDuplicateIndex, hamming, phash
from data_pipelines.ingest.errors import DropRecord
from data_pipelines.ingest.faces import FaceOptions, decode_image, face_crop
from data_pipelines.ingest.process import IngestOptions, process_pair
from data_pipelines.ingest.readers import RawPair, ReaderOptions
from data_pipelines.shards import ShardSource
from tests import crawl_fixtures as cf


def _kept(rgb_images, options=IngestOptions(ReaderOptions("webdataset"))):
    outcomes = [process_pair(RawPair(str(i), cf.jpeg(img), "a photo"), options) for i, img in enumerate(rgb_images)]
    return np.mean([o.record is not None for o in outcomes]), outcomes


def test_face_filter_on_lfw_subset():
    faces, non_faces = cf.lfw_faces_and_non_faces(size=128)
    face_rate, _ = _kept(faces)
    non_face_rate, outcomes = _kept(non_faces)
    print(f"lfw_subset keep rate: faces {face_rate:.2f}, non-faces {non_face_rate:.2f}")
    assert face_rate >= 0.80
    assert non_face_rate <= 0.10
    assert collections.Counter(o.reason for o in outcomes if o.record is None).most_common(1)[0][0] == "no_face"


def test_real_photos():
    rate, outcomes = _kept([cf.astronaut(), cf.grace_hopper()])
    assert rate == 1.0 and [o.num_faces for o in outcomes] == [1, 1]
    crop = decode_image(outcomes[0].record["image"])
    assert crop.shape == (64, 64, 3)
    rate, outcomes = _kept(cf.non_faces())
    assert rate == 0.0 and {o.reason for o in outcomes} == {"no_face"}


def test_crop_box_maps_back_into_the_photo():
    photo = cf.astronaut()
    result = face_crop(photo, FaceOptions(image_size=128))
    box = result.box
    assert 0 <= box.x and box.x + box.side <= photo.shape[1] and box.side > 100
    import cv2
    direct = cv2.resize(photo[box.y:box.y + box.side, box.x:box.x + box.side], (128, 128), interpolation=cv2.INTER_AREA)
    assert np.abs(direct.astype(int) - result.image.astype(int)).mean() < 2


def test_exif_orientation_is_applied():
    upright = cf.lfw_faces_and_non_faces()[0][8]
    notes = set()
    decoded = decode_image(cf.exif_rotated_jpeg(upright), notes=notes)
    assert notes == {"exif_rotated"}
    assert np.abs(decoded.astype(int) - upright.astype(int)).mean() < 6  # turned back upright


def test_size_guard_decodes_large_jpeg_reduced_and_refuses_large_png():
    notes = set()
    big = cf.huge_jpeg(cf.grace_hopper(), side=4000)
    decoded = decode_image(big, max_pixels=2_000_000, notes=notes)
    assert notes == {"decoded_reduced"} and decoded.shape[0] * decoded.shape[1] <= 2_000_000
    with pytest.raises(DropRecord) as info:
        decode_image(cf.png(np.zeros((2000, 2000, 3), np.uint8)), max_pixels=1_000_000)
    assert info.value.reason == "image_too_large"


def test_caption_cleaning():
    raw = b"  <p>Hello&nbsp;<b>world</b></p> see https://x.example/a?b=1 \n\t ok "
    assert clean_caption(raw) == "Hello world see ok"
    # escaped markup is markup: no literal <script> comes out, nor the code inside it, nor ANSI colours
    assert clean_caption("a &lt;script&gt;alert(1)&lt;/script&gt; smiling man") == "a smiling man"
    assert clean_caption("<style>p {color: red}</style>a woman <b>with</b> a hat") == "a woman with a hat"
    assert clean_caption("\x1b[31mred\x1b[0m hair, [1;31mbold[0m") == "red hair, bold"
    assert clean_caption("Tom &amp; Jerry &lt;3") == "Tom & Jerry <3"
    assert clean_caption("日本語のキャプション、笑顔の女性") == "日本語のキャプション、笑顔の女性"
    assert clean_caption("Ελληνικά: χαμογελαστό πρόσωπο") == "Ελληνικά: χαμογελαστό πρόσωπο"
    long = " ".join(["word"] * 200)
    cut = clean_caption(long, CaptionOptions(max_chars=50))
    assert len(cut) <= 50 and cut.endswith("word")
    for raw, reason in ((None, "missing_caption"), (b"\xff\xfe\xfa", "caption_not_utf8"), ("  \n ", "empty_caption"),
                        ("<br/>", "empty_caption"), ("ab", "caption_too_short")):
        with pytest.raises(DropRecord) as info:
            clean_caption(raw)
        assert info.value.reason == reason


def test_perceptual_hash_and_near_duplicate_index():
    photo = cf.grace_hopper()
    import cv2
    resized = cv2.resize(photo, (300, 351), interpolation=cv2.INTER_AREA)
    recompressed = decode_image(cf.jpeg(photo, quality=40))
    assert hamming(phash(photo), phash(resized)) <= 4
    assert hamming(phash(photo), phash(recompressed)) <= 4
    assert hamming(phash(photo), phash(cf.astronaut())) > 16
    rng = np.random.default_rng(0)
    hashes = [int(h) for h in rng.integers(0, 2 ** 63, 400)]
    hashes += [h ^ (1 << int(rng.integers(64))) ^ (1 << int(rng.integers(64))) for h in hashes[:50]]  # 2-bit neighbours
    index = NearDuplicateIndex(threshold=4)
    kept = []
    for h in hashes:
        brute = any(hamming(h, k) <= 4 for k in kept)
        assert index.check_and_add(h) == brute
        if not brute:
            kept.append(h)
    assert len(kept) == 400


@pytest.fixture(scope="module")
def messy_crawl(tmp_path_factory):
    root = tmp_path_factory.mktemp("crawl")
    members, kept, dropped = cf.messy_crawl_members(include_huge=True)
    cf.write_tar(str(root / "part-00000.tar"), members)
    # a second shard cut off mid-download: its first pairs survive, the rest is one counted problem
    faces, _ = cf.lfw_faces_and_non_faces()
    pairs = [(f"1{i:05d}.{ext}", cf.jpeg(faces[20 + i]) if ext == "jpg" else f"face {i}".encode())
             for i in range(6) for ext in ("jpg", "txt")]
    tail_tar = cf.write_tar(str(root / "tmp.tar"), pairs)
    data = open(tail_tar, "rb").read()
    os.remove(tail_tar)
    (root / "part-00001.tar").write_bytes(data[: int(len(data) * 0.7)])
    return root, kept, dropped


def test_messy_crawl_loses_nothing_good(messy_crawl, tmp_path):
    root, kept, dropped = messy_crawl
    path, report = ingest([str(root)], str(tmp_path / "out"), IngestOptions(ReaderOptions("webdataset")), workers=2)
    records = [ShardSource(path)[i] for i in range(len(ShardSource(path)))]
    from_first = {r["source"].decode().split("/", 1)[1]: r["caption"].decode() for r in records
                  if r["source"].startswith(b"part-00000")}
    assert from_first == kept  # every good pair written, with its cleaned caption
    expected_drops = collections.Counter(dropped.values())
    expected_drops["truncated_archive"] += 1
    second = sorted(r["caption"].decode() for r in records if r["source"].startswith(b"part-00001"))
    assert second == [f"face {i}" for i in range(len(second))] and 2 <= len(second) <= 5  # pairs before the cut
    assert report["dropped_by_reason"] == dict(expected_drops)
    assert report["kept"] == len(records) == len(kept) + len(second)
    assert report["seen"] == report["kept"] + report["dropped"]
    assert report["fixed_on_the_way"] == {"alpha_flattened": 1, "cmyk_converted": 1, "decoded_reduced": 1,
                                          "exif_rotated": 1}
    assert report["faces_per_image"]["0"] >= 1 and report["faces_per_image"]["1"] >= len(kept)
    assert json.loads(open(os.path.join(path, "ingest_report.json")).read()) == report
    images = [decode_image(r["image"]) for r in records]
    assert all(img.shape == (64, 64, 3) for img in images)


def _expected_captions(n):
    return {f"k{i}": f"face number {i}, smiling" for i in range(n)}


def test_table_and_folder_readers_round_trip(tmp_path):
    faces, _ = cf.lfw_faces_and_non_faces()
    faces = faces[10:]  # LFW faces 4 and 30 escape the cascade; these ten are all found
    import pyarrow as pa
    import pyarrow.parquet as pq
    captions = _expected_captions(4)
    # Parquet with image bytes, two row groups
    table = pa.table({"jpg": [cf.jpeg(faces[i]) for i in range(4)], "text": list(captions.values()),
                      "uid": list(captions)})
    pq.write_table(table, tmp_path / "crawl.parquet", row_group_size=2)
    # CSV with relative image paths
    (tmp_path / "imgs").mkdir()
    for i in range(4, 7):
        (tmp_path / "imgs" / f"{i}.jpg").write_bytes(cf.jpeg(faces[i]))
    (tmp_path / "crawl.csv").write_text("path,alt\n" + "".join(f"imgs/{i}.jpg,\"face number {i}, smiling\"\n"
                                                               for i in range(4, 7)) + "imgs/missing.jpg,gone\n")
    # folder with sidecar captions, one image without and one caption without
    folder = tmp_path / "folder" / "sub"
    folder.mkdir(parents=True)
    for i in range(7, 10):
        (folder / f"{i}.png").write_bytes(cf.png(faces[i]))
        if i != 9:
            (folder / f"{i}.txt").write_text(f"face number {i}, smiling")
    (folder / "orphan.txt").write_text("no image here")

    def run(inputs, reader):
        path, report = ingest(inputs, str(tmp_path / f"out-{reader.format}-{reader.image_column}"),
                              IngestOptions(reader, dedup_threshold=-1), workers=1)
        source = ShardSource(path)
        return sorted(source[i]["caption"].decode() for i in range(len(source))), report

    got, report = run([str(tmp_path / "crawl.parquet")],
                      ReaderOptions("table", image_column="jpg", caption_column="text",
                                                                        key_column="uid"))
    assert got == sorted(captions.values()) and report["seen"] == 4
    got, report = run([str(tmp_path / "crawl.csv")], ReaderOptions("table", image_column="path", caption_column="alt"))
    assert got == [f"face number {i}, smiling" for i in range(4, 7)]
    assert report["dropped_by_reason"] == {"missing_image": 1}
    got, report = run([str(tmp_path / "folder")], ReaderOptions("folder"))
    assert got == [f"face number {i}, smiling" for i in (7, 8)]
    assert report["dropped_by_reason"] == {"missing_caption": 1, "missing_image": 1}


def test_cli_ingest_and_clear_errors(messy_crawl, tmp_path):
    root, kept, _ = messy_crawl
    cli = [sys.executable, "-m", "gptface_jax.cli", "data", "ingest"]
    proc = subprocess.run(cli + ["--input", str(root / "part-00000.tar"), "--format", "webdataset", "--out",
                                 str(tmp_path / "o"), "--workers", "1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f'"kept": {len(kept)}' in proc.stdout
    proc = subprocess.run(cli + ["--input", str(tmp_path / "nothing*.tar"), "--format", "webdataset", "--out",
                                 str(tmp_path / "o2")], capture_output=True, text=True)
    assert proc.returncode == 2 and "matches no file" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(cli + ["--input", str(root), "--format", "webdataset", "--out", str(tmp_path / "o3"),
                                 "--cascade", "nope.xml"], capture_output=True, text=True)
    assert proc.returncode == 2 and "cascade 'nope.xml' not found" in proc.stderr


def test_beam_path_matches_local(messy_crawl, tmp_path):
    pytest.importorskip("apache_beam")
    root, kept, dropped = messy_crawl
    options = IngestOptions(ReaderOptions("webdataset"), dedup_threshold=0)  # Beam dedups exact hashes
    local_path, local = ingest([str(root / "part-00000.tar")], str(tmp_path / "local"), options, workers=1)
    beam_path, beam = ingest([str(root / "part-00000.tar")], str(tmp_path / "beam"), options,
                             beam_runner="DirectRunner")
    for key in ("seen", "kept", "dropped_by_reason", "fixed_on_the_way", "faces_per_image", "caption_words"):
        assert beam[key] == local[key], key
    def captions(p):
        return sorted(ShardSource(p)[i]["caption"] for i in range(len(ShardSource(p))))
    assert captions(beam_path) == captions(local_path)


def test_folder_listing_follows_links_once_and_never_loops(tmp_path):
    from data_pipelines.ingest.readers import list_units
    root = tmp_path / "crawl"
    (root / "sub").mkdir(parents=True)
    for name in ("a.jpg", "sub/b.jpg", "sub/b.txt", ".hidden.jpg"):
        (root / name).write_bytes(b"x")
    os.symlink("..", root / "sub" / "loop")          # back up to the root
    os.symlink(str(root / "sub"), root / "again")    # the same folder under a second name
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "c.jpg").write_bytes(b"x")
    os.symlink(str(outside), root / "linked")        # a linked folder is read, once
    units = list_units([str(root)], ReaderOptions("folder"))
    names = sorted(os.path.basename(p) for u in units for p in u.files)
    assert names == ["a.jpg", "b.jpg", "c.jpg"]


def test_an_undecodable_image_is_named_without_buffer_addresses():
    with pytest.raises(DropRecord) as info:
        decode_image(b"this is not an image")
    assert info.value.reason == "corrupt_image" and "cannot identify image file" in info.value.detail
    assert "BytesIO" not in info.value.detail and "0x" not in info.value.detail


def test_an_ingest_that_keeps_nothing_says_why(tmp_path):
    from data_pipelines.ingest.readers import InputError
    folder = tmp_path / "crawl"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(b"not a picture")
        (folder / f"{i}.txt").write_text("a smiling face")
    with pytest.raises(InputError, match=r"no pair survived ingestion: 3 seen, dropped by reason: corrupt_image 3"):
        ingest([str(folder)], str(tmp_path / "out"), IngestOptions(ReaderOptions("folder")), workers=1)
    report = json.loads((tmp_path / "out" / "ingest_report_nothing_kept.json").read_text())
    assert report["kept"] == 0 and report["examples_by_reason"]["corrupt_image"]
