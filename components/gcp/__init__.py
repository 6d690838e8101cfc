"""GCP components: Confidential Space (``confidential_space``), confidential VMs from teeform's image
(``confidential_vm``), and the CEL writers for Workload Identity Federation conditions (``cel``)."""
