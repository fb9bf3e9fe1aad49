"""The example plugin's own tests: the lamp-harness conformance kit plus its specific behaviour.

Run them after installing the plugin (``pip install -e .``): ``pytest tests``.
"""

from __future__ import annotations

import pytest
from lamp_plugin_example.overlap import OverlapRetriever

from lamp_harness import LampError, ProfileItem, RankQuery, RunContext
from lamp_harness.testing import PluginHost, check_retriever, sample_rank_queries


@pytest.fixture
def context(tmp_path) -> RunContext:
    return RunContext(lamp_home=tmp_path)


def _query(query: str, documents: list[str]) -> RankQuery:
    items = tuple(ProfileItem(str(i), i, {"text": d}) for i, d in enumerate(documents))
    return RankQuery("q", query, tuple(documents), items)


def test_overlap_passes_the_retriever_conformance_checks(context):
    check_retriever(OverlapRetriever(context))
    check_retriever(OverlapRetriever(context, min_len="4"))


def test_conformance_checks_also_pass_on_custom_queries(context):
    extra = [_query("Café CAFÉ café!", ["café au lait", "tea", "CAFÉ, café"])]
    check_retriever(OverlapRetriever(context), list(sample_rank_queries()) + extra)


def test_items_sharing_more_distinct_words_rank_first(context):
    ranking = OverlapRetriever(context).rank(
        [_query("Rainy Morning coffee", ["sunny afternoon", "rainy rainy day", "coffee on a rainy morning"])]
    )
    assert ranking == [(2, 1, 0)]


def test_ties_keep_profile_order(context):
    ranking = OverlapRetriever(context).rank([_query("x", ["a", "b x", "c", "x d"])])
    assert ranking == [(1, 3, 0, 2)]


def test_min_len_ignores_short_words(context):
    docs = ["the cat and the dog", "a lonely pelican"]
    assert OverlapRetriever(context).rank([_query("the pelican", docs)]) == [(0, 1)]
    assert OverlapRetriever(context, min_len="4").rank([_query("the pelican", docs)]) == [(1, 0)]


def test_bad_arguments_are_one_line_user_errors(context):
    with pytest.raises(LampError, match="min_len='zero' is not an integer"):
        OverlapRetriever(context, min_len="zero")
    with pytest.raises(LampError, match="unknown argument.*stemming"):
        OverlapRetriever(context, stemming="yes")


def test_cache_key_changes_with_the_arguments(context):
    assert OverlapRetriever(context).cache_key() != OverlapRetriever(context, min_len="3").cache_key()


def test_installed_plugin_registers_overlap_through_the_entry_point():
    component = PluginHost().registry.get("retriever", "overlap")
    assert component.distribution == "lamp-plugin-example"
    assert component.load() is OverlapRetriever
