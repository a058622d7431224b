"""The ``image`` input codec: a PNG, JPEG or WebP file → the model's image tensor, as declared.

Options (all optional; the rest follows from the input's shape and dtype):
  ``mode``: ``RGB`` (default for 3 channels), ``L`` (default for 1) or ``BGR``;
  ``size``: ``[height, width]`` (default: the shape's fixed sizes);
  ``fit``: ``stretch`` (default: resize to the size), ``height`` (keep the aspect ratio at that
  height, then pad or cut on the right to the width), ``width`` (the same at that width, on the
  bottom), ``crop`` (scale the shorter side to ``shorter``, default the larger of height and
  width, then cut the centre); ``pad``: the pixel value padding adds (default 0);
  ``resample``: ``bilinear`` (default), ``nearest``, ``bicubic``, ``box``, ``lanczos``;
  ``scale`` (default 255 for float inputs, 1 for integer ones), ``mean`` and ``std`` (a number or
  one per channel): ``(pixel / scale - mean) / std``;
  ``layout``: ``NCHW``, ``NHWC`` or ``NHW`` (default: from the shape);
  ``max_pixels``: the largest image accepted, width x height (default 4096 x 4096);
  ``formats``: some of ``[png, jpeg, webp]`` (default all three).
"""

from __future__ import annotations

import numpy as np
import torch

from handlers.codec import CodecContext, InputCodec, Part, known
from handlers.inputs import decode_image

OPTIONS = (
    "mode",
    "size",
    "fit",
    "shorter",
    "pad",
    "resample",
    "scale",
    "mean",
    "std",
    "layout",
    "max_pixels",
    "formats",
)
FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}
FITS = ("stretch", "height", "width", "crop")
RESAMPLE = ("nearest", "box", "bilinear", "bicubic", "lanczos")
LAYOUTS = {"NCHW": 4, "NHWC": 4, "NHW": 3}
MAX_PIXELS = 4096 * 4096


def infer_layout(shape: tuple) -> str | None:
    """NCHW when the second size is 1 or 3, NHWC when the last is, NHW for rank 3."""
    if len(shape) == 3:
        return "NHW"
    if len(shape) == 4:
        return "NCHW" if shape[1] in (1, 3) else "NHWC" if shape[3] in (1, 3) else None
    return None


def per_channel(value, channels: int, name: str, where: str) -> list[float]:
    """A number, or a list of one number per channel, as a list of ``channels`` floats."""
    values = value if isinstance(value, list) else [value] * channels
    if len(values) != channels or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{where}: {name} must be a number or a list of {channels} numbers; got {value!r}")
    return [float(v) for v in values]


