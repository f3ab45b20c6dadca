"""Image files in and out.

- :mod:`.formats`: the file types read and written, by suffix;
- :mod:`.header`: what a file holds, from its header alone, before any pixel;
- :mod:`.decode`: decoding exactly what was described (alpha kept aside);
- :mod:`.output`: outputs checked up front, then written atomically;
- :mod:`.png`: 16-bit colour PNG, which Pillow cannot write.

The memory a decode or a run needs is checked in :mod:`..memory`.
"""

from .decode import join_alpha, read, read_image, split_alpha
from .formats import JPEG, PNG, SUPPORTED, TIFF, file_type, quiet_tifffile
from .header import FileInfo, colour_shape, describe
from .output import check_output, output_dtype, output_format_error, snapshot_path, temp_prefix, write_image

__all__ = [
    "TIFF", "PNG", "JPEG", "SUPPORTED", "FileInfo", "describe", "read", "read_image", "check_output",
    "write_image", "split_alpha", "join_alpha", "snapshot_path", "quiet_tifffile", "output_format_error",
    "colour_shape", "file_type", "temp_prefix", "output_dtype",
]
