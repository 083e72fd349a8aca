"""EXA101: a model released without a model card, or with a card that leaves out what it must say.

The rule reads text files next to the model and never the model itself, so it runs before the
load gate, on any model format.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlaudit.core.findings import Family, Finding, Location, Severity
from mlaudit.rules.base import OptionKind, Requirement, Rule, RuleContext, RuleMeta, RuleOption
from mlaudit.scanners.sniff import ModelFormat

CARD_NAMES = ["MODEL_CARD.md", "model_card.md", "MODEL-CARD.md", "model-card.md", "README.md"]
# The questions a reader of any model card asks first (Mitchell et al., "Model Cards for Model
# Reporting"); each entry lists the headings that answer it, Hugging Face's template's included.
REQUIRED_SECTIONS = ["Intended use|Uses", "Limitations", "Training data", "Evaluation"]
# A card is prose: its headings are in the first megabyte, and a larger file is read no further.
MAX_CARD_BYTES = 1 << 20

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~)")
# What card templates leave behind in a section nobody filled in.
_PLACEHOLDERS = re.compile(r"<!--.*?-->|\[More Information Needed\]", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class Section:
    """A Markdown heading and the text under it, its subsections included."""

    heading: str
    body: str

    @property
    def filled(self) -> bool:
        return re.search(r"\w", _PLACEHOLDERS.sub("", self.body)) is not None


def sections(markdown: str) -> list[Section]:
    """The card's ATX headings (``## Limitations``) with their text; fenced code is not
    searched for headings, since a ``#`` there is a comment in an example."""
    lines = markdown.splitlines()
    headings: list[tuple[int, int, str]] = []  # line, level, text
    in_fence = False
    for number, line in enumerate(lines):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (match := _HEADING.match(line)):
            headings.append((number, len(match.group(1)), match.group(2)))
    found = []
    for index, (number, level, text) in enumerate(headings):
        end = next(
            (later for later, later_level, _ in headings[index + 1 :] if later_level <= level),
            len(lines),
        )
        found.append(Section(text, "\n".join(lines[number + 1 : end])))
    return found


def _matches(section: Section, required: str) -> bool:
    heading = " ".join(section.heading.lower().split())
    return any(
        " ".join(alternative.lower().split()) in heading for alternative in required.split("|")
    )


def card_candidates(model: Path, is_folder: bool, names: Sequence[str]) -> list[Path]:
    """Where the card of ``model`` may be, most specific first: inside a model folder, or
    beside a model file, where ``<model name>.md`` (``churn.joblib``, ``churn.md``) leads."""
    if is_folder:
        return [model / name for name in names]
    return [model.with_suffix(".md"), *(model.parent / name for name in names)]


class ModelCardRule(Rule):
    """Model card missing or incomplete.

    **What it checks**: that the model file comes with a model card, and that the card answers
    the questions its reader has. The card is the Markdown file ``<model name>.md`` beside a
    model file, or else the first of ``card_names`` found beside it; in a model folder (a
    Hugging Face or MLflow model), the first of ``card_names`` inside the folder. Each entry of
    ``required_sections`` must be a Markdown heading (``## Limitations``) with text under it;
    a heading matches when it contains the entry, ignoring case, and ``|`` separates headings
    that answer the same question (``Intended use|Uses``). A section holding only a
    template's placeholders (``[More Information Needed]``, HTML comments) is empty.

    **Why it matters**: a model without its card is used for what it was never meant to do:
    on populations it was not trained on, for decisions its evaluation never covered, past
    limitations its authors knew of. Regulators ask for this documentation too (the EU AI
    Act's technical documentation, NIST AI RMF's MAP function). A missing card is medium
    severity, each missing or empty section low.

    **How to fix**: before release, write the card as ``MODEL_CARD.md`` beside the model
    file (or ``README.md`` in a model folder), with a section for each question: what the
    model is for and not for, its known limitations, the data it was trained on, and how and
    on what it was evaluated. Hugging Face's model card template answers all four.

    **Options**: ``card_names``, the file names a card may have, in order of preference
    (default ``MODEL_CARD.md``, ``model_card.md``, ``MODEL-CARD.md``, ``model-card.md``,
    ``README.md``); ``required_sections``, the headings a card must fill in (default
    ``Intended use|Uses``, ``Limitations``, ``Training data``, ``Evaluation``; an empty
    list only checks that a card exists).
    """

    # Family: the card belongs to what makes a model ready to serve (the release checklist);
    # it says nothing about whether the file is safe to load, so it is not an artifact rule.
    meta = RuleMeta(
        id="EXA101",
        name="Model card missing or incomplete",
        family=Family.SERVING,
        severity=Severity.MEDIUM,
        requires=frozenset({Requirement.ARTIFACT}),
        # Declared kinds and bounds: mlaudit refuses a bad value in the configuration (exit 2,
        # naming the option) before any rule runs, so check() reads values it can trust.
        options=(
            RuleOption(
                "card_names", list(CARD_NAMES), "file names of the model card, preferred first",
                kind=OptionKind.STRINGS, min_items=1,
            ),
            RuleOption(
                "required_sections", list(REQUIRED_SECTIONS),
                "headings the card must fill in (a vertical bar separates alternatives)",
                kind=OptionKind.STRINGS,
            ),
        ),
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        model = ctx.subject.model.path
        assert model is not None  # Requirement.ARTIFACT: the engine skips the rule otherwise
        is_folder = ctx.subject.model.format is ModelFormat.MODEL_FOLDER
        candidates = card_candidates(model, is_folder, ctx.option_strs("card_names"))
        # A model file named like its card (model.md) is not its own card.
        card = next((c for c in candidates if c.is_file() and c != model), None)
        if card is None:
            ctx.metrics["card"] = None
            looked_for = [str(c.relative_to(model if is_folder else model.parent))
                          for c in candidates]
            yield ctx.finding(
                key="card",
                title="No model card",
                message=(
                    f"No model card found for {model.name}: looked for {', '.join(looked_for)}"
                    f"{' in' if is_folder else ' beside'} it. Write one before release: what "
                    "the model is for, its limitations, its training data and its evaluation."
                ),
                location=Location(str(model)),
                evidence={"looked_for": [*looked_for]},
            )
            return
        ctx.metrics["card"] = card.name
        with card.open("rb") as stream:
            found = sections(stream.read(MAX_CARD_BYTES).decode("utf-8", errors="replace"))
        required = ctx.option_strs("required_sections")
        ctx.metrics["sections"] = len(found)
        for wanted in required:
            matching = [section for section in found if _matches(section, wanted)]
            if any(section.filled for section in matching):
                continue
            state = "empty" if matching else "missing"
            title = wanted.split("|", 1)[0]
            yield ctx.finding(
                key=f"section:{wanted.lower()}",
                title=f"Model card section {state}: {title}",
                message=(
                    f"{card.name} has no heading for {' or '.join(wanted.split('|'))}"
                    if state == "missing" else
                    f"{card.name}'s section {matching[0].heading!r} holds no text beyond "
                    "template placeholders"
                ) + "; readers of the card cannot tell how the model may be used safely.",
                severity=Severity.LOW,
                location=Location(str(card), pointer=title),
                evidence={"section": wanted, "state": state},
            )
