"""Building blocks shared by every denoiser: embeddings, ResNet blocks, (later) attention and convs."""

from minivdm.nn.embeddings import TimestepEmbedding, timestep_embedding
from minivdm.nn.resnet import Downsample2D, ResnetBlock2D, Upsample2D
