"""What a process runs on: devices, precision, seeds, threads and memory; and the other processes it watches.

runtime.py      devices, precision, seeds and threads, chosen once at the edge; the memory watchdog
resources.py    the CPUs and memory this process may use: affinity, cgroup quota and limit (torch-free)
allocator.py    PyTorch's huge pages and glibc's freed blocks (torch-free: chosen before torch loads)
processes.py    other processes by pid and start time: alive, ending or gone, and how one ended (no torch)
"""
