"""Built-in task plugin: the LaMP tasks, and the LongLaMP and PersonaMem tasks (registered lazily;
nothing heavy is imported here)."""

from __future__ import annotations

from lamp_harness import hookimpl

TASKS = (
    ("lamp-1", "LaMP1", "LaMP-1 citation identification, [1] or [2] (accuracy, macro-F1)"),
    ("lamp-2", "LaMP2", "LaMP-2 movie tagging, 15 tags (accuracy, macro-F1)"),
    ("lamp-2-news", "LaMP2News", "superseded LaMP-2 news categorization, 15 categories (accuracy, macro-F1)"),
    ("lamp-3", "LaMP3", "LaMP-3 product rating, 1-5 (MAE, RMSE; lower is better)"),
    ("lamp-4", "LaMP4", "LaMP-4 news headline generation (ROUGE-1/L)"),
    ("lamp-5", "LaMP5", "LaMP-5 scholarly title generation (ROUGE-1/L)"),
    ("lamp-6", "LaMP6", "LaMP-6 email subject generation, local Avocado files (ROUGE-1/L)"),
    ("lamp-7", "LaMP7", "LaMP-7 tweet paraphrasing (ROUGE-1/L)"),
)
LONG_TASKS = (
    (
        "longlamp-abstract",
        "longlamp:LongLaMPAbstract",
        "LongLaMP abstract generation, long-form (ROUGE-1/L, METEOR); hub data, --scheme user|time",
    ),
    (
        "longlamp-review",
        "longlamp:LongLaMPReview",
        "LongLaMP product review writing, long-form (ROUGE-1/L, METEOR); hub data, --scheme user|time",
    ),
    (
        "longlamp-topic",
        "longlamp:LongLaMPTopic",
        "LongLaMP topic writing (Reddit posts), long-form (ROUGE-1/L, METEOR); hub data, --scheme user|time",
    ),
    (
        "personamem-32k",
        "personamem:PersonaMem32k",
        "PersonaMem multiple choice over a 32k-token conversation history (accuracy, per question type)",
    ),
    (
        "personamem-128k",
        "personamem:PersonaMem128k",
        "PersonaMem multiple choice over a 128k-token conversation history (accuracy, per question type)",
    ),
)


@hookimpl
def lamp_register(registry):
    """Register the LaMP tasks."""
    for name, cls, summary in TASKS:
        registry.add_task(name, f"lamp_tasks.lamp:{cls}", summary)
    for name, target, summary in LONG_TASKS:
        registry.add_task(name, f"lamp_tasks.{target}", summary)
