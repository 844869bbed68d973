"""Sequence-level distillation's data: English words outside CMUdict (minis2s/data/wordlists.py),
pronounced by a teacher (``g2p.transfer_set``, ``g2p transfer``), trained on beside the
references (``G2PTask(transfer=...)``, ``g2p train --transfer``)."""
import collections
import json

import pytest
from test_cli import assert_clean_error, assert_ok, minis2s

from minis2s.data import read_pairs, write_pairs
from minis2s.data.cmudict import load_cmudict, load_split
from minis2s.data.wordlists import english_words, sample_like
from minis2s.g2p import G2P, G2PTask, agreed, transfer_set


@pytest.fixture(scope="module")
def outside():
    return english_words(exclude=load_cmudict())


def test_english_words_are_lower_case_letters_none_of_them_in_cmudict(outside):
    cmu = load_cmudict()
    assert len(outside) > 200_000, "web2 + GCIDE minus CMUdict: 224,393 words"
    assert outside == sorted(set(outside))
    assert all(w.isascii() and w.isalpha() and w.islower() for w in outside)
    assert not [w for w in outside if w in cmu]
    # and the exclusion is what removes them: CMUdict words are in the lists
    assert len(english_words(exclude=set())) > len(outside) + 30_000


def test_sample_like_follows_the_lengths_of_the_training_words(outside):
    train = load_split("train")
    words = sample_like(outside, train, 5000, seed=1)
    assert len(set(words)) == len(words) and set(words) <= set(outside)
    assert abs(len(words) - 5000) <= 15, "one rounding per length"
    got, want = collections.Counter(map(len, words)), collections.Counter(map(len, train))
    for length in range(3, 13):  # lengths with hundreds of words each: within 1% of the share
        assert abs(got[length] / len(words) - want[length] / len(train)) < 0.01, length
    assert max(got) <= max(want)


def test_sample_like_is_the_same_for_a_seed_and_differs_across_seeds(outside):
    train = load_split("train")
    a, b, c = (sample_like(outside, train, 300, seed=s) for s in (4, 4, 5))
    assert a == b and a != c


def test_sample_like_takes_every_candidate_of_a_length_it_is_short_of():
    words = sample_like(["ab", "cd", "xyz"], ["aa", "bb", "cc", "dd"], 10)
    assert words == ["ab", "cd"], "lengths the model words never have are not drawn; 2-letter: all there are"


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_sample_like_refuses_a_bad_count(n):
    with pytest.raises(ValueError, match="^n must be a positive int"):
        sample_like(["ab"], ["cd"], n)


def test_a_transfer_set_is_the_teachers_pronunciations():
    g2p = G2P("seq2seq")
    words = ["blorfing", "quaxel", "zintrope"]
    pairs, dropped = transfer_set(g2p, words)
    assert dropped == 0
    assert pairs == [(w, " ".join(p)) for w, p in zip(words, g2p(words))]


def test_agreed_keeps_the_pairs_every_judge_pronounces_as_labelled():
    s2s, att = G2P("seq2seq"), G2P("attention")
    words = ["blorfing", "quaxel", "zintrope", "phthisick", "xyloquent", "aeolopht", "cwmtrax", "tsktsking"]
    a, b = s2s(words), att(words)
    assert a != b, "the two models must differ somewhere on these words for the filter to be tested"
    pairs = [(w, " ".join(p)) for w, p in zip(words, a)]
    assert agreed(pairs, [s2s]) == pairs, "a judge always agrees with its own labels"
    both = agreed(pairs, [s2s, att])
    assert both == [(w, " ".join(p)) for w, p, q in zip(words, a, b) if p == q]
    assert agreed(pairs, [att, s2s]) == both, "the judges' order does not matter"
    assert agreed(pairs, []) == pairs and agreed([], [att]) == []
    wrong = [(w, "AH") for w in words]
    assert agreed(wrong, [s2s]) == [], "a label no judge gives is dropped"


def test_the_task_trains_on_the_references_then_the_transfer_pairs(tmp_path):
    path = tmp_path / "t.tsv"
    write_pairs(path, [("blorfing", "B L AO R F IH NG"), ("quaxel", "K W AE K S AH L")])
    plain = G2PTask(train_limit=None)
    task = G2PTask(transfer=str(path))
    assert list(task.train_pairs) == list(plain.train_pairs) + list(read_pairs(path))
    d = task.data_settings()
    assert d["transfer_file"] == str(path) and d["transfer_pairs"] == 2
    assert d["train_digest"] != plain.data_settings()["train_digest"]


