"""The LaMP task plugins: registry names, queries, documents, PPEP/AIP prompts (expected strings
written by hand from the official LaMP prompt code), the official token budget, parsing, gold checks and scoring."""

from __future__ import annotations

import functools
import math
import random

import pytest

from lamp_harness.base.errors import LampError
from lamp_harness.base.tokens import WhitespaceTokenCounter
from lamp_harness.plugin.contracts import Example, ProfileItem
from lamp_harness.plugin.registry import host

WS = WhitespaceTokenCounter()
ALL_TASKS = ("lamp-1", "lamp-2", "lamp-2-news", "lamp-3", "lamp-4", "lamp-5", "lamp-6", "lamp-7")


def task(name: str):
    return host().registry.create("task", name)


def item(position: int, **fields) -> ProfileItem:
    return ProfileItem(id=str(position), position=position, fields=fields)


def example(text: str, *items: ProfileItem, gold: str | None = None) -> Example:
    return Example(id="q1", input=text, profile=tuple(items), gold=gold)


LAMP1_INPUT = (
    'For an author who has written the paper with the title "Deep nets", which reference is '
    'related? Just answer with [1] or [2] without explanation. [1]: "Graph cuts" '
    '[2]: "Sparse coding"'
)
LAMP2_INPUT = (
    "Which tag does this movie relate to among the following tags? Just answer with the tag "
    "name without further explanation. tags: [sci-fi, comedy] description: A boy meets a robot."
)
NEWS_INPUT = (
    "Which category does this article relate to among the following categories? Just answer "
    "with the category name without further explanation. categories: [sports, politics] "
    "article: The senate voted today."
)
LAMP3_INPUT = (
    "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, "
    "4, or 5 without further explanation. review: Works well."
)
LAMP4_INPUT = "Generate a headline for the following article: Something happened."
LAMP5_INPUT = "Generate a title for the following abstract of a paper: We study X."
LAMP6_INPUT = "Generate a subject for the following email: Lunch at noon?"
LAMP7_INPUT = "Paraphrase the following tweet without any explanation before or after it: so tired today"


# -- registry -------------------------------------------------------------------------------------


def test_all_eight_tasks_are_registered_under_canonical_names():
    names = host().registry.names("task")
    assert set(ALL_TASKS) <= set(names)


@pytest.mark.parametrize("alias, canonical", [("LaMP_3", "lamp-3"), ("LaMP-7", "lamp-7"), ("lamp_2_news", "lamp-2-news")])
def test_official_spellings_resolve_to_the_canonical_task(alias, canonical):
    assert task(alias).name == canonical


@pytest.mark.parametrize(
    "name, official, kind, labels",
    [
        ("lamp-1", "LaMP_1", "classification", ("[1]", "[2]")),
        ("lamp-2", "LaMP_2", "classification", None),
        ("lamp-2-news", "LaMP_2", "classification", None),
        ("lamp-3", "LaMP_3", "ordinal", ("1", "2", "3", "4", "5")),
        ("lamp-4", "LaMP_4", "generation", ()),
        ("lamp-5", "LaMP_5", "generation", ()),
        ("lamp-6", "LaMP_6", "generation", ()),
        ("lamp-7", "LaMP_7", "generation", ()),
    ],
)
def test_task_identity(name, official, kind, labels):
    t = task(name)
    assert (t.name, t.official_name, t.kind) == (name, official, kind)
    if labels is not None:
        assert t.labels == labels


def test_label_sets_are_the_official_ones_in_order():
    assert task("lamp-2").labels == (
        "sci-fi",
        "based on a book",
        "comedy",
        "action",
        "twist ending",
        "dystopia",
        "dark comedy",
        "classic",
        "psychology",
        "fantasy",
        "romance",
        "thought-provoking",
        "social commentary",
        "violence",
        "true story",
    )
    assert task("lamp-2-news").labels == (
        "food & drink",
        "sports",
        "education",
        "parents",
        "religion",
        "travel",
        "business",
        "crime",
        "science & technology",
        "culture & arts",
        "entertainment",
        "politics",
        "women",
        "style & beauty",
        "healthy living",
    )


@pytest.mark.parametrize(
    "name, fields",
    [
        ("lamp-1", ("title", "abstract")),
        ("lamp-2", ("description", "tag")),
        ("lamp-2-news", ("title", "text", "category")),
        ("lamp-3", ("text", "score")),
        ("lamp-4", ("title", "text")),
        ("lamp-5", ("title", "abstract")),
        ("lamp-6", ("title", "text")),
        ("lamp-7", ("text",)),
    ],
)
def test_profile_fields(name, fields):
    assert task(name).profile_fields == fields


