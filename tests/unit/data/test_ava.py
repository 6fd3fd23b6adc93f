"""AVA.txt parsing, mean scores, the seed split, the official split and the validation hold-out."""

import numpy as np
import pandas as pd
import pytest

from clip_aesthetics.data import ava


def write_ava(path, rows):
    path.write_text("".join(" ".join(map(str, row)) + "\n" for row in rows))
    return path


def random_rows(n, seed=0, zero_votes=()):
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(1, 10 * n), size=n, replace=False)
    rows = []
    for index, image_id in enumerate(ids, start=1):
        votes = [0] * 10 if image_id in zero_votes else rng.integers(0, 30, 10).tolist()
        rows.append([index, int(image_id), *votes, 1, 2, 3])
    return rows


def test_mean_score_is_the_vote_weighted_mean(tmp_path):
    table = ava.read_ava(write_ava(tmp_path / "AVA.txt", [[1, 953619, 0, 1, 5, 17, 38, 36, 15, 6, 5, 1, 1, 22, 1396]]))
    votes = np.array([0, 1, 5, 17, 38, 36, 15, 6, 5, 1])
    assert table["mean_score"].iat[0] == pytest.approx((votes * np.arange(1, 11)).sum() / votes.sum())
    assert table["n_votes"].iat[0] == 124 and table["image_id"].iat[0] == 953619


def test_malformed_line_names_its_line_number(tmp_path):
    rows = random_rows(5)
    path = write_ava(tmp_path / "AVA.txt", rows)
    lines = path.read_text().splitlines()
    lines[3] = lines[3] + " 99"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ava.AvaFormatError, match=r"AVA.txt:4: expected 15 fields .* found 16"):
        ava.read_ava(path)
    lines[3] = lines[3].replace(" 99", "").replace(" 1 2 3", " 1 2 x")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ava.AvaFormatError, match=r"AVA.txt:4: fields must be integers"):
        ava.read_ava(path)


def test_duplicate_ids_are_an_error(tmp_path):
    rows = random_rows(6)
    rows[4][1] = rows[1][1]
    with pytest.raises(ava.AvaFormatError, match=f"image id {rows[1][1]} appears more than once"):
        ava.read_ava(write_ava(tmp_path / "AVA.txt", rows))


def test_missing_file_names_the_path_and_the_layout(tmp_path):
    with pytest.raises(ava.AvaFormatError, match=r"no AVA.txt at .*nowhere.*image/<image_id>.jpg"):
        ava.read_ava(tmp_path / "nowhere" / "AVA.txt")


def test_seed_split_equals_the_seed_notebooks_pandas_code(tmp_path):
    rows = random_rows(2000, seed=3)
    table = ava.read_ava(write_ava(tmp_path / "AVA.txt", rows))
    # The seed notebook, independently: read, shuffle with random_state=42, cut at its train share.
    frame = pd.read_csv(tmp_path / "AVA.txt", sep=" ", header=None)
    shuffled = frame.sample(frac=1, random_state=42).reset_index(drop=True)
    n_train = round(len(frame) * 229971 / 255530)
    train, test = ava.seed_split(table)
    assert train["image_id"].tolist() == shuffled[1][:n_train].tolist()
    assert test["image_id"].tolist() == shuffled[1][n_train:].tolist()
    assert round(255530 * 229971 / 255530) == 229971


def test_rows_without_votes_are_dropped_after_the_split(tmp_path):
    rows = random_rows(500, seed=4)
    no_votes = {rows[7][1], rows[300][1]}
    for row in rows:
        if row[1] in no_votes:
            row[2:12] = [0] * 10
    table = ava.read_ava(write_ava(tmp_path / "AVA.txt", rows))
    split = ava.split_ava(table, "seed", tmp_path, val_fraction=0.0, seed=42)
    train, test = ava.seed_split(table)
    assert set(split.no_votes) == no_votes
    # Same membership as the seed's split, minus the no-vote rows: nothing shifted between parts.
    assert split.train["image_id"].tolist() == [i for i in train["image_id"] if i not in no_votes]
    assert split.test["image_id"].tolist() == [i for i in test["image_id"] if i not in no_votes]
    assert split.train["mean_score"].notna().all() and split.test["mean_score"].notna().all()


