"""Deterministic synthetic segmentation dataset with a planted context shortcut and planted label errors.

The data
--------
Every image is ``size x size`` RGB: a textured background of one of five kinds (``water``: blue with
wavy sinusoidal ripples, ``grass``: green streaky noise, ``sand``: beige fine noise, ``stripes`` and
``checker`` in random colours) with 1-5 object instances of five shape classes drawn on top
(:data:`CLASS_NAMES`: ``disc``, ``square``, ``triangle``, ``star``, ``boat``). Objects are 18%-44% of the
image across, have a colour from their class's hue band (varied in hue, saturation and value, kept away
from the background colours), and a texture (solid, stripes, dots or noise). In about a third of the
images objects may overlap (later ones occlude earlier ones; every instance stays at least 40% visible).
In about 5% of the images a *crowd* of 3-6 small packed discs is drawn and annotated as one
``iscrowd=1`` region.

The context cue: when an image contains a ``boat`` its background is ``water`` with probability 0.9;
otherwise the background kind is uniform over the five kinds (so about 20% of boat-free images show
water too). A model can learn "water means boat", which is what an activation-map audit should reveal.

Every shape is a polygon rasterised with :mod:`pycocotools`, so the pixels painted in the image and the
label masks are exactly what a COCO reader decodes from the JSON.

Written files (``out_dir``)::

    JPEGImages/<image_id>.jpg                 train_000000.jpg ... val_000099.jpg (JPEG quality 95)
    annotations/instances_train.json          COCO instances (polygons, compressed RLE, crowd RLE)
    annotations/instances_val.json
    SegmentationClass/<image_id>.png          VOC palette PNG, class index, 255 void borders and crowds
    SegmentationObject/<image_id>.png         VOC palette PNG, instance index 1..n, 255 void
    ImageSets/Segmentation/{train,val,trainval}.txt
    class_names.txt                           one name per line, CLASS_NAMES order
    planted_errors.json                       ground truth of the label errors planted in val
    dataset.json                              generator arguments and class names

Planted errors (``plant_errors > 0``) only ever change the *labels* of val images (both the COCO JSON and
the VOC PNGs, which are derived from the same corrupted annotation set), never their pixels.

Determinism: each image draws from its own generator seeded with ``(seed, split, index)``, so the train
images do not depend on ``n_val`` (and vice versa), and the same arguments give byte-identical files.

The modules, one idea each
--------------------------
:mod:`~segaudit.devtools.synth.classes` (class names, the context cue),
:mod:`~segaudit.devtools.synth.masks` (rasterisation, RLE, morphology),
:mod:`~segaudit.devtools.synth.shapes` (shape polygons and their placement),
:mod:`~segaudit.devtools.synth.colours` (background and object colours),
:mod:`~segaudit.devtools.synth.scenes` (the layout of one image),
:mod:`~segaudit.devtools.synth.render` (painting it),
:mod:`~segaudit.devtools.synth.annotations` (its labels),
:mod:`~segaudit.devtools.synth.errors` (planted label errors),
:mod:`~segaudit.devtools.synth.writers` (COCO and VOC files),
:mod:`~segaudit.devtools.synth.generate` (the generator) and
:mod:`~segaudit.devtools.synth.cli` (the ``segaudit synth`` command).
"""

from __future__ import annotations

from segaudit.devtools.synth.classes import BACKGROUND_KINDS, CLASS_NAMES, CONTEXT_BACKGROUND, CONTEXT_CLASS
from segaudit.devtools.synth.cli import add_synth_arguments, synth_main
from segaudit.devtools.synth.errors import ERROR_KINDS
from segaudit.devtools.synth.generate import SynthSummary, generate_dataset

__all__ = [
    "CLASS_NAMES",
    "CONTEXT_CLASS",
    "CONTEXT_BACKGROUND",
    "BACKGROUND_KINDS",
    "ERROR_KINDS",
    "SynthSummary",
    "generate_dataset",
    "add_synth_arguments",
    "synth_main",
]
