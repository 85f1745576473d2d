"""Hardware probe: CPU, Vulkan GPUs, NVIDIA GPUs, OS, memory and disk, as a frozen HardwareReport."""
