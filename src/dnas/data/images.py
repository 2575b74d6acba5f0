"""Image files decoded with Pillow and the ImageNet-style transforms, one sample at a time.

Training: random-resized crop (Szegedy et al., 2015: a random area of 8–100 % of the image at an
aspect ratio in [3/4, 4/3], resized to the target size) and a horizontal flip. Evaluation: resize
the shorter side to ``size / crop_fraction`` and take the centre ``size × size`` crop (the usual
0.875 crop of ImageNet evaluation). Each crop and resize is one Pillow ``resize`` with a source box
(antialiased bilinear), so the training crop is never decoded at full size twice.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from dnas.data.errors import DatasetError
from dnas.errors import DnasError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp", ".tif", ".tiff")
MODES = {1: "L", 3: "RGB"}
# A crop box in source pixels: (left, top, right, bottom), floats.
Box = tuple[float, float, float, float]


def is_image_file(name: str) -> bool:
    """Whether the file name has one of ``IMAGE_EXTENSIONS`` (any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def open_image(path: str | os.PathLike, channels: int) -> Image.Image:
    """Decode an image file fully, converted to ``channels`` (1: grey, 3: RGB).

    Raises:
        DatasetError: the file is missing, not an image, truncated or otherwise undecodable;
            the message starts with its path.
    """
    try:
        with Image.open(path) as im:
            return im.convert(MODES[channels])  # convert() decodes the whole image
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None


def check_image_header(path: str | os.PathLike) -> None:
    """Open the file and read its header only (format and size): cheap, catches non-images.

    Raises:
        DatasetError: the file is not a readable image; the message starts with its path.
    """
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None
    if w < 1 or h < 1:
        raise DatasetError(f"{path}: empty image ({w}×{h})")


def random_resized_box(
    width: int,
    height: int,
    rng: random.Random,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Box:
    """A random crop covering ``scale`` of the area at an aspect ratio (w/h) in ``ratio``.

    Ten draws, as in Inception's preprocessing; if none fits in the image, the central crop at the
    nearest allowed aspect ratio.
    """
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = rng.randint(0, width - w)
            top = rng.randint(0, height - h)
            return (left, top, left + w, top + h)
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return (left, top, left + w, top + h)


def center_box(width: int, height: int, size: int, crop_fraction: float) -> Box:
    """The centre ``size × size`` crop after resizing the shorter side to ``size / crop_fraction``,
    as a box in source pixels."""
    side = min(width, height) * size / round(size / crop_fraction)
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


def to_tensor(image: Image.Image, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """A Pillow image → normalised float32 ``[C, H, W]``: ``(pixel / 255 − mean) / std``.

    Args:
        image: an ``L`` or ``RGB`` image.
        mean: ``[C, 1, 1]``.
        std: ``[C, 1, 1]``.
    """
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    x = torch.from_numpy(array.copy()).permute(2, 0, 1).to(torch.float32)
    return x.mul_(1.0 / 255.0).sub_(mean).div_(std)


class ImageTransform:
    """Decode, crop, resize, flip and normalise one image file.

    Args:
        size: output height and width.
        channels: 1 (grey) or 3 (RGB).
        mean: per-channel mean of the pixels in [0, 1] (``channels`` values).
        std: per-channel standard deviation.
        train: random-resized crop and flip (drawn from the ``seed`` of each call); otherwise
            the deterministic centre crop.
        crop_fraction: evaluation crop: the shorter side is resized to ``size / crop_fraction``.
        scale: range of the random crop's share of the image area.
        ratio: range of the random crop's aspect ratio (width / height).
    """

    def __init__(
        self,
        size: int,
        channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        train: bool,
        crop_fraction: float = 0.875,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
    ) -> None:
        if size < 1:
            raise DnasError(f"image size must be >= 1, got {size}")
        if channels not in MODES:
            raise DnasError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
        if len(mean) != channels or len(std) != channels:
            raise DnasError(
                f"mean and std need {channels} value(s) for {channels}-channel images, "
                f"got mean={list(mean)}, std={list(std)}"
            )
        if any(s <= 0 for s in std):
            raise DnasError(f"std must be > 0, got {list(std)}")
        if not 0 < crop_fraction <= 1:
            raise DnasError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise DnasError(f"scale must be [lo, hi] with 0 < lo <= hi <= 1, got {list(scale)}")
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise DnasError(f"ratio must be [lo, hi] with 0 < lo <= hi, got {list(ratio)}")
        self.size = int(size)
        self.channels = int(channels)
        self.mean = torch.tensor([float(m) for m in mean]).view(-1, 1, 1)
        self.std = torch.tensor([float(s) for s in std]).view(-1, 1, 1)
        self.train = bool(train)
        self.crop_fraction = float(crop_fraction)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))

    def __call__(self, path: str | os.PathLike, seed: int = 0) -> torch.Tensor:
        """The transformed image ``[channels, size, size]`` (float32, normalised).

        Args:
            path: the image file.
            seed: seed of the random crop and flip (ignored in evaluation).

        Raises:
            DatasetError: the file cannot be decoded.
        """
        image = open_image(path, self.channels)
        if self.train:
            rng = random.Random(seed)
            box = random_resized_box(*image.size, rng, self.scale, self.ratio)
            flip = rng.random() < 0.5
        else:
            box = center_box(*image.size, self.size, self.crop_fraction)
            flip = False
        out = image.resize((self.size, self.size), Image.Resampling.BILINEAR, box=box)
        if flip:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_tensor(out, self.mean, self.std)
