"""Source text shared by the toy plugin modules that tests install into a fake site
(``site.add(dist, version, name=SOURCE)``, see :class:`installing.FakeSite`).

Each plugin module stays self-contained (what a third-party author writes: it imports only
``lamp_harness``); a test builds its source by joining these pieces with its own::

    SOURCE = '''
    from lamp_harness.plugin.contracts import Generator
    ''' + WORDS + '''
    class Echo(Generator): ...
    '''
"""

from __future__ import annotations

# A whitespace tokenizer: the ``tokens`` of a model-free toy generator (module level).
WORDS = """
class Words:
    def count(self, text):
        return len(text.split())

    def truncate(self, text, max_tokens):
        return " ".join(text.split()[:max_tokens])
"""

# The methods of a toy task whose profile items are ``{"text": ...}`` (indented for a class body):
# the example's input is the query, an item's text its document and its PPEP.
TEXT_ITEM_METHODS = """
    def query(self, example):
        return example.input

    def document(self, item):
        return item.get("text")

    def ppep(self, item, free_text=None):
        return item.get("text") if free_text is None else free_text
"""
