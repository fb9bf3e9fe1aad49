"""Hand-written official prompts at small budgets (8-64 tokens), where truncation, factor retries and
zero allowances happen. Each expected string follows the official LaMP code step by step (the
comments give the arithmetic); the same cases were run through the official code itself under its
pinned environment (transformers 4.27.1) and gave these strings."""

from __future__ import annotations

import pytest
from lamp_tasks import lamp

from lamp_harness.base.errors import LampError
from lamp_harness.base.tokens import HFTokenCounter, WhitespaceTokenCounter, clean_up_tokenization
from lamp_harness.plugin.contracts import Example, ProfileItem

WORDS = WhitespaceTokenCounter()  # one token per word, no special tokens


def items(*fields: dict) -> tuple[ProfileItem, ...]:
    return tuple(ProfileItem(str(i), i, f) for i, f in enumerate(fields))


def test_lamp1_titles_go_after_title_with_the_official_separator_reserve():
    # 23 input words; L=48: 48 - min(23, 28) = 25; share = (25 - 2*(2-1)) // 2 = 11;
    # title 1: 11 - 2 = 9 words kept (saved += 11 - 9 - 2 = 0); title 2: 9 allowed, 2 kept.
    example = Example(
        "1",
        'For an author who has written the paper with the title "deep nets", which '
        'reference is related? [1]: "graph cuts" [2]: "neural codes"',
        (),
    )
    profile = items(
        {"title": "one two three four five six seven eight nine ten eleven twelve", "abstract": "x"},
        {"title": "alpha beta", "abstract": "y"},
    )
    assert lamp.LaMP1().prompt(example, profile, WORDS, 48) == (
        'For an author who has written the paper with the title, and "one two three four five six '
        'seven eight nine", and "alpha beta" "deep nets", which reference is related? [1]: '
        '"graph cuts" [2]: "neural codes"'
    )
    assert lamp.LaMP1().query(example) == "graph cuts neural codes"


def test_lamp2_description_cut_to_its_share():
    # 17 input words; L=32: 32 - min(17, 19) = 15; share = (15 - 1) // 1 = 14;
    # fixed 'the tag for the movie: " " is "sci-fi" ' = 9 words -> 5 words of description.
    example = Example(
        "2", "Which tag does this movie relate to among the following tags? description: a boy meets a robot", ()
    )
    profile = items({"description": "space crew travels far from home to find a new planet", "tag": "sci-fi"})
    assert lamp.LaMP2().prompt(example, profile, WORDS, 32) == (
        'the tag for the movie: "space crew travels far from" is "sci-fi" . Which tag does this '
        "movie relate to among the following tags? description: a boy meets a robot"
    )


def test_lamp3_review_cut_to_its_share():
    # 10 input words; L=24: 24 - min(10, 14) = 14; share = 13; fixed '5 is the score for " " ' = 7.
    example = Example("3", "What is the score of this review? review: good product", ())
    profile = items({"text": "i love it so much and will buy again for my kids", "score": "5"})
    assert lamp.LaMP3().prompt(example, profile, WORDS, 24) == (
        '5 is the score for "i love it so much and" . What is the score of this review? review: good product'
    )


def test_lamp4_retries_lower_factors_until_the_allowances_are_not_negative():
    # 9 input words, L=20, k=2, fixed '"big storm" is the title for " " ' = 7 words each.
    # factor 0.6, 0.5: share (20 - 9 - 3) // 2 = 4 -> allowance -3 (raises); 0.4: 20 - 8 -> 4 ->
    # -3; 0.3 (0.30000000000000004 * 20 = 6): share 5 -> -2; 0.2: 4 -> share 6 -> -1;
    # 0.1 (0.10000000000000003 * 20 = 2): share 7 -> allowance 0 for both: empty texts.
    example = Example("4", "Generate a headline for the following article: rain falls", ())
    profile = items(
        {"title": "big storm", "text": "heavy rain hit the city today"},
        {"title": "new law", "text": "the senate passed a bill"},
    )
    assert lamp.LaMP4().prompt(example, profile, WORDS, 20) == (
        '"big storm" is the title for "" , and "new law" is the title for "" . Generate a headline '
        "for the following article: rain falls"
    )


def test_lamp5_counts_its_fixed_part_as_the_official_code_writes_it():
    # 13 input words; L=40: 40 - min(13, 24) = 27; suffix "Following the given patterns" = 4;
    # share = (27 - 1 - 4) // 1 = 22; fixed '"deep nets" is a title " " ' (no "for") = 7 -> 15.
    example = Example("5", "Generate a title for the following abstract of a paper: we study nets", ())
    abstract = " ".join(f"w{i}" for i in range(30))
    profile = items({"title": "deep nets", "abstract": abstract})
    kept = " ".join(f"w{i}" for i in range(15))
    assert lamp.LaMP5().prompt(example, profile, WORDS, 40) == (
        f'"deep nets" is a title for "{kept}" . Following the given patterns Generate a title for '
        "the following abstract of a paper: we study nets"
    )


def test_lamp6_an_allowance_of_zero_keeps_an_empty_text():
    # 9 input words; L=16: 16 - min(9, 9) = 7; share 6; fixed '"hello" is the title for " " ' = 7:
    # -1 raises; factor 0.5: 16 - 8 = 8, share 7, allowance 0: no special tokens, empty text.
    example = Example("6", "Generate a subject for the following email: see you", ())
    profile = items({"title": "hello", "text": "meeting moved to friday at noon"})
    assert lamp.LaMP6().prompt(example, profile, WORDS, 16) == (
        '"hello" is the title for "" . Generate a subject for the following email: see you'
    )