@pytest.mark.parametrize("word", ["hello", "thoughtful"])  # a training and a test word
def test_the_task_refuses_a_transfer_set_holding_a_cmudict_word(tmp_path, word):
    path = tmp_path / "t.tsv"
    write_pairs(path, [("blorfing", "B L AO R F IH NG"), (word, "HH AH L OW")])
    with pytest.raises(ValueError, match=r"^transfer \(.*t\.tsv\): 1 words are CMUdict words \(e\.g\. '"
                                         + word + "'\\)"):
        G2PTask(transfer=str(path))


def test_the_task_refuses_symbols_outside_the_g2p_alphabet(tmp_path):
    path = tmp_path / "t.tsv"
    write_pairs(path, [("blorfing", "B L AO1 R F IH NG")])
    with pytest.raises(ValueError, match=r"^transfer: 1 symbols are outside the G2P letters and phonemes$"):
        G2PTask(transfer=str(path))


# ---- the command line --------------------------------------------------------------------------
def test_g2p_transfer_writes_a_set_that_g2p_train_uses_and_resumes_from(tmp_path):
    p = minis2s("g2p", "transfer", "--model", "seq2seq", "--words", "60", "--out", "t.tsv", cwd=tmp_path)
    assert_ok(p)
    pairs = read_pairs(tmp_path / "t.tsv")
    assert 55 <= len(pairs) <= 62 and not set(pairs.src) & set(load_cmudict())
    assert "words labelled by seq2seq (greedy" in p.stderr, p.stderr
    p = minis2s("g2p", "transfer", "--words", "60", "--out", "t.tsv", cwd=tmp_path)
    assert_clean_error(p, "--out t.tsv: the file exists")
    p = minis2s("g2p", "transfer", "--model", "seq2seq", "--agree", "attention", "--words", "60",
                "--out", "agreed.tsv", cwd=tmp_path)
    assert_ok(p)
    kept = read_pairs(tmp_path / "agreed.tsv")
    assert list(kept) == agreed(list(pairs), [G2P("attention")]), "the same words drawn, then filtered"
    assert 0 < len(kept) < len(pairs), "seq2seq and attention agree on most unknown words, not all"
    assert f"; {len(kept):,} kept (pronounced the same by attention)" in p.stderr, p.stderr

    args = ("--train-limit", "100", "--hidden", "8", "--layers", "1", "--embedding", "4", "--epochs", "1",
            "--batch-size", "32", "--max-steps", "2", "--quiet")
    p = minis2s("g2p", "train", *args, "--transfer", "t.tsv", "--out", "run", cwd=tmp_path)
    assert_ok(p)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["transfer_file"] == str(tmp_path / "t.tsv")
    assert config["data"]["transfer_pairs"] == len(pairs)
    assert config["data"]["train_pairs"] == 100, "--train-limit counts the references first, then the transfer"
    p = minis2s("g2p", "train", "--resume", "--transfer", "t.tsv", "--out", "run", cwd=tmp_path)
    assert_clean_error(p, "--transfer cannot be given")
    p = minis2s("g2p", "train", "--resume", "--out", "run", "--quiet", cwd=tmp_path)
    assert_ok(p)
    assert "best dev WER" in p.stdout


def test_g2p_train_refuses_a_missing_transfer_file_before_making_the_run(tmp_path):
    p = minis2s("g2p", "train", "--train-limit", "50", "--transfer", "nope.tsv", "--out", "run", cwd=tmp_path)
    assert_clean_error(p, "nope.tsv")
    assert not (tmp_path / "run").exists()


def test_g2p_transfer_refuses_a_stress_teacher_and_a_bad_count(tmp_path):
    assert_clean_error(minis2s("g2p", "transfer", "--model", "stress", "--out", "t.tsv", cwd=tmp_path),
                       "--model", "stress digits")
    assert_clean_error(minis2s("g2p", "transfer", "--agree", "stress", "--out", "t.tsv", cwd=tmp_path),
                       "--agree", "stress digits")
    assert_clean_error(minis2s("g2p", "transfer", "--words", "0", "--out", "t.tsv", cwd=tmp_path),
                       "--words must be >= 1, got 0")
    assert not (tmp_path / "t.tsv").exists()
