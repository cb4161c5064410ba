"""Opening images we did not make (competitors' files, uploads, retouches) safely: refuse
decompression bombs before decoding, and turn every way a file can be broken into one error
with the reason."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MAX_PIXELS = 50_000_000  # declared size above this: a decompression bomb, refused


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders walked for image files (sorted, so runs and reports are repeatable)."""
    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            files.append(path)
    return files


class UnreadableImage(ValueError):
    """Not an image we can use: the message says why (empty, truncated, bomb, unknown format)."""


def open_image(source: str | Path | bytes, before_load: Callable[[Image.Image], object] | None = None) -> Image.Image:
    """Open and fully decode `source`; `before_load` may set a reduced decode (JPEG draft)."""
    if (len(source) if isinstance(source, bytes) else Path(source).stat().st_size) == 0:
        raise UnreadableImage("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            if image.width * image.height > MAX_PIXELS:
                raise UnreadableImage(f"declared size {image.width}x{image.height} is too large (decompression bomb)")
            if before_load:
                before_load(image)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UnreadableImage("declared size is too large (decompression bomb)") from None
    except UnidentifiedImageError:
        raise UnreadableImage("not a readable image (unknown format)") from None
    except UnreadableImage:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(f"corrupt or truncated image ({exc})") from None
    return image


def open_checked(path: Path) -> Image.Image:
    return open_image(path)
