"""The personal-data engine: presidio's analyzer on a pipeline that needs no download.

Out of the box presidio loads a spaCy model (downloading it when missing) and its e-mail
recognizer fetches the public-suffix list, so it fails offline. The default engine here is:

* a blank spaCy ``en`` pipeline (the tokenizer only; it ships inside spaCy), with each
  token's lower-case form as its lemma so presidio's context words still work;
* presidio's pattern and checksum recognizers (e-mail with an offline suffix check, phone,
  payment card, IBAN, IP, US SSN and passport, UK NHS and NINO, dates);
* a person-name recognizer on name lists shipped with mlaudit.

With ``nlp_model`` naming an installed spaCy model (``en_core_web_lg``), that model's
pipeline runs instead, and its named-entity recognizer adds person names. A model that is
not installed is an error, never a download.
"""

from __future__ import annotations

import bisect
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Final

from mlaudit.pii.entities import (
    DATE_OF_BIRTH,
    DATE_TIME,
    PERSON,
    TextShape,
    entity,
)
from mlaudit.pii.hints import ColumnHint

if TYPE_CHECKING:
    # presidio is imported when an engine is built, so that this module (and the rules
    # importing it) load without the pii extra installed.
    from mlaudit.pii.recognizers import NameRecognizer

BLANK: Final = "blank"
LANGUAGE: Final = "en"
# presidio's LemmaContextAwareEnhancer default: a context word adds this to a score.
CONTEXT_BOOST: Final = 0.35

class EngineUnavailable(Exception):
    """The requested spaCy model is not installed (mlaudit never downloads one)."""


@dataclass(frozen=True)
class Detection:
    """One entity found in one text: its type, where, and presidio's score."""

    entity: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class PiiEngine:
    """A configured presidio analyzer; build it with :func:`get_engine`."""

    nlp_model: str
    description: str
    analyzer: Any
    names: NameRecognizer
    has_ner: bool
    context_words: Mapping[str, tuple[str, ...]]

    def candidates(
        self, text: str, wanted: frozenset[str], hint: ColumnHint, min_score: float
    ) -> frozenset[str]:
        """The wanted entities ``text`` could hold: only their recognizers will run on it.

        Without an NER model, names come from :class:`NameRecognizer` alone, so it is asked
        directly whether its best score, with the context boost a name column adds, can
        reach ``min_score``.
        """
        shape = TextShape.of(text)
        found = {
            name for name in wanted
            if entity(name).could_hold(shape) and self._may_reach(name, text, hint, min_score)
        }
        if DATE_OF_BIRTH in found and not hint.birth_date:
            found.discard(DATE_OF_BIRTH)
        if PERSON in found and not self.has_ner:
            boost = CONTEXT_BOOST if hint.person else 0.0
            if self.names.best_score(text) + boost < min_score:
                found.discard(PERSON)
        return frozenset(found)

    def _may_reach(self, name: str, text: str, hint: ColumnHint, min_score: float) -> bool:
        """Whether a match could score ``min_score``: with a context word if it needs one.

        presidio matches a context word as a substring of the words before a match or of the
        context passed in, so one absent from the whole lower-cased text and from the
        column's context cannot help.
        """
        ceiling = entity(name).ceiling
        if ceiling >= min_score:
            return True
        if ceiling + CONTEXT_BOOST < min_score:
            return False
        words = self.context_words.get(name, ())
        lowered = text.lower()
        return any(w in lowered or any(w in c for c in hint.context) for w in words)

    def analyse(
        self,
        text: str,
        entities: frozenset[str],
        hint: ColumnHint,
        min_score: float,
    ) -> list[Detection]:
        """Entities in ``text`` scoring at least ``min_score``, after context enhancement."""
        if not entities:
            return []
        asked = sorted(DATE_TIME if name == DATE_OF_BIRTH else name for name in entities)
        results = self.analyzer.analyze(
            text=text,
            language=LANGUAGE,
            entities=asked,
            context=list(hint.context) or None,
            score_threshold=min_score,
        )
        found = [
            Detection(
                DATE_OF_BIRTH if r.entity_type == DATE_TIME else r.entity_type,
                r.start,
                r.end,
                round(float(r.score), 4),
            )
            for r in results
            if r.entity_type != DATE_TIME or hint.birth_date
        ]
        return _without_overlaps(found, hint.expects)


def _without_overlaps(found: list[Detection], expected: frozenset[str]) -> list[Detection]:
    """One entity per stretch of text: presidio reports every type that matches a span (a
    phone number that also passes the NHS checksum, a name inside an e-mail address). The
    type the column's name expects wins, then the higher score, then the longer span."""
    ranked = sorted(
        found, key=lambda d: (d.entity in expected, d.score, d.end - d.start), reverse=True
    )
    kept: list[Detection] = []
    for detection in ranked:
        if all(detection.end <= k.start or detection.start >= k.end for k in kept):
            kept.append(detection)
    return sorted(kept, key=lambda d: (d.start, d.end))


def check_nlp_model(nlp_model: str | None) -> None:
    """Raise :class:`EngineUnavailable` unless ``nlp_model`` is blank or installed.

    For the CLI to call on ``--nlp-model`` before anything runs (exit 2 on a missing model).
    """
    if nlp_model in (None, BLANK):
        return
    import spacy

    if not spacy.util.is_package(nlp_model):
        raise EngineUnavailable(
            f"spaCy model {nlp_model!r} is not installed; mlaudit never downloads one. "
            f"Install it (pip install {nlp_model}), or leave --nlp-model out for the "
            "offline engine"
        )


