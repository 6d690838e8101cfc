"""teeform's Pulumi ComponentResources, one capability per module.

* :mod:`components.registry` -- the lookup of a target's builder (named by its plug-in in
  :mod:`teeform.targets`), the per-target context and the shaping of stack outputs. A new cloud is a
  new package (``components/azure/``) plus a plug-in module naming its builder.
* :mod:`components.measurement_manifest` -- ``teeform:index:MeasurementManifest``, how the stack
  records which manifests (and so which measurements) it loaded.
* :mod:`components.aws` -- ``AttestedKey``, ``EnclaveHost``, ``EnclaveNetwork``, ``ArtifactStore``
  and the ``aws``/``nitro-enclave`` builder.
* :mod:`components.azure` -- ``GalleryImagePipeline``, ``CvmNetwork``, ``ConfidentialVm``, ``ReleaseKey`` and the
  ``azure``/``sev-snp`` / ``azure``/``tdx`` builder (issue 10).

Every component follows the same form (shared/reference/style.md guideline 12): type token
``teeform:<module>:<Type>``, a typed ``@dataclass`` of args, children with ``parent=self`` and names
derived from the component's name, no resources created inside ``apply``, ``register_outputs`` last.
"""
