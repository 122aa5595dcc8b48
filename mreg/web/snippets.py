"""The "Use it" snippets of a version page: commands that work for what the version holds.

``load_model`` rebuilds a network only when the manifest records a torchvision builder
(``mreg.pytorch.register(..., builder=...)``) or a MONAI bundle; a state dict added with ``mreg add`` loads
with ``load_state_dict``, several weight files need ``file=``, and other files are
fetched by path. Every string put in a snippet is quoted for its language.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mreg.formats.containers import is_weights_name
from mreg.formats.monai_bundle import PROPERTIES_KEY as BUNDLE_KEY

if TYPE_CHECKING:
    from mreg.records.manifest import Manifest


def snippets(manifest: Manifest, base_url: str) -> dict[str, str]:
    """Shell and Python that pull this version from ``base_url`` and use it."""
    ref = f"{manifest.name}@{manifest.version}"
    return {"shell": _shell(manifest, ref, base_url), "python": _python(manifest, ref, base_url)}


def records_builder(properties: Mapping[str, Any]) -> bool:
    """True when the manifest names a torchvision architecture that ``load_model`` can rebuild alone
    (the ``builder`` metadata :class:`mreg.pytorch.TorchvisionBuilder` writes; read here without torch)."""
    builder = properties.get("builder")
    return (
        isinstance(builder, Mapping)
        and builder.get("library") == "torchvision"
        and isinstance(builder.get("name"), str)
        and isinstance(builder.get("kwargs") or {}, Mapping)
    )


def _shell(manifest: Manifest, ref: str, base_url: str) -> str:
    lines = [
        "mreg init .   # once, in your project",
        f"mreg pull {shlex.quote(base_url)} {shlex.quote(manifest.name)}",
        f"mreg show {shlex.quote(ref)}",
    ]
    if len(manifest.files) == 1:
        name = manifest.files[0].path.rsplit("/", 1)[-1]  # mreg path names the object by its digest
        lines.append(f'cp "$(mreg path {shlex.quote(ref)})" {shlex.quote(name)}')
    else:
        directory = f"{manifest.name.rsplit('/', 1)[-1]}-{manifest.version}"
        lines.append(f"mreg export {shlex.quote(ref)} {shlex.quote(directory)}")
    return "\n".join(lines)


def _python(manifest: Manifest, ref: str, base_url: str) -> str:
    weights = [f.path for f in manifest.files if is_weights_name(f.path)]
    quoted = json.dumps(ref)  # a valid Python string literal for any text
    if isinstance(manifest.properties.get(BUNDLE_KEY), Mapping):  # a MONAI bundle: its own network_def, built with MONAI
        imports, use = "from mreg.pytorch import load_model\n", [f"model = load_model(registry, {quoted})"]
    elif len(weights) == 1 and records_builder(manifest.properties):
        imports, use = "from mreg.pytorch import load_model\n", [f"model = load_model(registry, {quoted})"]
    elif len(weights) == 1:
        imports = "from mreg.pytorch import load_state_dict\n"
        use = [
            f"state_dict = load_state_dict(registry, {quoted})",
            "# then: your_network.load_state_dict(state_dict)",
        ]
    elif weights:
        imports = "from mreg.pytorch import load_state_dict\n"
        use = [f"state_dict = load_state_dict(registry, {quoted}, file={json.dumps(weights[0])})"]
        use.append(f"# its weight files: {', '.join(weights)}")
    elif len(manifest.files) == 1:
        imports, use = "", [f"path = registry.path({quoted})   # read-only: copy it before changing it"]
    else:
        imports = ""
        use = [f"paths = {{f.path: registry.path({quoted}, f.path) for f in registry.get({quoted}).manifest.files}}"]
    return "\n".join(
        [
            f"from mreg import Registry\n{imports}",
            'registry = Registry.init(".")',
            f"registry.pull({json.dumps(base_url)}, [{json.dumps(manifest.name)}])",
            *use,
        ]
    )
