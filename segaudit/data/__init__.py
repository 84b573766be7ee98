"""Data in: dataset readers (COCO, Pascal VOC), the one sample type they return and the error rows that
replace what they cannot read, dataset-to-model class maps, the model's input frame (letterboxing,
batching) and dataset downloads. May import numpy, PIL, pycocotools, torch (preprocessing only) and
:mod:`segaudit.schema`; nothing else of segaudit.
"""
