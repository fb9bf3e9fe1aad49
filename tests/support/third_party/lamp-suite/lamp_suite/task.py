from lamp_harness import Task, metrics

CITIES = ("paris", "rome", "oslo")


class CityGuess(Task):
    name = "city-guess"
    official_name = "City_Guess"
    kind = "classification"
    labels = CITIES
    profile_fields = ("text",)
    max_new_tokens = 3
    data_source = "cities"

    def query(self, example):
        return example.input.split(":", 1)[-1].strip()

    def document(self, item):
        return item.get("text")

    def ppep(self, item, free_text=None):
        return f"post: {item.get('text') if free_text is None else free_text}"

    def prompt(self, example, items, tokens, max_tokens=256):
        text = " | ".join([*(self.ppep(i) for i in items), example.input])
        return tokens.truncate(text, max_tokens) if tokens.count(text) > max_tokens else text

    def score(self, predictions, golds, *, seed=0):
        ids = sorted(set(predictions) & set(golds))
        p = [predictions[i].strip() for i in ids]
        g = [golds[i].strip() for i in ids]
        return [metrics.accuracy(p, g, seed=seed), metrics.macro_f1(p, g, self.labels, seed=seed)]
