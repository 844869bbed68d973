"""Sequence metrics (minis2s/metrics.py ``sequence_metrics``): hand-computed exact/WER/CER with
several references, BLEU/chrF equal to sacrebleu's own, and the bit-parallel edit distance equal
to the reference ``edit_distance``."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sacrebleu.metrics import BLEU, CHRF

from minis2s.metrics import LOWER_IS_BETTER, METRICS, _fast_edit_distance, edit_distance, sequence_metrics


# ---- the fast edit distance is the reference's number --------------------------------------------
@settings(max_examples=500, deadline=None)
@given(a=st.lists(st.sampled_from("abc"), max_size=12), b=st.lists(st.sampled_from("abc"), max_size=12))
def test_fast_edit_distance_matches_reference(a, b):
    assert _fast_edit_distance(a, b) == edit_distance(a, b)


@settings(max_examples=60, deadline=None)
@given(a=st.lists(st.integers(0, 3), max_size=150), b=st.lists(st.integers(0, 3), max_size=150))
def test_fast_edit_distance_matches_reference_beyond_64_elements(a, b):
    assert _fast_edit_distance(a, b) == edit_distance(a, b)  # bit vectors longer than a machine word


@settings(max_examples=200, deadline=None)
@given(a=st.text(max_size=20), b=st.text(max_size=20))
def test_fast_edit_distance_on_strings(a, b):
    assert _fast_edit_distance(a, b) == edit_distance(a, b) == _fast_edit_distance(b, a)


# ---- hand-computed -------------------------------------------------------------------------------
def test_exact_wer_cer_with_multiple_references():
    hyps = ["a b", "c", "x y"]
    refs = [["a b"], ["d", "c"], ["x z", "q r s t"]]
    m = sequence_metrics(hyps, refs)
    assert m["examples"] == 3
    assert m["exact"] == pytest.approx(2 / 3)  # "c" matches its second reference
    # tokens: 0 edits / 2, 0 / 1 (closest "c"), 1 / 2 (closest "x z") -> 1 / 5
    assert m["wer"] == pytest.approx(1 / 5)
    # characters: 0 / 3, 0 / 1, 1 / 3 -> 1 / 7
    assert m["cer"] == pytest.approx(1 / 7)


def test_closest_reference_ties_go_to_the_shorter():
    # "a b" -> "a b c d": 2 edits over 4 tokens; -> "x": 2 edits over 1 token. Tie: the shorter.
    m = sequence_metrics(["a b"], [["a b c d", "x"]])
    assert m["wer"] == pytest.approx(2 / 1)
    assert sequence_metrics(["a b"], [["x", "a b c d"]])["wer"] == pytest.approx(2 / 1)  # order is irrelevant
    # characters pick their own closest: "a b" -> "a b c d" 4 edits / 7, -> "x" 3 edits / 1
    assert m["cer"] == pytest.approx(3 / 1)


def test_tokenize_decides_what_a_word_is():
    hyps, refs = ["kat", "dog"], [["cat"], ["dog"]]
    assert sequence_metrics(hyps, refs)["wer"] == pytest.approx(1 / 2)
    by_char = sequence_metrics(hyps, refs, tokenize=list)
    assert by_char["wer"] == by_char["cer"] == pytest.approx(1 / 6)


def test_perfect_predictions():
    refs = [["the cat sat on the mat", "a cat sat on a mat"], ["a dog runs in the park today"]]
    m = sequence_metrics(["a cat sat on a mat", "a dog runs in the park today"], refs)
    assert m == {"examples": 2, "exact": 1.0, "wer": 0.0, "cer": 0.0, "bleu": pytest.approx(100.0),
                 "chrf": pytest.approx(100.0)}
    assert set(m) == {"examples", *METRICS} and set(LOWER_IS_BETTER) == set(METRICS)


def test_every_reference_empty_of_tokens():
    # str.split gives no tokens for a reference of spaces: no edits is a rate of 0, any is inf
    assert sequence_metrics([" "], [[" "]])["wer"] == 0.0
    assert sequence_metrics(["a"], [[" "]])["wer"] == float("inf")


# ---- BLEU and chrF are sacrebleu's ---------------------------------------------------------------
HYPS = ["the cat sat on the mat", "a dog is running in the park", "hello world , how are you ?",
        "it is raining today", "numbers like 1924-02-10 count"]
REFS = ["the cat is sitting on the mat", "a dog runs in the park", "hello world , how are you doing ?",
        "today it rains", "numbers like 1924-02-10 count too"]


def test_bleu_and_chrf_equal_sacrebleu_for_single_references():
    m = sequence_metrics(HYPS, [[r] for r in REFS])
    assert m["bleu"] == BLEU().corpus_score(HYPS, [REFS]).score
    assert m["chrf"] == CHRF().corpus_score(HYPS, [REFS]).score
    assert 0 < m["bleu"] < 100 and 0 < m["chrf"] < 100


def test_a_second_reference_counts():
    refs = [[r] for r in REFS]
    refs[1] = [REFS[1], HYPS[1]]  # example 1 gets a second reference: its own prediction
    m, single = sequence_metrics(HYPS, refs), sequence_metrics(HYPS, [[r] for r in REFS])
    assert m["bleu"] > single["bleu"] and m["chrf"] > single["chrf"]
    assert m["exact"] == pytest.approx(1 / 5) and single["exact"] == 0.0


def test_missing_references_are_absent_not_empty():
    # Example 0 has one reference, example 1 two. sacrebleu takes reference streams, so example 0's
    # second slot is padded: with None it is absent, the same as repeating its first reference ...
    hyps = ["x", HYPS[1]]
    ours = sequence_metrics(hyps, [[REFS[0]], [REFS[1], HYPS[1]]])
    repeated = sequence_metrics(hyps, [[REFS[0], REFS[0]], [REFS[1], HYPS[1]]])
    assert (ours["bleu"], ours["chrf"]) == (repeated["bleu"], repeated["chrf"])
    # ... whereas "" would be a real, empty reference: the closest reference length for "x" is then
    # 0, which lifts the brevity penalty.
    with_empty = BLEU().corpus_score(hyps, [[REFS[0], REFS[1]], ["", HYPS[1]]]).score
    assert ours["bleu"] < with_empty


# ---- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("hyps,refs,error,message", [
    (["a"], [["a"], ["b"]], ValueError, "1 hypotheses for 2 reference lists"),
    ([], [], ValueError, "hypotheses is empty"),
    (["a", "b"], [["a"], []], ValueError, r"references\[1\] is empty"),
    (["a", 3], [["a"], ["b"]], TypeError, r"hypotheses\[1\] must be a str, got int"),
    (["a"], ["a"], TypeError, r"references\[0\] must be a list of reference strings, got str"),
    (["a"], [["a", None]], TypeError, r"references\[0\] holds a NoneType, not a str"),
    ("ab", [["a"], ["b"]], TypeError, "must be lists"),
])
def test_bad_inputs(hyps, refs, error, message):
    with pytest.raises(error, match=message):
        sequence_metrics(hyps, refs)


def test_tokenize_must_be_callable():
    with pytest.raises(TypeError, match="tokenize must be callable"):
        sequence_metrics(["a"], [["a"]], tokenize="split")