def test_lamp7_reserves_the_official_suffix_and_keeps_the_prompt_uncut():
    # 15 input words; L=32: 32 - min(15, 19) = 17; separators 1 + 2 = 3, suffix "are written by
    # user. Following the given patterns" = 8 -> share (17 - 11) // 2 = 3; fixed '"" ' = 1 -> 2 each.
    example = Example(
        "7", "Paraphrase the following tweet without any explanation before or after it: I love sunny days", ()
    )
    profile = items({"text": "one two three four five six seven eight nine ten"}, {"text": "alpha beta gamma"})
    assert lamp.LaMP7().prompt(example, profile, WORDS, 32) == (
        '"one two" , and "alpha beta"  are written by a person. Following the given patterns '
        "Paraphrase the following tweet without any explanation before or after it: I love sunny days"
    )


def test_lamp7_at_8_tokens_falls_back_to_the_bare_input():
    # L=8: every factor leaves a negative allowance, so the official code returns the input as is
    # (longer than L: the generator's tokenizer cuts it, the prompt string is not cut).
    example = Example(
        "7b", "Paraphrase the following tweet without any explanation before or after it: I love sunny days", ()
    )
    profile = items({"text": "one two three"})
    assert lamp.LaMP7().prompt(example, profile, WORDS, 8) == example.input


def test_lamp2_news_uses_the_category_template():
    # 7 input words; L=24: 24 - min(7, 14) = 17; share 16; fixed
    # 'the category for the article: " " is "sports" ' = 9 -> 7 words.
    example = Example("2n", "Which category does this article: team wins", ())
    profile = items({"title": "t", "text": "the home team won the final game last night by ten", "category": "sports"})
    assert lamp.LaMP2News().prompt(example, profile, WORDS, 24) == (
        'the category for the article: "the home team won the final game" is "sports" . Which '
        "category does this article: team wins"
    )


def test_strict_budget_is_the_opt_in_deviation():
    # Strict: LaMP-7's suffix counted as appended (9 words) and allowances must stay positive;
    # the whole prompt is cut to L.
    example = Example(
        "7", "Paraphrase the following tweet without any explanation before or after it: I love sunny days", ()
    )
    profile = items({"text": "one two three four five six seven eight nine ten"}, {"text": "alpha beta gamma"})
    strict = lamp.LaMP7().prompt(example, profile, WORDS, 32, budget="strict")
    assert strict == (
        '"one" , and "alpha"  are written by a person. Following the given patterns '
        "Paraphrase the following tweet without any explanation before or after it: I love "
        "sunny days"
    )
    assert WORDS.count(strict) <= 32
    with pytest.raises(LampError, match="prompt budget 'loose'"):
        lamp.LaMP7().prompt(example, profile, WORDS, 32, budget="loose")


# -- a real tokenizer that appends </s>: counts include it, and zero allowances ----------------


@pytest.fixture(scope="module")
def t5_tokens(tiny_t5_dir):
    from transformers import AutoTokenizer

    return HFTokenCounter(AutoTokenizer.from_pretrained(str(tiny_t5_dir)))


def test_official_counts_include_the_end_token(t5_tokens):
    assert t5_tokens.added_tokens == 1
    assert t5_tokens.official_count("good day") == t5_tokens.count("good day") + 1 == 3


def test_an_allowance_of_zero_keeps_the_whole_text_with_an_end_token(t5_tokens):
    # Input "paraphrase this tweet : good day" = 6 + </s> = 7 tokens; suffix 9 + 1; fixed '"" ' = 3.
    # L=21: 21 - min(7, 12) = 14; share = 14 - 1 - 10 = 3; allowance 3 - 3 = 0, below the one
    # added token: the official tokenizer call does not truncate at all.
    example = Example("z", "paraphrase this tweet : good day", ())
    profile = items({"text": "i love music and the world"})
    assert lamp.LaMP7().prompt(example, profile, t5_tokens, 21) == (
        '"i love music and the world"  are written by a person. Following the given patterns '
        "paraphrase this tweet : good day"
    )
    # L=22: share 4, allowance 1 = the end token alone: the text is cut to nothing.
    assert lamp.LaMP7().prompt(example, profile, t5_tokens, 22) == (
        '""  are written by a person. Following the given patterns paraphrase this tweet : good day'
    )


def test_decode_clean_up_is_transformers_4_27s():
    assert clean_up_tokenization("level ? DeBarge  .. do n't it 's") == "level? DeBarge .. don't it's"


def test_a_strict_budget_cell_is_recorded_in_its_id_label_and_config(tmp_path):
    from lamp_harness.run.runner import Matrix, Runner

    def spec(budget: str):
        runner = Runner(
            Matrix(
                tasks=("lamp-7",), personalizers=("ipa",), retrievers=("bm25",), data="demo", limit=2, prompt_budget=budget
            ),
            tmp_path / "runs",
            progress=False,
        )
        (draft,) = runner.plan()
        return runner, runner.cell(draft)

    official_runner, official = spec("official")
    strict_runner, strict = spec("strict")
    assert official.cell_id != strict.cell_id
    assert "prompt-budget" not in official.label and strict.label.endswith("/ prompt-budget=strict")
    assert strict_runner.context.prompt_budget == "strict"
