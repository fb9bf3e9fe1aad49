"""Registers the suite's components."""

from lamp_harness import hookimpl


@hookimpl
def lamp_register(registry):
    registry.add_task("city-guess", "lamp_suite.task:CityGuess", "Guess the user's home city.")
    registry.add_data_source("cities", "lamp_suite.data:Cities", "Generated city data.")
    registry.add_retriever("tfidf", "lamp_suite.tfidf:Tfidf", "TF-IDF cosine. Args: sublinear.")
    registry.add_personalizer("summary", "lamp_suite.summary:Summary", "Most frequent profile words in the prompt.")
    registry.add_personalizer("city-prior", "lamp_suite.prior:CityPrior", "Trainable city prior.")
    registry.add_generator("rules", "lamp_suite.rules:Rules", "Rule-based: the choice named most in the prompt.")