def test_validation_is_a_deterministic_share_of_train(tmp_path):
    table = ava.read_ava(write_ava(tmp_path / "AVA.txt", random_rows(1000, seed=5)))
    first = ava.split_ava(table, "seed", tmp_path, val_fraction=0.1, seed=7)
    again = ava.split_ava(table, "seed", tmp_path, val_fraction=0.1, seed=7)
    other = ava.split_ava(table, "seed", tmp_path, val_fraction=0.1, seed=8)
    whole = ava.split_ava(table, "seed", tmp_path, val_fraction=0.0, seed=7)
    assert first.val["image_id"].tolist() == again.val["image_id"].tolist()
    assert set(first.val["image_id"]) != set(other.val["image_id"])
    assert len(first.val) == round(len(whole.train) * 0.1)
    assert set(first.train["image_id"]) | set(first.val["image_id"]) == set(whole.train["image_id"])
    assert not set(first.val["image_id"]) & set(first.test["image_id"])
    assert len(whole.val) == 0


def test_official_split_uses_the_generic_test_list(tmp_path):
    rows = random_rows(100, seed=6)
    table = ava.read_ava(write_ava(tmp_path / "AVA.txt", rows))
    with pytest.raises(ava.AvaFormatError, match="generic_test.jpgl"):
        ava.split_ava(table, "official", tmp_path, 0.0, 42)
    listed = [row[1] for row in rows[:10]] + [123456789]  # an id AVA.txt does not have is ignored
    (tmp_path / "aesthetics_image_lists").mkdir()
    (tmp_path / "aesthetics_image_lists" / "generic_test.jpgl").write_text("".join(f"{i}\n" for i in listed))
    split = ava.split_ava(table, "official", tmp_path, 0.0, 42)
    assert sorted(split.test["image_id"]) == sorted(listed[:10])
    assert len(split.train) == 90


def test_norm_divides_targets_by_ten():
    assert ava.target_scale(True) == 10.0 and ava.target_scale(False) == 1.0


def test_a_utf8_bom_is_accepted(tmp_path):
    path = write_ava(tmp_path / "AVA.txt", random_rows(4))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(ava.read_ava(path)) == 4


def test_a_non_utf8_byte_names_its_line(tmp_path):
    path = write_ava(tmp_path / "AVA.txt", random_rows(6))
    lines = path.read_bytes().splitlines(keepends=True)
    lines[4] = lines[4].replace(b" 1 2 3", b" 1 2 \xe9")
    path.write_bytes(b"".join(lines))
    with pytest.raises(ava.AvaFormatError, match=r"AVA.txt:5: not UTF-8 text \(byte 0xe9"):
        ava.read_ava(path)


@pytest.mark.parametrize("field, value, words", [
    (4, 2**63, "vote count 9223372036854775808 is above 1,000,000"),
    (4, 10**7, "vote count 10000000 is above 1,000,000"),
    (1, 2**63, "image id 9223372036854775808 is outside"),
])
def test_counts_and_ids_beyond_any_real_value_are_refused_with_the_line(tmp_path, field, value, words):
    rows = random_rows(5)
    rows[2][field] = value
    with pytest.raises(ava.AvaFormatError, match=rf"AVA.txt:3: {words}"):
        ava.read_ava(write_ava(tmp_path / "AVA.txt", rows))


def test_ids_keep_their_written_form_for_file_lookup(tmp_path):
    rows = random_rows(3)
    rows[0][1] = "00761087"
    table = ava.read_ava(write_ava(tmp_path / "AVA.txt", rows))
    assert table["image_id"].iat[0] == 761087 and table["image_name"].iat[0] == "00761087"
    images = tmp_path / "image"
    images.mkdir()
    assert ava.image_path(images, 761087, "00761087") == images / "761087.jpg", "falls back to the integer form"
    (images / "00761087.jpg").write_bytes(b"x")
    assert ava.image_path(images, 761087, "00761087") == images / "00761087.jpg"