def test_generation_budget_is_the_official_128_and_classification_budgets_are_short():
    assert all(task(n).max_new_tokens == 128 for n in ("lamp-4", "lamp-5", "lamp-6", "lamp-7"))
    assert task("lamp-1").max_new_tokens == 8
    assert task("lamp-3").max_new_tokens == 4
    assert task("lamp-2").max_new_tokens <= 16


@pytest.mark.parametrize("name", ALL_TASKS)
def test_task_passes_the_conformance_kit(name):
    from lamp_harness.testing import check_task

    check_task(task(name))


# -- queries and documents (official LaMP code) -------------------------------------------------------


@pytest.mark.parametrize(
    "name, text, query",
    [
        ("lamp-1", LAMP1_INPUT, "Graph cuts Sparse coding"),
        ("lamp-2", LAMP2_INPUT, "A boy meets a robot."),
        ("lamp-2-news", NEWS_INPUT, "The senate voted today."),
        ("lamp-3", LAMP3_INPUT, "Works well."),
        ("lamp-4", LAMP4_INPUT, "Something happened."),
        ("lamp-5", LAMP5_INPUT, "We study X."),
        ("lamp-6", LAMP6_INPUT, "Lunch at noon?"),
        ("lamp-7", LAMP7_INPUT, "so tired today"),
    ],
)
def test_query_is_taken_from_the_input(name, text, query):
    assert task(name).query(example(text)) == query


def test_lamp1_query_takes_the_official_quoted_strings_even_with_quotes_in_the_title():
    # The official extract_strings_between_quotes pairs quotes blindly: a title with quotes shifts
    # the query, and the harness reproduces that.
    text = (
        'For an author who has written the paper with the title "On "naive" Bayes", which '
        "reference is related? Just answer with [1] or [2] without explanation. "
        '[1]: "Graph cuts" [2]: "Sparse coding"'
    )
    assert task("lamp-1").query(example(text)) == " Bayes Graph cuts"


def test_lamp1_query_falls_back_to_the_second_and_third_quoted_strings():
    text = 'the title "P", refs "A" or "B"'
    assert task("lamp-1").query(example(text)) == "A B"


def test_query_without_its_marker_is_the_whole_input():
    assert task("lamp-3").query(example("  rate this please  ")) == "rate this please"


def test_query_uses_the_first_colon_for_lamp7():
    assert task("lamp-7").query(example("Paraphrase: a: b ")) == "a: b"


@pytest.mark.parametrize(
    "name, fields, document",
    [
        ("lamp-1", {"title": "T", "abstract": "A b"}, "T A b"),
        ("lamp-2", {"description": "D", "tag": "comedy"}, "D"),
        ("lamp-2-news", {"title": "T", "text": "X", "category": "sports"}, "T X"),
        ("lamp-3", {"text": "Nice", "score": 5}, "Nice"),
        ("lamp-4", {"title": "T", "text": "X"}, "T X"),
        ("lamp-5", {"title": "T", "abstract": "A"}, "T A"),
        ("lamp-6", {"title": "T", "text": "X"}, "X"),
        ("lamp-7", {"text": "tw"}, "tw"),
    ],
)
def test_document_text(name, fields, document):
    assert task(name).document(item(0, **fields)) == document


# -- PPEPs and AIPs (official templates), expected strings written by hand --------------------------------


def test_lamp1_prompt_inserts_the_titles_after_the_word_title():
    items = (item(0, title="Alpha beta", abstract="x y"), item(1, title="Gamma", abstract="z"))
    expected = (
        'For an author who has written the paper with the title, and "Alpha beta", and "Gamma" '
        '"Deep nets", which reference is related? Just answer with [1] or [2] without '
        'explanation. [1]: "Graph cuts" [2]: "Sparse coding"'
    )
    assert task("lamp-1").prompt(example(LAMP1_INPUT), items, WS) == expected


def test_lamp1_prompt_without_the_word_title_is_the_input():
    text = 'Which reference? [1]: "A" [2]: "B"'
    assert task("lamp-1").prompt(example(text), (item(0, title="T", abstract="a"),), WS) == text


def test_lamp2_prompt():
    items = (item(0, description="Robots take over.", tag="sci-fi"), item(1, description="A clown falls.", tag="comedy"))
    expected = (
        'the tag for the movie: "Robots take over." is "sci-fi" , and the tag for the movie: '
        '"A clown falls." is "comedy" . ' + LAMP2_INPUT
    )
    assert task("lamp-2").prompt(example(LAMP2_INPUT), items, WS) == expected


