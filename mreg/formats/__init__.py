"""Weight formats: files mreg reads without torch.

:mod:`.containers` reads weight-file containers (safetensors, PyTorch zip
checkpoints); :mod:`.monai_bundle` reads MONAI bundle directories. The names
below are re-exported so that ``from mreg.formats import ...`` keeps working.
"""

from .containers import (
    DTYPES,
    HEADER_ALIGNMENT,
    MAX_HEADER_SIZE,
    PACKED_CODES,
    SAFETENSORS_SUFFIX,
    TORCH_SUFFIXES,
    ZIP_ERRORS,
    FormatError,
    SafetensorsLayout,
    TensorLayout,
    encode_safetensors_header,
    header_length,
    header_shape,
    is_safetensors_name,
    is_weights_name,
    parse_safetensors,
    stored_member_spans,
    torch_shape,
    zip_member_spans,
)

__all__ = [
    "DTYPES",
    "HEADER_ALIGNMENT",
    "MAX_HEADER_SIZE",
    "PACKED_CODES",
    "SAFETENSORS_SUFFIX",
    "TORCH_SUFFIXES",
    "ZIP_ERRORS",
    "FormatError",
    "SafetensorsLayout",
    "TensorLayout",
    "encode_safetensors_header",
    "header_length",
    "header_shape",
    "is_safetensors_name",
    "is_weights_name",
    "parse_safetensors",
    "stored_member_spans",
    "torch_shape",
    "zip_member_spans",
]
