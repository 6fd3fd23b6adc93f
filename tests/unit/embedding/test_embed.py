"""Embedding into the cache: aligned by id, failures recorded, resumable, and no work when complete."""

import shutil
import time

import numpy as np
import pytest
import torch
from helpers import embed_named

from clip_aesthetics.backbones.families import BackboneUnavailableError, load_backbone, resolve_backbone
from clip_aesthetics.data import ava
from clip_aesthetics.data.ava import read_ava
from clip_aesthetics.data.labels import read_dataset
from clip_aesthetics.data.sample_data import TRAP_NO_VOTES, TRAPS_EMBEDDED, TRAPS_SKIPPED
from clip_aesthetics.data.splits import settle
from clip_aesthetics.embedding import embed as embed_module
from clip_aesthetics.embedding import features, filling
from clip_aesthetics.embedding.embed import embed_pixels
from clip_aesthetics.images.decode import ImageError, load_rgb
from clip_aesthetics.settings import DataSettings, EmbedSettings


@pytest.fixture
def ava_copy(sample_ava, tmp_path):
    return shutil.copytree(sample_ava, tmp_path / "ava")


def settings(ava_dir, clip, cache, **embed):
    embedding = EmbedSettings(cache_dir=cache, **{"num_workers": 0, **embed})
    return DataSettings(ava_dir=ava_dir), embedding, resolve_backbone(str(clip))


def count_forwards(monkeypatch, fail_after=None):
    """Count images through the CLIP forward; optionally stop the run like a kill after N batches."""
    seen = {"images": 0, "batches": 0}

    def counting(model, pixels, dtype):
        if fail_after is not None and seen["batches"] == fail_after:
            raise KeyboardInterrupt("simulated kill")
        seen["images"] += len(pixels)
        seen["batches"] += 1
        return embed_pixels(model, pixels, dtype)

    monkeypatch.setattr(embed_module, "embed_pixels", counting)
    return seen


def test_cache_rows_belong_to_their_images_and_failures_keep_reasons(ava_copy, tiny_clip, tmp_path):
    data, embed, clip = settings(ava_copy, tiny_clip, tmp_path / "cache", num_workers=2, embed_batch_size=7,
                                  precision="float32")  # compared below with a float32 forward
    report = embed_named(data, embed, clip)
    cached = report.cache.load()
    voted = read_ava(ava_copy / "AVA.txt").query("n_votes > 0")["image_id"]
    assert set(cached.ids) | set(cached.failures["image_id"]) == set(voted)
    assert set(TRAPS_EMBEDDED) <= set(cached.ids)
    reasons = dict(zip(cached.failures["image_id"], cached.failures["reason"], strict=True))
    assert set(reasons) == set(TRAPS_SKIPPED)
    assert reasons[21].startswith("truncated") and reasons[23] == "missing file"
    assert TRAP_NO_VOTES not in set(cached.ids) | set(reasons)
    # Each row is its own image's embedding, whatever order the workers finished in.
    model, processor = load_backbone(report.source, torch.device("cpu"))
    for image_id in [int(cached.ids[3]), 14, int(cached.ids[-1])]:
        pixels = processor(images=load_rgb(ava_copy / "image" / f"{image_id}.jpg"), return_tensors="pt")["pixel_values"]
        row = int(np.flatnonzero(cached.ids == image_id)[0])
        np.testing.assert_allclose(cached.embeddings[row], embed_pixels(model, pixels, torch.float32)[0], atol=1e-3)


def test_second_embed_does_no_clip_work(ava_copy, tiny_clip, tmp_path, monkeypatch):
    data, embed, clip = settings(ava_copy, tiny_clip, tmp_path / "cache")
    embed_named(data, embed, clip)

    def no_model(*_):
        raise AssertionError("the model was loaded although every image is cached")

    monkeypatch.setattr(filling, "load_backbone", no_model)
    assert embed_named(data, embed, clip).n_processed == 0