def test_lamp2_news_prompt():
    items = (item(0, title="Vote", text="The house passed a bill.", category="politics"),)
    expected = 'the category for the article: "The house passed a bill." is "politics" . ' + NEWS_INPUT
    assert task("lamp-2-news").prompt(example(NEWS_INPUT), items, WS) == expected


def test_lamp3_prompt():
    items = (item(0, text="Great blender.", score=5), item(1, text="Broke fast.", score="1"))
    expected = '5 is the score for "Great blender." , and 1 is the score for "Broke fast." . ' + LAMP3_INPUT
    assert task("lamp-3").prompt(example(LAMP3_INPUT), items, WS) == expected


def test_lamp4_prompt():
    items = (item(0, title="Storm hits", text="Rain fell all day."),)
    expected = '"Storm hits" is the title for "Rain fell all day." . ' + LAMP4_INPUT
    assert task("lamp-4").prompt(example(LAMP4_INPUT), items, WS) == expected


def test_lamp5_prompt():
    items = (item(0, title="On X", abstract="We look at X."), item(1, title="On Y", abstract="Y."))
    expected = (
        '"On X" is a title for "We look at X." , and "On Y" is a title for "Y." . '
        "Following the given patterns " + LAMP5_INPUT
    )
    assert task("lamp-5").prompt(example(LAMP5_INPUT), items, WS) == expected


def test_lamp6_prompt():
    items = (item(0, title="Re: lunch", text="Noon works."),)
    expected = '"Re: lunch" is the title for "Noon works." . ' + LAMP6_INPUT
    assert task("lamp-6").prompt(example(LAMP6_INPUT), items, WS) == expected


def test_lamp7_prompt():
    items = (item(0, text="tweet one"), item(1, text="tweet two"))
    expected = '"tweet one" , and "tweet two"  are written by a person. Following the given patterns ' + LAMP7_INPUT
    assert task("lamp-7").prompt(example(LAMP7_INPUT), items, WS) == expected


@pytest.mark.parametrize("name", ALL_TASKS)
def test_no_items_gives_the_bare_input(name):
    text = "Some input: with a payload"
    assert task(name).prompt(example(text), (), WS) == text


def test_ppep_free_text_replaces_only_the_free_field():
    t = task("lamp-4")
    assert t.ppep(item(0, title="T", text="long text"), "long") == '"T" is the title for "long" '
    assert task("lamp-1").ppep(item(0, title="Long title", abstract="a"), "Long") == '"Long"'


# -- the official token budget, hand-computed with whitespace tokens --------------------------------


def test_budget_splits_the_share_evenly_and_truncates_only_the_free_text():
    # L=20, input 4 words: budget 20-4=16; reserved 1+2 separators + 9 suffix words = 12;
    # share (16-12)//2 = 2; the fixed part '"" ' is 1 word, so each text keeps 1 word.
    items = (item(0, text="one two three"), item(1, text="four five"))
    got = task("lamp-7").prompt(example("Paraphrase: a b c"), items, WS, max_tokens=20)
    assert got == ('"one" , and "four"  are written by a person. Following the given patterns Paraphrase: a b c')


def test_unused_share_rolls_over_to_the_next_item():
    # L=24: budget 20, share (20-12)//2 = 4; item 1 uses 1 of its 3 words, saving 2 for item 2 (5).
    items = (item(0, text="x"), item(1, text="a b c d e f g"))
    got = task("lamp-7").prompt(example("Paraphrase: a b c"), items, WS, max_tokens=24)
    assert got == ('"x" , and "a b c d e"  are written by a person. Following the given patterns Paraphrase: a b c')


def test_lamp1_budget_truncates_the_title():
    # L=14, input 7 words: budget 14-min(7, 8)=7, minus 2 for the one ", and": share 5, minus 2 for
    # the quotes: 3 title words.
    text = 'the title "P" [1]: "A" [2]: "B"'
    got = task("lamp-1").prompt(
        example(text), (item(0, title="w1 w2 w3 w4 w5 w6", abstract="a"),), WS, max_tokens=14, budget="strict"
    )
    assert got == 'the title, and "w1 w2 w3" "P" [1]: "A" [2]: "B"'
    # Official: no reserve for the first ", and": share 7, minus 2 for the quotes: 5 words.
    official = task("lamp-1").prompt(example(text), (item(0, title="w1 w2 w3 w4 w5 w6", abstract="a"),), WS, max_tokens=14)
    assert official == 'the title, and "w1 w2 w3 w4 w5" "P" [1]: "A" [2]: "B"'


