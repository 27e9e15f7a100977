// python/bindings/dict_walk.hpp -- the lock-free walk of a Dict's main table in entry order that the Dict
// iterators (dict.cpp) and a snapshot's fast iteration (snapshot.cpp) share.
#pragma once

#include <cstdint>
#include <string>

#include "handles.hpp"
#include "recycle.hpp"

namespace mmstore::py {

enum class IterKind : int { kKeys = 0, kValues = 1, kItems = 2 };

// Where a walk over the handle's main table in entry order stands.
struct TableWalk {
    std::uint64_t pos = 0;        // next entry position
    std::uint64_t root = 0;       // the table block being walked
    std::uint64_t last_word = 0;  // the last key handed out, when inline (the word is its encoding)
    std::string last_key;         // ... when a record (last_word == 0)
};
// One entry read by walk_entry(): its words, slot and position, and the read_begin() they were read after.
struct WalkEntry {
    std::uint64_t snap = 0, kw = 0, vw = 0, pos = 0;
    const containers::EntrySlot* entry = nullptr;
};
enum class WalkStep { kEntry, kEnd, kRetry, kError };

// Reads the first live entry at or after w.pos from one validated table, without the lock; after a rebuild
// (the root moved) the walk resumes after the last key handed out, found in the new table (RuntimeError when
// it is gone). kRetry: a writer interfered, read again; kError: a Python error is set. w is not advanced.
WalkStep walk_entry(DictHandle* h, TableWalk& w, WalkEntry& e);
// Decodes the entry's key and/or value as `kind` needs (new references, nullptr when not needed), through the
// recyclers for native inline words; kRetry when a writer reused what was read.
Got walk_decode(DictHandle* h, PyObject* owner, const WalkEntry& e, IterKind kind, Recycler& keys, Recycler& values,
                PyObject** k, PyObject** v);
// Marks the entry handed out: the walk goes on after it.
void walk_took(const containers::Store& store, TableWalk& w, const WalkEntry& e);
// The element of `kind` built from k and v (steals both).
PyObject* walk_result(IterKind kind, PyObject* k, PyObject* v);

}  // namespace mmstore::py
