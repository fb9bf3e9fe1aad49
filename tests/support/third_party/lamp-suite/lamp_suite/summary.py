from collections import Counter

from lamp_harness import GenerationRequest, Personalizer, int_arg, reject_unknown_args


class Summary(Personalizer):
    name = "summary"
    needs_retriever = False
    accepts_retriever = False

    def __init__(self, context, **args):
        reject_unknown_args(args, {"words"}, "personalizer 'summary'")
        self.words = int_arg(args, "words", 5, "personalizer 'summary'", minimum=1)

    def setup(self, task, generator, context):
        self.tokens, self.budget = generator.tokens, generator.max_input_tokens

    def personalize(self, task, example, retrieved):
        counts = Counter(w for item in example.profile for w in task.document(item).lower().split())
        summary = " ".join(w for w, _ in counts.most_common(self.words))
        prompt = task.prompt(example, (), self.tokens, self.budget)
        prompt = self.tokens.truncate(f"user often writes: {summary}. {prompt}", self.budget)
        return GenerationRequest(
            example.id, prompt, choices=task.labels, max_new_tokens=task.max_new_tokens, metadata={"summary": summary}
        )

    def describe(self):
        return {"name": self.name, "words": self.words}
