"""Byte formats teeform reads and writes: EIF, PE/UKI, cpio (newc), GPT, dm-verity, VHD/qcow2/GCE tar."""