def get_engine(nlp_model: str | None = None) -> PiiEngine:
    """The engine for ``nlp_model`` (None or ``"blank"``: offline), built once per process."""
    return _build_engine(nlp_model or BLANK)


@functools.cache  # keyed on the resolved name, so None and "blank" share one engine
def _build_engine(name: str) -> PiiEngine:
    check_nlp_model(name)
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry

    from mlaudit.pii.recognizers import NameRecognizer, pattern_recognizers

    recognizers = [*pattern_recognizers(), NameRecognizer()]
    if name == BLANK:
        nlp_engine = _blank_engine(spacy.blank(LANGUAGE))
        pipeline = f"a blank spaCy {metadata.version('spacy')} '{LANGUAGE}' pipeline (offline)"
        has_ner = False
    else:
        nlp_engine = _blank_engine(spacy.load(name))
        pipeline = f"spaCy model {name} {metadata.version(name)}"
        has_ner = "ner" in nlp_engine.nlp[LANGUAGE].pipe_names
        if has_ner:
            from presidio_analyzer.predefined_recognizers import SpacyRecognizer

            recognizers.append(SpacyRecognizer(supported_entities=[PERSON]))
    registry = RecognizerRegistry(supported_languages=[LANGUAGE])
    for recognizer in recognizers:
        registry.add_recognizer(recognizer)
    analyzer = AnalyzerEngine(
        nlp_engine=nlp_engine,
        registry=registry,
        supported_languages=[LANGUAGE],
        context_aware_enhancer=_indexed_enhancer(),
    )
    names = next(r for r in recognizers if isinstance(r, NameRecognizer))
    context_words: dict[str, tuple[str, ...]] = {}
    for recognizer in recognizers:
        for supported in recognizer.supported_entities:
            words = tuple(word.lower() for word in recognizer.context or ())
            context_words[supported] = context_words.get(supported, ()) + words
    description = (
        f"presidio-analyzer {metadata.version('presidio-analyzer')} on {pipeline}, "
        f"{len(recognizers)} recognizers"
    )
    return PiiEngine(name, description, analyzer, names, has_ner, context_words)


def _blank_engine(pipeline: Any) -> Any:
    """presidio's spaCy engine around an already loaded pipeline (so it never downloads)."""
    from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine

    class _LoadedSpacyEngine(SpacyNlpEngine):
        def load(self) -> None:
            self.nlp = {LANGUAGE: pipeline}  # type: ignore[assignment]  # presidio: None

        def _doc_to_nlp_artifact(self, doc: Any, language: str) -> NlpArtifacts:
            artifacts = super()._doc_to_nlp_artifact(doc, language)
            # A blank pipeline has no lemmatizer; the lower-case form is what presidio's
            # context words are written in.
            artifacts.lemmas = [lemma or token.lower_ for lemma, token in zip(
                artifacts.lemmas, doc, strict=True)]
            # presidio only tests membership in the keywords, once per word per match: a set
            # keeps that constant-time on long texts.
            artifacts.keywords = set(  # type: ignore[assignment]
                artifacts.set_keywords(self, artifacts.lemmas, language)
            )
            return artifacts

    configuration = NerModelConfiguration(labels_to_ignore=_ignored_ner_labels())
    engine = _LoadedSpacyEngine(
        models=[{"lang_code": LANGUAGE, "model_name": BLANK}],
        ner_model_configuration=configuration,
    )
    engine.load()
    # presidio logs at INFO and DEBUG, some of it about the text it reads; mlaudit's own
    # output never carries analysed text, so presidio is held to warnings.
    logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)
    return engine


def _indexed_enhancer() -> Any:
    """presidio's lemma context enhancer, with its token look-up made logarithmic.

    presidio finds the token of each match by walking the document's tokens from the start:
    linear per match, quadratic on a text with many matches (a batch of values). Here the
    token ends are computed once per document and searched by bisection: the same token
    (the first one ending after the match's start), in logarithmic time.
    """
    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
    from spacy.attrs import IDX, LENGTH  # type: ignore[import-not-found]

    class _IndexedEnhancer(LemmaContextAwareEnhancer):
        def __init__(self) -> None:
            super().__init__()
            # (document, its token ends), replaced in one assignment and read into a local:
            # threads sharing the engine (a Dask worker's, joblib's threading backend) each
            # use a consistent pair, at worst recomputing it.
            self._indexed: tuple[Any, list[int]] = (None, [])

        def _find_index_of_match_token(  # type: ignore[override]
            self, word: str, start: int, tokens: Any, tokens_indices: list[int]
        ) -> int:
            document, ends = self._indexed
            if document is not tokens:
                columns = tokens.to_array([IDX, LENGTH])
                ends = (columns[:, 0] + columns[:, 1]).tolist()
                self._indexed = (tokens, ends)
            index = bisect.bisect_right(ends, start)
            if index >= len(ends):
                # presidio's message would quote the matched text.
                raise ValueError("a match starts after the last token")
            return index

    return _IndexedEnhancer()


def _ignored_ner_labels() -> list[str]:
    """Every spaCy NER label but PERSON: places and organisations are not reported."""
    return ["ORG", "ORGANIZATION", "GPE", "LOC", "LOCATION", "NORP", "NRP", "FAC", "DATE",
            "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL", "CARDINAL", "EVENT",
            "WORK_OF_ART", "LAW", "LANGUAGE", "PRODUCT", "MISC"]

