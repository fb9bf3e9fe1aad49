from lamp_suite import log
from lamp_suite.data import Cities
from lamp_suite.prior import CityPrior
from lamp_suite.rules import Rules
from lamp_suite.summary import Summary
from lamp_suite.task import CityGuess
from lamp_suite.tfidf import Tfidf

from lamp_harness import RunContext
from lamp_harness.testing import (
    check_data_source,
    check_generator,
    check_personalizer,
    check_reporter,
    check_retriever,
    check_task,
    check_trainable_personalizer,
)


def test_all(tmp_path):
    ctx = RunContext(lamp_home=tmp_path)
    check_task(CityGuess())
    check_data_source(Cities(ctx), CityGuess(), splits=("train", "dev"))
    check_retriever(Tfidf(ctx))
    check_retriever(Tfidf(ctx, sublinear="true"))
    check_personalizer(Summary(ctx), CityGuess())
    check_trainable_personalizer(CityPrior(ctx), CityGuess())
    check_generator(Rules(ctx))
    check_reporter(log)
