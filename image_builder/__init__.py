"""teeform's image builders: measured artifacts built from OCI images, reproducibly.

Layers, highest first; a module imports only from its own layer or lower ones, and sibling modules
form no import cycle (enforced by the ``import-linter`` contracts in ``pyproject.toml``, run by
``tests/test_layers.py``; docs/architecture.md "image_builder layers"):

* :mod:`image_builder.pipelines` - the ``teeform build eif`` / ``build vm-image`` / ``measure``
  pipelines and reports: file I/O, external tools (mkfs.erofs, mtools, qemu), temp files and atomic outputs;
* :mod:`image_builder.measure` - measurement maths, one module per register or spec
  (PCR 11/12 of systemd-stub, Authenticode, SEV-SNP launch digest, TDX RTMRs; ``vm`` combines them);
* :mod:`image_builder.formats` - byte formats we read and write (EIF, PE/UKI, cpio, GPT, dm-verity,
  VHD/qcow2/GCE tar);
* :mod:`image_builder.inputs` - OCI image input: open, verify and safely flatten OCI layouts and
  ``docker save`` tars; deterministic demo images.
"""
