"""Vulkan GPUs: every physical device through the `vulkan` (cffi) package, and recorded gpuinfo.org reports.

No loader (libvulkan missing) and no device are normal results: the caller records them as
ProbeError(kind="absent") and goes on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.core.hardware.report import VulkanDevice
from app.core.userfile import UserFileError, read_json

VENDOR_NVIDIA = 0x10DE
VENDOR_AMD = 0x1002
VENDOR_INTEL = 0x8086
VENDOR_MESA = 0x10005  # VK_VENDOR_ID_MESA: llvmpipe / lavapipe

VENDOR_NAMES: Mapping[int, str] = {
    VENDOR_NVIDIA: "NVIDIA",
    VENDOR_AMD: "AMD",
    VENDOR_INTEL: "Intel",
    VENDOR_MESA: "Mesa (software)",
    0x1AE0: "Google",
    0x13B5: "ARM",
    0x5143: "Qualcomm",
    0x106B: "Apple",
    0x1414: "Microsoft",
    0x1010: "Imagination",
}

DEVICE_TYPES: Mapping[int, str] = {0: "other", 1: "integrated", 2: "discrete", 3: "virtual", 4: "cpu"}

# VkDriverId values that matter here.
DRIVER_ID_INTEL_PROPRIETARY_WINDOWS = 5
DRIVER_ID_GOOGLE_SWIFTSHADER = 10
DRIVER_ID_MESA_LLVMPIPE = 13
_SOFTWARE_DRIVER_IDS = {DRIVER_ID_GOOGLE_SWIFTSHADER, DRIVER_ID_MESA_LLVMPIPE}
_SOFTWARE_NAMES = ("llvmpipe", "lavapipe", "swiftshader", "softpipe")


class VulkanUnavailable(Exception):  # a normal result, not a bug
    """No loader, no instance, or no device; `reason` says which in plain words."""

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


def decode_version(raw: int) -> str:
    """VK_VERSION major.minor.patch (10/10/12 bits), also used for apiVersion."""
    return f"{(raw >> 22) & 0x3FF}.{(raw >> 12) & 0x3FF}.{raw & 0xFFF}"


def decode_driver_version(raw: int, vendor_id: int, *, driver_id: int | None = None, windows: bool = False) -> str:
    """Per-vendor driverVersion decoding.

    NVIDIA packs 10/8/8/6 bits ("470.239.6.0" = driver 470.239.06); Intel's Windows driver packs 18/14 bits
    ("101.4502"); Mesa, AMD and the rest use VK_VERSION.
    """
    if vendor_id == VENDOR_NVIDIA:
        return f"{(raw >> 22) & 0x3FF}.{(raw >> 14) & 0xFF}.{(raw >> 6) & 0xFF}.{raw & 0x3F}"
    if vendor_id == VENDOR_INTEL and (driver_id == DRIVER_ID_INTEL_PROPRIETARY_WINDOWS or
                                      (driver_id is None and windows)):
        return f"{raw >> 14}.{raw & 0x3FFF}"
    return decode_version(raw)


def nvidia_driver_text(decoded: str) -> str:
    """"470.239.6.0" -> "470.239.06", the form nvidia-smi prints (the minor build is two digits)."""
    parts = decoded.split(".")
    if len(parts) >= 3 and all(p.isdigit() for p in parts[:3]):
        return f"{parts[0]}.{int(parts[1]):02d}.{int(parts[2]):02d}" if parts[2] != "0" else \
            f"{parts[0]}.{int(parts[1]):02d}"
    return decoded


def classify(name: str, vendor_id: int, device_type: str, driver_id: int | None) -> tuple[bool, bool, str]:
    """(software, useful, note) for one device."""
    lname = name.lower()
    software = (
        device_type == "cpu"
        or vendor_id == VENDOR_MESA
        or driver_id in _SOFTWARE_DRIVER_IDS
        or any(s in lname for s in _SOFTWARE_NAMES)
    )
    if software:
        return True, False, "software renderer on the CPU: no faster than the CPU backend, not useful for inference"
    if device_type == "virtual":
        return False, False, "virtual GPU: llama.cpp's Vulkan backend skips it by default"
    if device_type not in ("discrete", "integrated"):
        return False, False, f"device type '{device_type}': llama.cpp's Vulkan backend uses only real GPUs"
    return False, True, ""


def make_device(*, index: int, name: str, vendor_id: int, device_id: int, device_type_raw: int, api_version_raw: int,
                driver_version_raw: int, driver_id: int | None, driver_name: str, driver_info: str,
                device_local_memory_bytes: int, windows: bool) -> VulkanDevice:
    device_type = DEVICE_TYPES.get(device_type_raw, "other")
    software, useful, note = classify(name, vendor_id, device_type, driver_id)
    return VulkanDevice(
        index=index,
        name=name,
        vendor_id=vendor_id,
        vendor=VENDOR_NAMES.get(vendor_id, f"0x{vendor_id:04x}"),
        device_id=device_id,
        device_type=device_type,
        api_version=decode_version(api_version_raw),
        driver_version=decode_driver_version(driver_version_raw, vendor_id, driver_id=driver_id, windows=windows),
        driver_version_raw=driver_version_raw,
        driver_name=driver_name,
        driver_info=driver_info,
        device_local_memory_bytes=device_local_memory_bytes,
        software=software,
        useful=useful,
        note=note,
    )


# ---------------------------------------------------------------------------------------------- live probe


def probe_vulkan() -> tuple[VulkanDevice, ...]:
    """Enumerate every Vulkan physical device on this machine.

    Raises:
        VulkanUnavailable: no loader, instance creation failed, or no device.
    """
    os.environ.setdefault("VK_LOADER_DEBUG", "none")
    try:
        import vulkan as vk
    except OSError as exc:  # the package raises OSError when libvulkan cannot be loaded
        raise VulkanUnavailable(
            f"no Vulkan loader (libvulkan) is installed ({exc})",
            "install your GPU driver (it brings the Vulkan loader), or on Debian/Ubuntu: apt install libvulkan1",
        ) from None
    except ImportError as exc:
        raise VulkanUnavailable(f"the Python 'vulkan' package is missing ({exc})") from None
    return _enumerate(vk)


def _enumerate(vk: Any) -> tuple[VulkanDevice, ...]:
    app_info = vk.VkApplicationInfo(
        sType=vk.VK_STRUCTURE_TYPE_APPLICATION_INFO,
        pApplicationName="lms-unlocked probe",
        applicationVersion=1,
        pEngineName="none",
        engineVersion=1,
        apiVersion=vk.VK_MAKE_VERSION(1, 1, 0),
    )
    create_info = vk.VkInstanceCreateInfo(sType=vk.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, pApplicationInfo=app_info)
    try:
        instance = vk.vkCreateInstance(create_info, None)
    except Exception as exc:  # VkErrorIncompatibleDriver etc.: no ICD at all
        raise VulkanUnavailable(
            f"the Vulkan loader found no driver ({type(exc).__name__})",
            "install or update the GPU driver; a Vulkan driver (ICD) must be registered with the loader",
        ) from None
    try:
        handles = vk.vkEnumeratePhysicalDevices(instance)
        devices = tuple(_device(vk, i, h) for i, h in enumerate(handles))
    finally:
        vk.vkDestroyInstance(instance, None)
    if not devices:
        raise VulkanUnavailable("the Vulkan loader works but reports no device", "install or update the GPU driver")
    return devices


def _device(vk: Any, index: int, handle: Any) -> VulkanDevice:
    props = vk.vkGetPhysicalDeviceProperties(handle)
    driver_id: int | None = None
    driver_name = driver_info = ""
    try:
        drv = vk.VkPhysicalDeviceDriverProperties(sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES)
        p2 = vk.VkPhysicalDeviceProperties2(sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, pNext=drv)
        vk.vkGetPhysicalDeviceProperties2(handle, p2)
        driver_id = int(drv.driverID) or None
        driver_name = vk.ffi.string(drv.driverName).decode("utf-8", "replace")
        driver_info = vk.ffi.string(drv.driverInfo).decode("utf-8", "replace")
    except Exception:  # Vulkan 1.0 driver without VK_KHR_driver_properties: the basics are enough
        pass
    mem = vk.vkGetPhysicalDeviceMemoryProperties(handle)
    local = sum(
        int(mem.memoryHeaps[i].size)
        for i in range(mem.memoryHeapCount)
        if mem.memoryHeaps[i].flags & vk.VK_MEMORY_HEAP_DEVICE_LOCAL_BIT
    )
    name = props.deviceName if isinstance(props.deviceName, str) else vk.ffi.string(props.deviceName).decode()
    return make_device(
        index=index,
        name=name,
        vendor_id=int(props.vendorID),
        device_id=int(props.deviceID),
        device_type_raw=int(props.deviceType),
        api_version_raw=int(props.apiVersion),
        driver_version_raw=int(props.driverVersion),
        driver_id=driver_id,
        driver_name=driver_name,
        driver_info=driver_info,
        device_local_memory_bytes=local,
        windows=sys.platform == "win32",
    )


# ------------------------------------------------------------------------------- recorded gpuinfo.org reports


class GpuinfoReportError(ValueError):
    """A file that is not a vulkan.gpuinfo.org report JSON."""


def _driver_props_from_report(report: Mapping[str, Any]) -> tuple[int | None, str, str]:
    candidates: list[Mapping[str, Any]] = []
    core12 = report.get("core12")
    if isinstance(core12, Mapping) and isinstance(core12.get("properties"), Mapping):
        candidates.append(core12["properties"])
    if isinstance(report.get("propertiesCore12"), Mapping):
        candidates.append(report["propertiesCore12"])
    ext = report.get("extended")
    if isinstance(ext, Mapping) and isinstance(ext.get("deviceproperties2"), list):
        candidates.append({
            str(e.get("name")): e.get("value")
            for e in ext["deviceproperties2"]
            if isinstance(e, Mapping) and e.get("extension") == "VK_KHR_driver_properties"
        })
    for c in candidates:
        if c.get("driverID") not in (None, "", 0, "0"):
            return int(c["driverID"]), str(c.get("driverName") or ""), str(c.get("driverInfo") or "")
    return None, "", ""


def _size(value: Any) -> int:
    return int(value, 0) if isinstance(value, str) else int(value)


def device_from_gpuinfo(report: Mapping[str, Any], *, index: int = 0) -> VulkanDevice:
    """A VulkanDevice from one vulkan.gpuinfo.org report (as mirrored JSON), decoded like a live probe would."""
    try:
        props = report["properties"]
        env = report.get("environment") or {}
        driver_id, driver_name, driver_info = _driver_props_from_report(report)
        heaps = (report.get("memory") or {}).get("memoryHeaps") or []
        local = sum(_size(h["size"]) for h in heaps if int(h.get("flags", 0)) & 1)
        return make_device(
            index=index,
            name=str(props["deviceName"]),
            vendor_id=int(props["vendorID"]),
            device_id=int(props["deviceID"]),
            device_type_raw=int(props["deviceType"]),
            api_version_raw=int(props["apiVersion"]),
            driver_version_raw=int(props["driverVersion"]),
            driver_id=driver_id,
            driver_name=driver_name,
            driver_info=driver_info,
            device_local_memory_bytes=local,
            windows=str(env.get("name", "")).lower() == "windows",
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise GpuinfoReportError(f"not a vulkan.gpuinfo.org report: {exc!r}") from None


def load_gpuinfo_report(path: Path, *, index: int = 0) -> VulkanDevice:
    try:
        data = read_json(path, regular_only=False)
    except UserFileError as exc:
        raise GpuinfoReportError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, Mapping):
        raise GpuinfoReportError(f"{path} holds no JSON object")
    return device_from_gpuinfo(data, index=index)
