import math
from collections import Counter

from lamp_harness import Retriever, bool_arg, reject_unknown_args


class Tfidf(Retriever):
    name = "tfidf"

    def __init__(self, context, **args):
        reject_unknown_args(args, {"sublinear"}, "retriever 'tfidf'")
        self.sublinear = bool_arg(args, "sublinear", False, "retriever 'tfidf'")

    def rank(self, queries):
        out = []
        for q in queries:
            docs = [Counter(d.lower().split()) for d in q.documents]
            df = Counter(w for d in docs for w in d)
            n = len(docs)

            qv = self.vector(Counter(q.query.lower().split()), df, n)
            scores = []
            for d in docs:
                dv = self.vector(d, df, n)
                dot = sum(v * dv.get(w, 0.0) for w, v in qv.items())
                norm = math.sqrt(sum(v * v for v in dv.values())) or 1.0
                scores.append(dot / norm)
            out.append(tuple(sorted(range(n), key=lambda i: (-scores[i], i))))
        return out

    def vector(self, counts, df, n):
        return {
            w: (1 + math.log(t) if self.sublinear else t) * math.log((1 + n) / (1 + df[w]) + 1) for w, t in counts.items()
        }

    def cache_key(self):
        return {"name": self.name, "sublinear": self.sublinear, "version": 1}