def test_interrupted_embed_resumes_without_recomputing_finished_shards(ava_copy, tiny_clip, tmp_path, monkeypatch):
    data, embed, clip = settings(ava_copy, tiny_clip, tmp_path / "cache", embed_batch_size=16, shard_size=32,
                                  precision="float32")
    count_forwards(monkeypatch, fail_after=5)
    with pytest.raises(KeyboardInterrupt):
        embed_named(data, embed, clip)
    cache = filling.cache_for(embed.cache_dir, clip, ava_copy / "image", "float32")
    assert len(cache.shards()) == 2, "two full shards of 32 were written before the kill"
    done = len(cache.answers())
    assert done >= 64 and not list(cache.root.glob(".*.tmp")), "no half-written shard is left behind"
    seen = count_forwards(monkeypatch)
    report = embed_named(data, embed, clip)
    assert report.n_processed == report.n_images - done
    assert seen["images"] == report.n_processed - len(TRAPS_SKIPPED)
    assert len(report.cache.load().ids) == report.n_images - len(TRAPS_SKIPPED)


def test_a_replaced_file_is_embedded_again(ava_copy, tiny_clip, tmp_path, monkeypatch):
    data, embed, clip = settings(ava_copy, tiny_clip, tmp_path / "cache")
    first = embed_named(data, embed, clip).cache.load()
    image_id = int(first.ids[5])
    shutil.copy(ava_copy / "image" / "11.jpg", ava_copy / "image" / f"{image_id}.jpg")
    seen = count_forwards(monkeypatch)
    second = embed_named(data, embed, clip).cache.load()
    assert seen["images"] == 1
    replaced = second.embeddings[np.flatnonzero(second.ids == image_id)[0]]
    np.testing.assert_allclose(replaced, second.embeddings[np.flatnonzero(second.ids == 11)[0]], atol=1e-6)
    assert len(second.ids) == len(first.ids)


def test_unreachable_hub_model_fails_fast_with_a_way_out():
    started = time.perf_counter()
    with pytest.raises(BackboneUnavailableError, match=r"not in the local Hugging Face cache.*clip=FOLDER"):
        resolve_backbone("b32")
    assert time.perf_counter() - started < 10


def test_image_folder_without_images_is_an_error(sample_ava, tmp_path):
    (tmp_path / "ava" / "image").mkdir(parents=True)
    shutil.copy(sample_ava / "AVA.txt", tmp_path / "ava" / "AVA.txt")
    with pytest.raises(ava.DatasetError, match="holds no images"):
        ava.image_dir(tmp_path / "ava")
    with pytest.raises(ava.DatasetError, match="no image folder"):
        ava.image_dir(tmp_path)


def test_a_repaired_image_is_embedded_and_its_old_failure_forgotten(ava_copy, tiny_clip, tmp_path, monkeypatch):
    """Missing, truncated and unreadable-by-permission files that are fixed later are used, not kept as failures."""
    data, embed, clip = settings(ava_copy, tiny_clip, tmp_path / "cache")
    images = ava_copy / "image"
    victim, twin = (int(i) for i in read_ava(ava_copy / "AVA.txt")["image_id"].iloc[:2])
    real_load = embed_module.load_source

    def permission_denied_for_victim(path, **options):  # as the (root) test user cannot make a file unreadable
        if path.name == f"{victim}.jpg":
            raise ImageError("unreadable file: Permission denied")
        return real_load(path, **options)

    monkeypatch.setattr(embed_module, "load_source", permission_denied_for_victim)
    first = embed_named(data, embed, clip).cache.load()
    assert {21, 23, victim} <= set(first.failures["image_id"])
    shutil.copy(images / f"{twin}.jpg", images / "23.jpg")  # the missing file appears
    shutil.copy(images / f"{twin}.jpg", images / "21.jpg")  # the truncated file is repaired
    monkeypatch.setattr(embed_module, "load_source", real_load)  # the permission is fixed: size and mtime unchanged
    seen = count_forwards(monkeypatch)
    second = embed_named(data, embed, clip).cache.load()
    assert seen["images"] >= 2
    assert {21, 23, victim} <= set(second.ids)
    assert not {21, 23, victim} & set(second.failures["image_id"]), "the newest outcome wins"
    expected = second.embeddings[np.flatnonzero(second.ids == twin)[0]]
    np.testing.assert_allclose(second.embeddings[np.flatnonzero(second.ids == 23)[0]], expected, atol=1e-6)


