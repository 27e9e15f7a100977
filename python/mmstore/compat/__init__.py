"""Drop-in name mappings for users of the tools mmstore replaces (one import changes, nothing else).

* :mod:`mmstore.compat.pyrsistence` -- ``EMDict`` / ``EMList``.

The others (ultradict, sharedbuffers, mempool) arrive with the faces they map onto.
"""
