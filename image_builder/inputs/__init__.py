"""OCI image input: OCI layouts and ``docker save`` tars, verified and flattened safely; demo images."""