def test_failures_that_still_fail_do_no_clip_work(ava_copy, tiny_clip, tmp_path, monkeypatch):
    data, embed, clip = settings(ava_copy, tiny_clip, tmp_path / "cache")
    embed_named(data, embed, clip)
    monkeypatch.setattr(filling, "load_backbone", lambda *_: pytest.fail("model loaded for images that still fail"))
    assert embed_named(data, embed, clip).n_processed == 0


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage", "flip"])
def test_a_damaged_shard_is_set_aside_and_its_images_embedded_again(ava_copy, tiny_clip, tmp_path, damage, caplog):
    data, embed, clip = settings(ava_copy, tiny_clip, tmp_path / "cache", shard_size=64)
    report = embed_named(data, embed, clip)
    before = report.cache.load()
    shard = report.cache.shards()[1]
    payload = bytearray(shard.read_bytes())
    if damage == "truncate":
        payload = payload[: len(payload) // 2]
    elif damage == "empty":
        payload = bytearray()
    elif damage == "garbage":
        payload = bytearray(b"not a shard at all" * 50)
    else:  # one flipped bit deep inside the embeddings: zip structure intact
        payload[len(payload) // 2] ^= 0x01
    shard.write_bytes(bytes(payload))

    again = embed_named(data, embed, clip)
    assert again.n_processed > 0, "the damaged shard's images are embedded again"
    assert (report.cache.root / "damaged").is_dir() and not shard.exists()
    assert shard.name in caplog.text and "damaged" in caplog.text
    after = again.cache.load()
    order = np.argsort(after.ids)
    np.testing.assert_array_equal(after.ids[order], np.sort(before.ids))
    np.testing.assert_allclose(after.embeddings[order], before.embeddings[np.argsort(before.ids)], atol=1e-3)


def test_train_never_reads_a_damaged_shard(ava_copy, tiny_clip, tmp_path):
    data, embed, clip = settings(ava_copy, tiny_clip, tmp_path / "cache", shard_size=64)
    cache = embed_named(data, embed, clip).cache
    shard = cache.shards()[0]
    payload = bytearray(shard.read_bytes())
    payload[len(payload) // 2] ^= 0x01
    shard.write_bytes(bytes(payload))
    with pytest.raises(features.DatasetError, match="run `clip-aesthetics embed` again"):
        features.load_dataset(features.EmbeddingCache(cache.root),
                              settle(read_dataset(DataSettings(ava_dir=ava_copy)), DataSettings(ava_dir=ava_copy)))


def test_a_damaged_manifest_is_rewritten_by_embed_and_named_by_train(ava_copy, tiny_clip, tmp_path):
    from clip_aesthetics.embedding.cache import CacheError

    data, embed, clip = settings(ava_copy, tiny_clip, tmp_path / "cache")
    cache = embed_named(data, embed, clip).cache
    text = cache.manifest_path.read_text()
    cache.manifest_path.write_text(text[: len(text) // 2])
    with pytest.raises(CacheError, match="manifest.json is damaged.*embed"):
        cache.load()
    assert embed_named(data, embed, clip).n_processed == 0
    assert cache.manifest_path.read_text() == text


def test_images_named_with_leading_zeros_are_found(ava_copy, tiny_clip, tmp_path):
    lines = (ava_copy / "AVA.txt").read_text().splitlines()
    fields = lines[0].split()
    image_id = int(fields[1])
    fields[1] = f"00{image_id}"
    (ava_copy / "AVA.txt").write_text("\n".join([" ".join(fields), *lines[1:]]) + "\n")
    (ava_copy / "image" / f"{image_id}.jpg").rename(ava_copy / "image" / f"00{image_id}.jpg")
    data, embed, clip = settings(ava_copy, tiny_clip, tmp_path / "cache")
    cached = embed_named(data, embed, clip).cache.load()
    assert image_id in set(cached.ids) and image_id not in set(cached.failures["image_id"])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_embeddings_leave_the_model_in_float32(tiny_clip, dtype):
    """The transformer runs in half precision; its last layer norm and projection in float32, so the
    embedding keeps the cache's float16 resolution instead of bfloat16's 8 bits."""
    model, _ = load_backbone(resolve_backbone(str(tiny_clip)), torch.device("cpu"))
    pixels = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    exact = embed_pixels(model, pixels, torch.float32)
    with torch.inference_mode():
        assert np.allclose(exact, model.tower(pixel_values=pixels).image_embeds.numpy(), atol=2e-3, rtol=1e-3)
    half = embed_pixels(model, pixels, dtype)
    cosine = (half * exact).sum(1) / np.linalg.norm(half, axis=1) / np.linalg.norm(exact, axis=1)
    assert cosine.min() > 0.999
    as_bf16 = torch.from_numpy(half).to(torch.bfloat16).float().numpy()
    assert np.mean(as_bf16 != half) > 0.5, "the embedding was rounded to bfloat16 on its way out"


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_completes_an_existing_cache_instead_of_starting_over(sample_ava, tiny_clip, tmp_path,
                                                                            monkeypatch, native):
    """A float32 cache made before bfloat16 became the CPU default is reused by precision=auto: no CLIP work."""
    from clip_aesthetics.embedding import precision

    monkeypatch.setattr(precision, "native_bfloat16", lambda: native)
    monkeypatch.delenv("CLIP_AESTHETICS_PRECISION")
    data, embed, clip = settings(sample_ava, tiny_clip, tmp_path / "cache", precision="float32")
    embed_named(data, embed, clip)
    seen = count_forwards(monkeypatch)
    again = embed_named(data, embed.model_copy(update={"precision": "auto"}), clip)
    assert (again.precision, again.n_processed, seen["images"]) == ("float32", 0, 0)
    # An explicit precision is obeyed: its own cache, embedded from scratch.
    fresh = embed_named(data, embed.model_copy(update={"precision": "bfloat16"}), clip)
    assert fresh.precision == "bfloat16" and fresh.n_processed > 0 and seen["images"] > 0


@pytest.mark.parametrize("avx512", [True, False], ids=["avx512-cpu", "avx2-cpu"])
def test_cpu_decoding_policy_follows_the_cpu_and_both_give_the_same_cache(sample_ava, tiny_clip, tmp_path,
                                                                         monkeypatch, avx512):
    """Between forwards (threads) on AVX512 CPUs, beside the forward (worker processes) elsewhere, always beside
    a GPU: the detection is forced either way, whatever this machine's CPU, and the cache is the same."""
    monkeypatch.setattr(embed_module, "avx512_cpu", lambda: avx512)
    assert embed_module.decode_beside_forward(torch.device("cpu")) is not avx512
    assert embed_module.decode_beside_forward(torch.device("cuda")) is True
    used = []
    real_loader = embed_module.DataLoader
    monkeypatch.setattr(embed_module, "DataLoader",
                        lambda *a, **k: used.append(k["num_workers"]) or real_loader(*a, **k))
    data, embed, clip = settings(sample_ava, tiny_clip, tmp_path / "policy", num_workers=2)
    report = embed_named(data, embed, clip)
    assert bool(used) is not avx512 and (not used or used[0] == 2), "worker processes only beside the forward"
    monkeypatch.setattr(embed_module, "avx512_cpu", lambda: not avx512)
    other = embed_named(data, embed.model_copy(update={"cache_dir": tmp_path / "other"}), clip)
    mine, theirs = report.cache.load(), other.cache.load()
    order_a, order_b = np.argsort(mine.ids), np.argsort(theirs.ids)
    np.testing.assert_array_equal(mine.ids[order_a], theirs.ids[order_b])
    np.testing.assert_array_equal(mine.embeddings[order_a], theirs.embeddings[order_b])
