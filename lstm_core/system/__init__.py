"""What a process runs on: devices, precision, seeds, threads and memory.

runtime.py      devices, precision, seeds and threads, chosen once at the edge; the memory watchdog
resources.py    the CPUs and memory this process may use: affinity, cgroup quota and limit (torch-free)
allocator.py    PyTorch's huge pages and glibc's freed blocks (torch-free: chosen before torch loads)
"""
