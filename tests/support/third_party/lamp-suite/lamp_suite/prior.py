import torch

from lamp_harness import GenerationRequest, Personalizer, reject_unknown_args


class CityPrior(Personalizer):
    name = "city-prior"
    needs_retriever = False
    trainable = True

    def __init__(self, context, **args):
        reject_unknown_args(args, (), "personalizer 'city-prior'")

    def setup(self, task, generator, context):
        self.generator, self.labels = generator, tuple(task.labels)
        self.layer = torch.nn.Linear(len(self.labels), len(self.labels))
        torch.nn.init.zeros_(self.layer.weight)
        torch.nn.init.zeros_(self.layer.bias)

    def features(self, task, example):
        text = " ".join(task.document(i) for i in example.profile).lower().split()
        return torch.tensor([float(text.count(label)) for label in self.labels])

    def logits(self, task, examples):
        return self.layer(torch.stack([self.features(task, e) for e in examples]))

    def personalize(self, task, example, retrieved):
        with torch.no_grad():
            probs = torch.softmax(self.logits(task, [example])[0], dim=-1).tolist()
        prompt = task.prompt(example, retrieved, self.generator.tokens, self.generator.max_input_tokens)
        return GenerationRequest(
            example.id,
            prompt,
            choices=task.labels,
            max_new_tokens=task.max_new_tokens,
            metadata={"label_scores": dict(zip(self.labels, probs, strict=True))},
        )

    def parameters(self):
        return list(self.layer.parameters())

    def training_loss(self, task, examples, retrieved):
        targets = torch.tensor([self.labels.index(e.gold) for e in examples])
        return torch.nn.functional.cross_entropy(self.logits(task, examples), targets)

    def state_dict(self):
        return {k: v.detach().cpu().clone() for k, v in self.layer.state_dict().items()}

    def load_state_dict(self, state):
        self.layer.load_state_dict(dict(state))