class ImageCodec(InputCodec):
    """One image file → [1, C, H, W] (or NHWC / NHW) in the input's dtype (see the module)."""

    kind = "image"

    @classmethod
    def check(cls, options: dict, spec, model: CodecContext) -> dict:
        where = f"input {spec.name!r} codec image"
        known(options, OPTIONS, where)
        layout = options.get("layout") or infer_layout(spec.shape)
        if layout not in LAYOUTS or len(spec.shape) != LAYOUTS[layout]:
            raise ValueError(
                f"{where}: layout must be one of {list(LAYOUTS)} matching the shape {list(spec.shape)}; "
                f"got {layout!r} (set `layout:`)"
            )
        axes = {"NCHW": (2, 3, 1), "NHWC": (1, 2, 3), "NHW": (1, 2, None)}[layout]
        channels = 1 if axes[2] is None else spec.shape[axes[2]]
        mode = options.get("mode", "L" if channels == 1 else "RGB")
        if mode not in ("RGB", "L", "BGR") or (mode == "L") != (channels == 1):
            raise ValueError(
                f"{where}: mode must be L (1 channel) or RGB/BGR (3); got {mode!r} for {channels} channel(s)"
            )
        size = options.get("size") or [spec.shape[axes[0]], spec.shape[axes[1]]]
        if not (isinstance(size, list) and len(size) == 2 and all(type(s) is int and s > 0 for s in size)):
            raise ValueError(f"{where}: size must be [height, width] in pixels (the shape's are dynamic); got {size!r}")
        fit, resample = options.get("fit", "stretch"), options.get("resample", "bilinear")
        if fit not in FITS or resample not in RESAMPLE:
            raise ValueError(f"{where}: fit must be one of {list(FITS)} and resample one of {list(RESAMPLE)}")
        formats = options.get("formats", list(FORMATS))
        if not (isinstance(formats, list) and formats and set(formats) <= set(FORMATS)):
            raise ValueError(f"{where}: formats must be a list of {list(FORMATS)}; got {formats!r}")
        integer = not torch.empty(0, dtype=getattr(torch, spec.dtype)).is_floating_point()
        scale = options.get("scale", 1 if integer else 255)
        numbers = [scale, options.get("pad", 0), options.get("max_pixels", MAX_PIXELS), options.get("shorter", 1)]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in numbers) or scale == 0:
            raise ValueError(f"{where}: scale, pad, shorter and max_pixels must be positive numbers")
        std = per_channel(options.get("std", 1.0), channels, "std", where)
        if 0 in std:
            raise ValueError(f"{where}: std must not be 0")
        return {
            "mode": mode,
            "size": size,
            "fit": fit,
            "shorter": options.get("shorter"),
            "pad": options.get("pad", 0),
            "resample": resample,
            "scale": scale,
            "mean": per_channel(options.get("mean", 0.0), channels, "mean", where),
            "std": std,
            "layout": layout,
            "max_pixels": int(options.get("max_pixels", MAX_PIXELS)),
            "formats": formats,
        }

    @classmethod
    def from_samples(cls, entry: dict, files: list) -> dict:
        """The input declared for these images: mode from the channels; a dynamic height or width
        fixed at the samples' most common size (the codec resizes every request to it)."""
        shape, dims = list(entry["shape"]), dict(entry.get("dims") or {})
        layout = infer_layout(tuple(shape))
        if layout is None:
            raise ValueError(f"the shape {shape} does not say where the channels are: set layout (NCHW or NHWC)")
        axes = {"NCHW": (2, 3, 1), "NHWC": (1, 2, 3), "NHW": (1, 2, None)}[layout]
        channels = 1 if axes[2] is None else shape[axes[2]]
        if channels not in (1, 3):
            raise ValueError(f"the shape {shape} has {channels} channels: an image codec takes 1 (L) or 3 (RGB)")
        sizes = [decode_image(f.read_bytes(), None, MAX_PIXELS, "L").shape for f in files]
        common = max(set(sizes), key=sizes.count)
        for axis, size in zip(axes[:2], common, strict=True):
            if not isinstance(shape[axis], int):
                dims.pop(shape[axis], None)
                shape[axis] = int(size)
        codec = {"kind": "image", "mode": "L" if channels == 1 else "RGB", "fit": "stretch"}
        codec |= {"scale": 255, "mean": 0.0, "std": 1.0}
        return entry | {"shape": shape, "dims": dims, "codec": codec}

    def __init__(self, options: dict, spec, model: CodecContext):
        super().__init__(options, spec, model)
        self.media_types = tuple(FORMATS[f][1] for f in options["formats"])
        self.pillow_formats = tuple(FORMATS[f][0] for f in options["formats"])
        self.dtype = getattr(torch, spec.dtype)

    def describe(self) -> str:
        names = [{"png": "PNG", "jpeg": "JPEG", "webp": "WebP"}[f] for f in self.options["formats"]]
        return f"a {' or '.join(names)} image"

    def decode(self, data: bytes | str, media_type: str) -> Part:
        """One image file → one instance (see the module's docstring for the steps)."""
        o = self.options
        pixels = decode_image(data, None, o["max_pixels"], "L" if o["mode"] == "L" else "RGB", self.pillow_formats)
        pixels = self.resized(pixels)
        if o["mode"] == "BGR":
            pixels = pixels[..., ::-1]
        return Part((self.tensor(pixels),), None)

    def resized(self, pixels: np.ndarray) -> np.ndarray:
        """The decoded image at the declared size, by the declared fit."""
        from PIL import Image

        o = self.options
        (height, width), (h, w) = o["size"], pixels.shape[:2]
        resample = getattr(Image.Resampling, o["resample"].upper())
        image = Image.fromarray(pixels)
        if o["fit"] == "stretch":
            return np.asarray(image.resize((width, height), resample))
        if o["fit"] == "crop":
            ratio = (o.get("shorter") or max(height, width)) / min(h, w)
            scaled = image.resize((max(width, round(w * ratio)), max(height, round(h * ratio))), resample)
            left = int(round((scaled.width - width) / 2.0))
            top = int(round((scaled.height - height) / 2.0))
            return np.asarray(scaled.crop((left, top, left + width, top + height)))
        if o["fit"] == "height":
            scaled = image.resize((max(1, round(w * height / h)), height), resample)
        else:
            scaled = image.resize((width, max(1, round(h * width / w))), resample)
        fill = o["pad"] if image.mode == "L" else (o["pad"],) * 3
        canvas = Image.new(image.mode, (width, height), fill)
        canvas.paste(scaled, (0, 0))  # pad on the right (or bottom); a wider image is cut there
        return np.asarray(canvas)

    def tensor(self, pixels: np.ndarray) -> torch.Tensor:
        """Scaled, normalised pixels in the declared layout, with a batch dimension of 1."""
        o = self.options
        if self.dtype.is_floating_point:
            values = pixels.astype(np.float32) / np.float32(o["scale"])
            channels = len(o["mean"])
            mean = np.asarray(o["mean"], np.float32).reshape((channels,) if pixels.ndim == 3 else ())
            std = np.asarray(o["std"], np.float32).reshape((channels,) if pixels.ndim == 3 else ())
            values = (values - mean) / std
        else:
            values = pixels
        x = torch.from_numpy(np.array(values))  # a copy: PIL's arrays are read-only
        if o["layout"] == "NCHW":
            x = x.permute(2, 0, 1) if x.dim() == 3 else x[None]
        elif o["layout"] == "NHWC" and x.dim() == 2:
            x = x[..., None]
        return x[None].to(self.dtype).contiguous()
