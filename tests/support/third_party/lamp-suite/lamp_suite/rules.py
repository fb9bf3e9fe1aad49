from lamp_harness import Generation, Generator, lamp_error, reject_unknown_args


class Words:
    def count(self, text):
        return len(text.split())

    def truncate(self, text, max_tokens):
        return " ".join(text.split()[: max(0, max_tokens)])


class Rules(Generator):
    name = "rules"

    def __init__(self, context, batch_size="16", **args):
        reject_unknown_args(args, (), "generator 'rules'")
        self.batch_size = int(batch_size)

    @property
    def tokens(self):
        return Words()

    def generate(self, requests, *, decode="generate"):
        if any(r.is_fusion for r in requests):
            raise lamp_error("generator 'rules' cannot fuse passages", fix="Use another personalizer.")
        out = []
        for r in requests:
            scores = r.metadata.get("label_scores")
            if scores:
                text = max(scores, key=scores.get)
            elif r.choices:
                words = r.prompt.lower().split()
                text = max(r.choices, key=lambda c: (words.count(c), -r.choices.index(c)))
            else:
                text = " ".join(r.prompt.split()[-3:])
            out.append(Generation(text, len(r.prompt.split()), 1))
        return out
