"""teeform's image builders: measured artifacts built from OCI images, reproducibly.

* :mod:`image_builder.oci` - open, verify and safely flatten OCI images / ``docker save`` tars;
* :mod:`image_builder.cpio` - deterministic newc cpio (initramfs) writer;
* :mod:`image_builder.eif` - the Nitro Enclave Image File format: writer, reader, PCR0/1/2/8;
* :mod:`image_builder.eif_sign` - the EIF signature section (COSE_Sign1 over PCR0, PCR8);
* :mod:`image_builder.build_eif` - the ``teeform build eif`` pipeline;
* :mod:`image_builder.demo_image` - deterministic OCI images without Docker (demo, tests, benchmarks).
"""
