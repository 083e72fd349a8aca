"""Privacy attacks on a loaded model: membership inference, attribute inference, empirical DP.

Modules by concern:

* ``evaluation``: the member / non-member data an attack is measured on (balanced, seeded,
  checked for overlap and schema differences).
* ``roc``: AUC and TPR at low FPR with confidence intervals, and the ROC curve for the report.
* ``outputs`` and ``attacks``: the audited model's outputs, and the attacks that need no
  reference models (threshold and label-only attacks, ART's trained black-box attack).
* ``reference``: reference models refitted with the audited model's hyperparameters, and the
  LiRA and RMIA scores computed from them.
* ``epsilon``: the empirical differential-privacy lower bound.
* ``attribute``: attribute inference against a baseline (ART).
* ``art_bridge``: how ART sees a model that mlaudit queries (and counts).
* ``gating``: thresholds that turn the statistics into findings.
"""
