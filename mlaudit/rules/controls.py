"""The control catalogue: which framework requirements a rule provides evidence for.

An auditor asks "what did you do for OWASP ML06, NIST MEASURE 2.10, EU AI Act Art. 15(5), the
DPIA?". Each rule names the controls its result is evidence for (``RuleMeta.controls``); the
report lists them per result and counts them per control, and the rule pages show them.

Ids are short and stable: they are stored in archived reports and queried years later, so an
id is never renamed or reused; a wrong mapping is fixed by changing the rules that cite it.
Titles are the frameworks' own wording, shortened.

Frameworks:
- OWASP Machine Learning Security Top 10 (2023): the threat a rule tests for.
- OWASP API Security Top 10 (2023): the weakness of the API a model is served behind.
- NIST AI RMF 1.0, MEASURE 2.x: the trustworthiness characteristic a rule measures; MANAGE 2.x:
  the mechanism a deployed system needs that a rule checks for.
- EU AI Act (Regulation (EU) 2024/1689) Article 15, by paragraph: 15(1) accuracy, robustness
  and cybersecurity performed consistently throughout the lifecycle, 15(4) resilience to errors
  and inconsistencies, 15(5) resilience to attacks (the paragraph that names data and model
  poisoning, adversarial examples and confidentiality attacks).
- GDPR Article 35: the data-protection impact assessment a privacy result feeds.

The groups below are the mappings shared by whole families of rules, so that the reason for
a mapping is written once, here, and a rule module names the group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

OWASP = "OWASP Machine Learning Security Top 10 (2023)"
OWASP_API = "OWASP API Security Top 10 (2023)"
NIST = "NIST AI Risk Management Framework 1.0"
EU_AI_ACT = "EU AI Act, Regulation (EU) 2024/1689"
GDPR = "GDPR, Regulation (EU) 2016/679"


@dataclass(frozen=True)
class Control:
    id: str
    framework: str
    title: str
    url: str


_OWASP_DOCS = "https://owasp.org/www-project-machine-learning-security-top-10/docs/"
_OWASP_API_DOCS = "https://owasp.org/API-Security/editions/2023/en/"


def _owasp_api(number: int, title: str) -> Control:
    slug = title.lower().replace(" ", "-")
    return Control(
        f"OWASP-API{number}", OWASP_API, f"API{number}:2023 {title}",
        f"{_OWASP_API_DOCS}0xa{number}-{slug}/",
    )


def _owasp(number: int, title: str) -> Control:
    return Control(
        f"OWASP-ML{number:02d}",
        OWASP,
        f"ML{number:02d} {title}",
        f"{_OWASP_DOCS}ML{number:02d}_2023-{title.replace(' ', '_')}",
    )


_CATALOGUE: tuple[Control, ...] = (
    _owasp(1, "Input Manipulation Attack"),
    _owasp(2, "Data Poisoning Attack"),
    _owasp(3, "Model Inversion Attack"),
    _owasp(4, "Membership Inference Attack"),
    _owasp(5, "Model Theft"),
    _owasp(6, "AI Supply Chain Attacks"),
    _owasp(7, "Transfer Learning Attack"),
    _owasp(8, "Model Skewing"),
    _owasp(9, "Output Integrity Attack"),
    _owasp(10, "Model Poisoning"),
    _owasp_api(2, "Broken Authentication"),
    _owasp_api(4, "Unrestricted Resource Consumption"),
    _owasp_api(8, "Security Misconfiguration"),
    Control("NIST-AI-RMF-MEASURE-2.3", NIST,
            "MEASURE 2.3: AI system performance is measured and demonstrated for conditions "
            "similar to the deployment setting",
            "https://airc.nist.gov/airmf-resources/airmf/5-sec-core/"),
    Control("NIST-AI-RMF-MEASURE-2.4", NIST,
            "MEASURE 2.4: the functionality and behavior of the AI system and its components "
            "are monitored when in production",
            "https://airc.nist.gov/airmf-resources/airmf/5-sec-core/"),
    Control("NIST-AI-RMF-MEASURE-2.5", NIST,
            "MEASURE 2.5: the AI system to be deployed is demonstrated to be valid and reliable",
            "https://airc.nist.gov/airmf-resources/airmf/5-sec-core/"),
    Control("NIST-AI-RMF-MEASURE-2.7", NIST,
            "MEASURE 2.7: AI system security and resilience are evaluated and documented",
            "https://airc.nist.gov/airmf-resources/airmf/5-sec-core/"),
    Control("NIST-AI-RMF-MEASURE-2.10", NIST,
            "MEASURE 2.10: privacy risk of the AI system is examined and documented",
            "https://airc.nist.gov/airmf-resources/airmf/5-sec-core/"),
    Control("NIST-AI-RMF-MANAGE-2.2", NIST,
            "MANAGE 2.2: mechanisms are in place and applied to sustain the value of deployed "
            "AI systems",
            "https://airc.nist.gov/airmf-resources/airmf/5-sec-core/"),
    Control("EU-AI-ACT-15.1", EU_AI_ACT,
            "Article 15(1): an appropriate level of accuracy, robustness and cybersecurity, "
            "performed consistently throughout the lifecycle",
            "https://eur-lex.europa.eu/eli/reg/2024/1689/oj#art_15"),
    Control("EU-AI-ACT-15.3", EU_AI_ACT,
            "Article 15(3): the levels of accuracy and the relevant accuracy metrics are "
            "declared in the instructions for use",
            "https://eur-lex.europa.eu/eli/reg/2024/1689/oj#art_15"),
    Control("EU-AI-ACT-15.4", EU_AI_ACT,
            "Article 15(4): resilience to errors, faults and inconsistencies",
            "https://eur-lex.europa.eu/eli/reg/2024/1689/oj#art_15"),
    Control("EU-AI-ACT-15.5", EU_AI_ACT,
            "Article 15(5): resilience to attempts to alter use, outputs or performance "
            "(poisoning, adversarial examples, confidentiality attacks, model flaws)",
            "https://eur-lex.europa.eu/eli/reg/2024/1689/oj#art_15"),
    Control("GDPR-35", GDPR,
            "Article 35: data protection impact assessment (risks to data subjects)",
            "https://eur-lex.europa.eu/eli/reg/2016/679/oj#art_35"),
)
CATALOGUE: Mapping[str, Control] = {control.id: control for control in _CATALOGUE}

# A model file that runs code when loaded, or a dependency or code path that lets someone
# else's code in, is a supply-chain attack (ML06), a security failure (MEASURE 2.7) and a
# cybersecurity gap under Art. 15(5).
SUPPLY_CHAIN = ("OWASP-ML06", "NIST-AI-RMF-MEASURE-2.7", "EU-AI-ACT-15.5")
# Weaknesses in the training and serving code itself (bandit's findings): a security failure
# and a cybersecurity gap, though not an attack on the model's supply chain.
CODE_SECURITY = ("NIST-AI-RMF-MEASURE-2.7", "EU-AI-ACT-15.5")
# Adversarial examples: input manipulation (ML01); Art. 15(5) names "adversarial examples or
# model evasion" among the attacks a high-risk system must resist.
EVASION = ("OWASP-ML01", "NIST-AI-RMF-MEASURE-2.7", "EU-AI-ACT-15.5")
# Random, non-adversarial perturbation and data that does not fit the model are reliability
# questions (MEASURE 2.5, Art. 15(4) "errors, faults or inconsistencies"), not attacks.
RELIABILITY = ("NIST-AI-RMF-MEASURE-2.5", "EU-AI-ACT-15.4")
# Data quality: the accuracy Art. 15(1) asks for holds only on data like the training data,
# and errors in the data are the "errors, faults or inconsistencies" of 15(4); validating data
# against the training data is the first defence OWASP lists against data poisoning (ML02).
DATA_CONTROLS = ("OWASP-ML02", "NIST-AI-RMF-MEASURE-2.5", "EU-AI-ACT-15.1", "EU-AI-ACT-15.4")
# Drift: monitoring in production (MEASURE 2.4), accuracy kept "consistently throughout the
# lifecycle" (15(1)), and the skewed data distribution OWASP ML08 (model skewing) detects.
DRIFT_CONTROLS = ("OWASP-ML08", "NIST-AI-RMF-MEASURE-2.4", "EU-AI-ACT-15.1")
# Leakage (a target proxy among the features, holdout rows seen in training, a non-random
# split): the measured accuracy is not the accuracy under deployment conditions (MEASURE 2.3,
# 2.5), so the level Art. 15(1) asks for is not shown and the one 15(3) declares is wrong. No
# OWASP ML item fits: they are attacks, and leakage is a flaw of the evaluation itself.
EVALUATION = (
    "NIST-AI-RMF-MEASURE-2.3", "NIST-AI-RMF-MEASURE-2.5", "EU-AI-ACT-15.1", "EU-AI-ACT-15.3"
)
# Membership inference reveals who was in the training data: ML04, a privacy risk (MEASURE
# 2.10), a confidentiality attack (Art. 15(5)) and a risk to data subjects a DPIA must weigh.
MEMBERSHIP = ("OWASP-ML04", "NIST-AI-RMF-MEASURE-2.10", "EU-AI-ACT-15.5", "GDPR-35")
# Attribute inference reconstructs what the model learnt about a person: model inversion.
INVERSION = ("OWASP-ML03", "NIST-AI-RMF-MEASURE-2.10", "EU-AI-ACT-15.5", "GDPR-35")
# Personal data in the data, the file or the outputs: what a DPIA inventories.
PERSONAL_DATA = ("NIST-AI-RMF-MEASURE-2.10", "GDPR-35")
# What the model costs to serve (latency, throughput, memory, load time): the evidence a
# deployment needs to sustain the system (MANAGE 2.2) and to perform consistently (Art. 15(1)),
# and the per-request cost its resource limits are set from (API4).
SERVING_CAPACITY = ("NIST-AI-RMF-MANAGE-2.2", "EU-AI-ACT-15.1", "OWASP-API4")
# A model endpoint without authentication, in debug mode, in clear text or with unbounded
# requests: broken authentication, misconfiguration and resource exhaustion of the API; an open
# prediction endpoint is also how a model is extracted (ML05); a cybersecurity gap (15(5)).
SERVING_EXPOSURE = (
    "OWASP-ML05", "OWASP-API2", "OWASP-API4", "OWASP-API8", "NIST-AI-RMF-MEASURE-2.7",
    "EU-AI-ACT-15.5",
)


def control(control_id: str) -> Control | None:
    """The catalogue entry; None for an id a third-party rule brings that we do not know."""
    return CATALOGUE.get(control_id)


def catalogue_order(control_ids: set[str]) -> list[str]:
    """Known ids in catalogue order, then unknown ones sorted: a stable order for the report."""
    known = [c.id for c in _CATALOGUE if c.id in control_ids]
    return known + sorted(control_ids - set(known))
