"""Vision: image decoding, image-folder and COCO (Visual Wake Words) readers, generated
scenes, and the Beam preprocessing that turns images into an example set for the model chain."""
