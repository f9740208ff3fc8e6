"""appkit: LLM applications over private documents that run entirely on a laptop.

Importing appkit loads no model library (torch, llama_cpp, chromadb): every heavy dependency is
imported by the function that needs it.

Example:
    >>> import appkit
    >>> appkit.__version__
    '0.1.0'
"""

import os

# torch and llama.cpp each bring an OpenMP runtime. With the default policy the threads of one spin
# while the other computes, and on a busy 2-core machine a query embedding then took 0.2-1.3 s
# instead of 0.04 s, and a short generation 0.5-10 s instead of 0.2 s (measured in one process,
# PASSIVE vs default; embedding throughput alone was unchanged). It must be set before either
# library starts its threads, hence here; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
