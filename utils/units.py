"""Units, once. Memory is binary throughout, as torch's allocator and nvidia-smi count it: MiB
and GiB; results.csv's memory columns are MiB. A "GB" the suite prints is a GiB too (the
datasheets' "80 GB" of HBM is 80 GiB: nvidia-smi's total); decimal units appear only for
bandwidth (TB/s, 10^12 bytes/s) and FLOP rates.

Stdlib only, and imports nothing: every package may use it."""

MIB = 2**20  # bytes
GIB = 2**30  # bytes
MIB_PER_GIB = 1024
