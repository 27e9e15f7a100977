"""Drop-in name mappings for users of the tools mmstore replaces (one import changes, nothing else).

* :mod:`mmstore.compat.pyrsistence` -- ``EMDict`` / ``EMList``.
* :mod:`mmstore.compat.sharedbuffers` -- ``mapped_struct`` (schemas, mapped arrays and mappings, id mappers).
* :mod:`mmstore.compat.mempool` -- MemPool.jl's ``poolset`` / ``poolget`` / ... over :class:`mmstore.Pool`.
* :mod:`mmstore.compat.ultradict` -- ``UltraDict`` over :class:`mmstore.SharedDict`.
"""
