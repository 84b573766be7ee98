"""The thresholds that decide the findings and the review order's tie-break: a setting of an audit, kept
apart from :mod:`segaudit.findings.rules` (which needs pandas) so that the settings and the CLI load fast."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["FindingRules"]


@dataclass(frozen=True)
class FindingRules:
    """Thresholds of the findings (all recorded in the run's config).

    Parameters
    ----------
    disagreement_iou : float
        A class whose predicted and labelled masks overlap with IoU below this is a disagreement.
    label_quality : float
        A disagreement whose label quality ``Q_c`` is below this is one the model is confident about
        (``Q_c`` is the softmin-pooled probability of the labels over the class's pixels: below 0.5 means the
        worst pixels' labels get less than about even odds).
    right_iou : float
        A prediction with IoU at least this is right (for ``context_reliance``).
    outside_share : float
        Share of the map's top-|G| pixels outside the object above which a right prediction relies on context
        (the map rule, for pairs the causal context test did not run on).
    context_drop : float
        Fall of the class's mean softmax score on its object when the context is replaced (the causal context
        test's ``context_reliance``) from which a right prediction relies on context. 0.25: a quarter of the
        probability mass on the object lost to a neutral context; a model that recognises the object by itself
        loses a few hundredths.
    hallucination : float
        Share of the object's region still predicted as the class once the object is replaced by an imputation
        of its surroundings, from which it is a ``context_hallucination`` (0.5: most of it).
    entanglement_correlation : float
        Correlation of two classes' centred pre-softmax templates from which they are entangled (0.5).
    entanglement_confusion : float
        Symmetric confusion share of two classes' pixels (:func:`segaudit.metrics.entanglement.confusion_shares`)
        from which entangled classes make a ``class_entanglement`` finding (0.02: 2% of their pixels).
    missed_recall : float
        Share of the labelled object the model must predict, below which the object is missed.
    instance_coverage : float
        Share of a class's instances the map must cover, below which instances are neglected.
    min_pixels : int
        Least pixels in disagreement, ``|G xor P|`` for a label error and ``|G - P|`` for a missed object, in
        the model's input frame: stray predictions of a few pixels are not worth a review.
    unknown_pixels : int
        Labelled pixels of a class unknown to the model for an ``out_of_label_space`` finding.
    consistency_weight : float
        Whether CAM consistency breaks exact ties of label quality in the review order: ``0`` = no (ties by
        dataset order), ``> 0`` = yes (the least consistent first). Its value no longer weighs anything:
        the suspicion is label quality alone (issue 16, :mod:`segaudit.findings.rules`); the field and its
        default stay so that stored run configs load. Must be in [0, 1].
    """

    disagreement_iou: float = 0.5
    label_quality: float = 0.5
    right_iou: float = 0.5
    outside_share: float = 0.5
    context_drop: float = 0.25
    hallucination: float = 0.5
    entanglement_correlation: float = 0.5
    entanglement_confusion: float = 0.02
    missed_recall: float = 0.5
    instance_coverage: float = 0.5
    min_pixels: int = 64
    unknown_pixels: int = 1
    consistency_weight: float = 0.25

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
