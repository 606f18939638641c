"""Denoisers assembled from minivdm.nn blocks."""

from minivdm.models.pixel_unet import PixelUNet, PixelUNetConfig
