"""The standard pretrained feature networks behind LPIPS, FID and FVD.

None of their weights can be downloaded at run time. Each loader reads the standard file from
a path or an environment variable and returns :class:`Unavailable` (whose ``str`` says which
variable to set) when neither is given:

=====  ===========================  =============================================
LPIPS  ``HMA_LPIPS_WEIGHTS``        lpips package ``weights/v0.1/alex.pth``
       ``HMA_ALEXNET_WEIGHTS``      torchvision ``alexnet-owt-7be5be79.pth``
FID    ``HMA_FID_INCEPTION_WEIGHTS``  pytorch-fid ``pt_inception-2015-12-05-6726825d.pth``
FVD    ``HMA_FVD_I3D_WEIGHTS``      ``i3d_pretrained_400.pt`` (VideoGPT FVD)
=====  ===========================  =============================================
"""

from hma.eval.nets._common import Unavailable
from hma.eval.nets.i3d import I3DLayer, InceptionI3D, load_i3d
from hma.eval.nets.inception import FIDInceptionV3, load_fid_inception
from hma.eval.nets.lpips import LPIPS, load_lpips

__all__ = [
    "FIDInceptionV3",
    "I3DLayer",
    "InceptionI3D",
    "LPIPS",
    "Unavailable",
    "load_fid_inception",
    "load_i3d",
    "load_lpips",
]
