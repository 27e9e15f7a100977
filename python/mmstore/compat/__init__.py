"""Drop-in name mappings for users of the tools mmstore replaces (one import changes, nothing else).

* :mod:`mmstore.compat.pyrsistence` -- ``EMDict`` / ``EMList``.
* :mod:`mmstore.compat.sharedbuffers` -- ``mapped_struct`` (schemas, mapped arrays and mappings, id mappers).

The others (ultradict, mempool) arrive with the faces they map onto.
"""
