"""karyosr in napari: a reader for the images the workflow and ``karyosr enhance`` write, and a dock
widget that runs a karyosr model file (SR or classifier) on an image layer.

Install with the extra ``karyosr[napari]``; napari finds the plugin through the npe2 manifest
``napari.yaml`` beside this file (entry point ``napari.manifest``). Nothing is imported here, so
napari can read the manifest without loading Qt or torch.
"""
