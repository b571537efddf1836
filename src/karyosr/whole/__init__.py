"""Whole images: the held-out whole images (or low-magnification captures) enhanced whole by every
method of a profile and scored without a reference - what the two whole-image works are for.

Digital magnification (SR-GAN microscopy sharpening) enlarges the parts of a slide that were
never photographed at high magnification; metaphase enhancement (ESRGAN transfer learning)
judges the enlarged spreads by no-reference quality, as no HR reference exists for them. So every
SR method (baselines and trained models of a paired profile) is applied to the *whole*
low-magnification captures of the test slides - each the low side of an accepted pair whose
nominal ratio is the profile's scale - with seamless tiles (:func:`karyosr.sr.infer.predict_tiled`),
and NIQE and PIQE are measured on every capture before (at its native size) and after. For a
folder of whole images (layout ``images``: metaphase photographs, microscope fields, slices) the
images enhanced are the ORIGINAL held-out images of the test groups, not their synthetic LR:
restoration profiles (scale 1) clean them at native size, SR profiles enlarge them. An image whose
output would exceed ``whole.max_pixels`` is enhanced on its central crop that fits, the same crop
scored before and after.

* :mod:`karyosr.whole.enhance`: rule ``enhance_whole``, the images to enhance and their enhancement;
* :mod:`karyosr.whole.quality`: rule ``whole_quality``, NIQE and PIQE before and after.

The report of the whole-image path (rules ``whole_figure``, ``whole_report``) is drawn from
:mod:`karyosr.report` (``figures.whole_figure``, the registration, tile, gain and change tables,
their findings).
"""
