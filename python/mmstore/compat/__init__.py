"""Drop-in name mappings for users of the tools mmstore replaces (one import changes, nothing else).

* :mod:`mmstore.compat.pyrsistence` -- ``EMDict`` / ``EMList``.

* :mod:`mmstore.compat.mempool` -- MemPool.jl's ``poolset`` / ``poolget`` / ... over :class:`mmstore.Pool`.

The others (ultradict, sharedbuffers) arrive with the faces they map onto.
"""