def test_a_failed_budget_lowers_the_input_factor_and_the_prompt_is_cut_to_L():
    # L=20, input 30 words. Factor 0.6: budget 20-12=8, share 7, fixed part 7 words -> allowance 0,
    # fail. Factor 0.5: budget 10, share 9, allowance 2. Then the prompt is cut to 20 words.
    words = [f"i{n}" for n in range(1, 31)]
    items = (item(0, title="T", text="w1 w2 w3 w4"),)
    got = task("lamp-4").prompt(example(" ".join(words)), items, WS, max_tokens=20, budget="strict")
    assert got == '"T" is the title for "w1 w2" . ' + " ".join(words[:12])
    # Official: allowance 0 does not fail (empty text), and the prompt string is not cut.
    official = task("lamp-4").prompt(example(" ".join(words)), items, WS, max_tokens=20)
    assert official == '"T" is the title for "" . ' + " ".join(words)


def test_factor_is_lowered_in_float_steps_down_to_about_zero():
    # With a 2-word title the fixed part is 8 words; only the last official try (factor ~3e-17,
    # int(factor * L) == 0, so the whole L is available) leaves a positive allowance.
    words = [f"i{n}" for n in range(1, 21)]
    items = (item(0, title="T U", text="w1 w2 w3"),)
    got = task("lamp-4").prompt(example(" ".join(words)), items, WS, max_tokens=10, budget="strict")
    assert got == '"T U" is the title for "w1" . i1 i2'


def test_when_no_factor_works_the_bare_input_is_used_and_cut_to_L():
    items = (item(0, title="T", text="w1 w2"),)
    got = task("lamp-4").prompt(example("Generate: a b c d e f"), items, WS, max_tokens=5, budget="strict")
    assert got == "Generate: a b c d"
    # Official: the bare input, uncut (the generator's tokenizer cuts it to L tokens).
    assert task("lamp-4").prompt(example("Generate: a b c d e f"), items, WS, max_tokens=5) == "Generate: a b c d e f"


def test_non_positive_budget_is_a_lamp_error():
    with pytest.raises(LampError, match="budget"):
        task("lamp-7").prompt(example("x"), (), WS, max_tokens=0)


def _huge_text(words: int, seed: int) -> str:
    rng = random.Random(seed)
    vocab = [
        "lorem",
        "ipsum",
        "dolor,",
        "sit",
        "amet.",
        "Schnellbahnverbindung",
        "x",
        "(ok)",
        "naïve",
        "2024-01-01",
        "don't",
        "co-operate",
        "#tag",
        "@user",
        "🙂",
    ]
    return " ".join(rng.choice(vocab) for _ in range(words))


def _huge_item(name: str, position: int, text: str) -> ProfileItem:
    fields = {
        "title": "A modest title",
        "abstract": text,
        "description": text,
        "tag": "comedy",
        "text": text,
        "score": "4",
        "category": "sports",
    }
    return item(position, **{f: fields[f] for f in task(name).profile_fields})


class MemoTokens:
    """The real tokenizer with memoized answers: the huge texts repeat, tokenizing them is slow."""

    def __init__(self, inner):
        self.count = functools.lru_cache(maxsize=None)(inner.count)
        self.truncate = functools.lru_cache(maxsize=None)(inner.truncate)


@pytest.mark.parametrize("name", ALL_TASKS)
def test_budget_holds_with_10000_word_profile_texts_and_a_real_tokenizer(name, minilm_tokens):
    minilm_tokens = MemoTokens(minilm_tokens)
    t = task(name)
    text = _huge_text(10_000, seed=1)
    if name == "lamp-1":  # LaMP-1 truncates titles
        items = tuple(item(i, title=text, abstract="a") for i in range(3))
    else:
        items = tuple(_huge_item(name, i, text) for i in range(3))
    short = example(LAMP1_INPUT if name == "lamp-1" else "Do the task: on this short input")
    for max_tokens in (256, 48):
        for k in (1, 3):
            prompt = t.prompt(short, items[:k], minilm_tokens, max_tokens=max_tokens, budget="strict")
            assert minilm_tokens.count(prompt) <= max_tokens
            if max_tokens == 256:  # the profile was cut, never the short input
                assert prompt.endswith(short.input[-20:])
                assert minilm_tokens.count(prompt) > max_tokens - 12 * k


