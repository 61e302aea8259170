"""Device adapters, one module per device ``type``; each registers itself on
import, so adding a device family means adding one file here."""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from gateway.devices.base import (
    DeviceAdapter,
    DeviceConfigBase,
    EventSink,
    adapter_types,
    make_adapter,
    register,
)

__all__ = ["DeviceAdapter", "DeviceConfig", "DeviceConfigBase", "EventSink", "adapter_types", "make_adapter", "register"]

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")


def _config_union() -> Any:
    models = tuple(t.config_model for t in adapter_types().values())
    if len(models) == 1:
        return models[0]
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007 - built at run time


if TYPE_CHECKING:
    DeviceConfig = DeviceConfigBase
else:
    DeviceConfig = _config_union()
