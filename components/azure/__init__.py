"""Azure components (pulumi-azure-native 3.29): confidential VM, Compute Gallery image pipeline, SKR key, network.

* :mod:`components.azure.cvm` -- the ``azure``/``sev-snp`` and ``azure``/``tdx`` builder and the
  ``ConfidentialVm`` component (user-assigned identity + ``compute.VirtualMachine``).
* :mod:`components.azure.image` -- ``GalleryImagePipeline``: storage account, container, the VHD as a
  page blob (:mod:`components.azure.page_blob`), ``Gallery``, ``GalleryImage``, ``GalleryImageVersion``.
* :mod:`components.azure.network` -- ``CvmNetwork``: VNet, subnet, NSG (no inbound rule unless
  configured), optional public IP, NIC.
* :mod:`components.azure.release_key` -- ``ReleaseKey``: Key Vault Premium, exportable ``RSA-HSM`` key
  with the SKR policy of :mod:`teeform.azure_release`, the release role for the VM identity only.

Nested values use the typed ``*Args`` classes (pulumi.md §2.2 item 2); every argument name was
checked against the installed SDK (``tests/test_azure_components.py`` introspects the classes).
"""
