"""The synthetic dataset's classes, background kinds and the planted context cue.

The context cue: when an image contains a :data:`CONTEXT_CLASS` (``boat``) its background is
:data:`CONTEXT_BACKGROUND` (``water``) with probability :data:`P_CONTEXT` (0.9); otherwise the background
kind is uniform over :data:`BACKGROUND_KINDS`. A model can learn "water means boat", which is what an
activation-map audit should reveal.
"""

from __future__ import annotations

__all__ = ["CLASS_NAMES", "CONTEXT_CLASS", "CONTEXT_BACKGROUND", "BACKGROUND_KINDS", "P_CONTEXT"]

#: Category names; a category's index in this tuple is its VOC label value and its COCO category id.
CLASS_NAMES: tuple[str, ...] = ("background", "disc", "square", "triangle", "star", "boat")
#: The class that is (spuriously) correlated with a background kind.
CONTEXT_CLASS = "boat"
#: The background kind that :data:`CONTEXT_CLASS` appears on most of the time.
CONTEXT_BACKGROUND = "water"
#: The background texture kinds.
BACKGROUND_KINDS: tuple[str, ...] = ("water", "grass", "sand", "stripes", "checker")
#: P(background == CONTEXT_BACKGROUND | the image has a CONTEXT_CLASS object).
P_CONTEXT = 0.9
