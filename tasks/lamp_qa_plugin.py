"""The LaMP-QA plugin: three judged tasks (one per category) and their data source.

Registered through the ``lamp_harness`` entry-point group like any third-party plugin; factories
are lazy strings, so listing plugins imports nothing heavy.
"""

from __future__ import annotations

from lamp_harness import hookimpl

TASKS = (
    ("lamp-qa-arts", "LampQAArts", "Arts & Entertainment"),
    ("lamp-qa-lifestyle", "LampQALifestyle", "Lifestyle & Personal Development"),
    ("lamp-qa-society", "LampQASociety", "Society & Culture"),
)


@hookimpl
def lamp_register(registry):
    """Register the LaMP-QA tasks and the ``lamp-qa`` data source."""
    for name, cls, category in TASKS:
        registry.add_task(
            name,
            f"lamp_tasks.lamp_qa:{cls}",
            f"LaMP-QA {category}: personalized long-form answers, LLM-judged per rubric "
            "aspect (aspect-score, named after its judge)",
        )
    registry.add_data_source(
        "lamp-qa",
        "lamp_tasks.lamp_qa_data:LampQASource",
        "LaMP-QA from the Hugging Face dataset alireza7/LaMP-QA, cached in $LAMP_HOME/data/lamp-qa "
        "(or --data-dir with the official {Category}_{split}.json files).",
    )