@pytest.mark.parametrize("name", ALL_TASKS)
def test_budget_holds_with_a_10000_word_input_and_long_fixed_fields(name, minilm_tokens):
    t = task(name)
    text = _huge_text(10_000, seed=2)
    fields = {f: text for f in t.profile_fields}
    prompt = t.prompt(example("Task: " + text), (item(0, **fields),), minilm_tokens, max_tokens=256, budget="strict")
    assert 0 < minilm_tokens.count(prompt) <= 256


# -- parsing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_TASKS)
def test_parse_strips_by_default(name):
    assert task(name).parse("  The answer is [1].\n") == "The answer is [1]."


def test_lenient_parse_is_opt_in_and_finds_labels():
    assert task("lamp-1").parse("The answer is [2].", lenient=True) == "[2]"
    assert task("lamp-2").parse("Dark Comedy, I think", lenient=True) == "dark comedy"
    assert task("lamp-2").parse("no idea", lenient=True) == "no idea"
    assert task("lamp-3").parse("Rating: 4 stars", lenient=True) == "4"
    assert task("lamp-3").parse(" 3.5 ", lenient=True) == "3.5"


# -- gold validation --------------------------------------------------------------------------------


def test_validate_gold():
    assert task("lamp-1").validate_gold("[1]") is None
    assert "not one of the task's labels" in task("lamp-1").validate_gold("1")
    assert task("lamp-2").validate_gold("twist ending") is None
    assert task("lamp-2").validate_gold("Comedy") is not None
    assert task("lamp-2-news").validate_gold("science & technology") is None
    assert task("lamp-3").validate_gold("4") is None
    assert task("lamp-3").validate_gold("four") is not None
    assert task("lamp-3").validate_gold("6") is not None
    assert task("lamp-7").validate_gold("anything at all") is None


# -- scoring ----------------------------------------------------------------------------------------


def test_classification_score_counts_only_exact_labels():
    golds = {"a": "[1]", "b": "[2]", "c": "[1]", "d": "[2]"}
    preds = {"a": " [1] ", "b": "[1]", "c": "[1] because", "d": "[2]"}
    accuracy, f1 = task("lamp-1").score(preds, golds, seed=0)
    assert (accuracy.name, f1.name) == ("accuracy", "f1")
    assert accuracy.value == pytest.approx(0.5)
    assert accuracy.higher_is_better and f1.higher_is_better
    # [1]: tp1 fp1 fn1 -> 1/2; [2]: tp1 fp0 fn1 -> 2/3.
    assert f1.value == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert accuracy.n == f1.n == 4


def test_lamp3_unparsable_outputs_take_the_farther_extreme():
    golds = {"a": "3", "b": "1", "c": "5", "d": "2", "e": "4", "f": "4"}
    preds = {"a": "three", "b": "", "c": "n/a", "d": "?", "e": "nan", "f": "7"}
    # a: 3 -> 5 (err 2); b: 1 -> 5 (4); c: 5 -> 1 (4); d: 2 -> 5 (3); e: 4 -> 1 (3);
    # f: 7 is a number, not clipped (3).
    mae, rmse = task("lamp-3").score(preds, golds)
    assert (mae.name, rmse.name) == ("MAE", "RMSE")
    assert not mae.higher_is_better and not rmse.higher_is_better
    assert mae.value == pytest.approx((2 + 4 + 4 + 3 + 3 + 3) / 6)
    assert rmse.value == pytest.approx(math.sqrt((4 + 16 + 16 + 9 + 9 + 9) / 6))


def test_lamp3_parses_numbers_like_python_float():
    assert task("lamp-3").rating(" 4.5", 1.0) == 4.5
    assert task("lamp-3").rating("3", 3.0) == 3.0
    assert task("lamp-3").rating("3 stars", 3.0) == 5.0


def test_generation_score_is_rouge():
    r1, rl = task("lamp-7").score({"a": " the cat sat "}, {"a": "the cat sat on the mat"})
    assert (r1.name, rl.name) == ("rouge-1", "rouge-L")
    assert r1.value == pytest.approx(2 / 3) and rl.value == pytest.approx(2 / 3)


def test_scoring_uses_ids_present_in_both():
    accuracy, _ = task("lamp-1").score({"a": "[1]", "zzz": "[2]"}, {"a": "[1]", "b": "[2]"})
    assert accuracy.n == 1 and accuracy.value == 1.0


def test_scoring_disjoint_ids_is_a_lamp_error():
    with pytest.raises(LampError, match="no prediction id matches"):
        task("lamp-7").score({"x": "hi"}, {"y": "hi"})
