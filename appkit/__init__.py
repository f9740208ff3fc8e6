"""appkit: LLM applications over private documents that run entirely on a laptop.

Importing appkit loads no model library (torch, llama_cpp, chromadb): every heavy dependency is
imported by the function that needs it.

Example:
    >>> import appkit
    >>> appkit.__version__
    '0.1.0'
"""

__version__ = "0.1.0"
