"""Answer metrics and the paired bootstrap on hand-made cases whose right answer is known."""

from __future__ import annotations

import pytest

from evals.qa_metrics import (
    exact_match,
    f1,
    longest_common_run,
    normalize_en,
    paired_bootstrap_ci,
    segment_zh,
)


def test_english_normalization_drops_case_punctuation_and_articles() -> None:
    assert normalize_en("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_en("an apple, a pear") == "apple pear"
    assert exact_match("the Eiffel tower.", ["Eiffel Tower"], "en") == 1.0
    assert exact_match("Eiffel", ["Eiffel Tower"], "en") == 0.0


def test_english_f1_is_token_overlap_best_over_golds() -> None:
    # prediction "eiffel tower paris" vs gold "eiffel tower": precision 2/3, recall 1 -> 0.8
    assert f1("Eiffel Tower, Paris", ["the Eiffel Tower"], "en") == pytest.approx(0.8)
    assert f1("Paris", ["Eiffel Tower", "Paris"], "en") == 1.0
    assert f1("London", ["Paris"], "en") == 0.0
    # repeated tokens count only as often as the gold has them
    assert f1("paris paris", ["paris"], "en") == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_chinese_segments_characters_and_keeps_latin_words_whole() -> None:
    assert segment_zh("北京大学") == ["北", "京", "大", "学"]
    assert segment_zh("2008年 Beijing奥运，") == ["2008", "年", "beijing", "奥", "运"]


def test_chinese_f1_uses_the_longest_common_run_of_characters() -> None:
    assert longest_common_run(list("abcxde"), list("zbcde")) == 2
    # prediction 北京大学 (4) vs gold 北京 (2): common run 2 -> precision 0.5, recall 1 -> 2/3
    assert f1("北京大学", ["北京"], "zh") == pytest.approx(2 / 3)
    # characters shared but not contiguous count only by their longest run: 北京 / 北X京 -> run 1
    assert f1("北上京", ["北京"], "zh") == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert exact_match("北京。", ["北京"], "zh") == 1.0
    assert exact_match("北京市", ["北京"], "zh") == 0.0
    assert f1("上海", ["北京"], "zh") == 0.0


def test_bootstrap_of_identical_samples_is_zero_and_of_a_constant_shift_exact() -> None:
    base = [0.0, 0.5, 1.0, 0.25, 0.75]
    assert paired_bootstrap_ci(base, base) == (0.0, 0.0)
    low, high = paired_bootstrap_ci([b + 0.1 for b in base], base)
    assert low == pytest.approx(0.1) and high == pytest.approx(0.1)


def test_bootstrap_interval_covers_the_mean_difference_and_narrows_with_more_questions() -> None:
    import random

    rng = random.Random(1)
    small_a = [rng.random() for _ in range(20)]
    small_b = [rng.random() for _ in range(20)]
    low, high = paired_bootstrap_ci(small_a, small_b)
    mean_diff = sum(a - b for a, b in zip(small_a, small_b)) / 20
    assert low < mean_diff < high
    big_a, big_b = small_a * 25, small_b * 25
    big_low, big_high = paired_bootstrap_ci(big_a, big_b)
    assert big_high - big_low < (high - low) / 2
    assert paired_bootstrap_ci(small_a, small_b) == (low, high)  # seeded: the same interval every time
    with pytest.raises(ValueError):
        paired_bootstrap_ci([1.0], [1.0, 2.0])
