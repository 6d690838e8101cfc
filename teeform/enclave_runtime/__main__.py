"""``python3 -m teeform.enclave_runtime [OPTIONS] -- AGENT [ARGS...]``: see :mod:`teeform.enclave_runtime.enclave`."""

import sys

from teeform.enclave_runtime.enclave import main

sys.exit(main())
