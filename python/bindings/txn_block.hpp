// python/bindings/txn_block.hpp
//
// TxnBlock: one `with x.transaction() as t:` block, the part that _Transaction (txn.cpp: Dict and
// SharedDict tables) and _ListTransaction (list_txn.cpp) share. Use it as the base of the Python-facing
// struct of a new kind of transaction; that struct keeps only its own operations.
//
// Blocks nest. The outermost block of a (handle, target, thread) owns the C++ transaction `t`; a block
// entered while one is open there becomes a savepoint of it (`outer`, `mark`): leaving it with an exception
// rolls back to the mark, leaving it normally keeps its writes. Leaving the outermost block commits, or
// rolls back on an exception (the exception then propagates) or when the transaction already ended.
//
// The derived struct (CRTP) supplies:
//   static constexpr const char* kKind     the handle's type name for open_handle ("Dict", "List")
//   bool same_target(const Derived& o)     besides owner and thread, does `o` address the same target?
//   void begin(Handle* h)                  construct `t` on h (takes the store's write lock)
//   void release_savepoint(Txn&, mark)     a savepoint block ended without an exception
//   static constexpr bool kCheckOpenOnUse  active() also raises ClosedError once the handle is closed
//
// Thread safety: guarded by the GIL (the registry of open blocks is a plain vector); a block is used by
// the thread that entered it (the store's write lock is per thread).
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <vector>

#include "handles.hpp"

namespace mmstore::py {

template <class Derived, class Txn, class Handle>
struct TxnBlock {
    ~TxnBlock() { unregister(); }

    nb::object owner;
    std::optional<Txn> t;     // outermost block only
    Derived* outer = nullptr;  // savepoint: the outermost block (kept alive by outer_ref)
    nb::object outer_ref;
    std::size_t mark = 0;
    unsigned long thread = 0;
    enum State { kNew, kEntered, kDone } state = kNew;

    // The outermost blocks currently entered (few: one per handle, target and thread). Guarded by the GIL.
    // Base pointers, so that a block can remove itself from its base destructor.
    static inline std::vector<TxnBlock*> open_blocks;

    // The owner's handle; ClosedError (as a Python error) once it is closed.
    Handle* handle() const {
        Handle* h = open_handle<Handle>(owner.ptr(), Derived::kKind);
        if (!h) throw nb::python_error();
        return h;
    }

    // The transaction this block writes through (its own, or its outermost block's); raises unless the
    // block is entered and the transaction still open.
    Txn& active() {
        Derived& root = outer ? *outer : self();
        if (state != kEntered || !root.t || !root.t->active()) {
            if (state == kNew) throw std::runtime_error("use the transaction inside its `with` block");
            throw mmstore::Error(ErrorCode::kInvalidArgument, "", "the transaction is over (committed or rolled back)");
        }
        if constexpr (Derived::kCheckOpenOnUse) handle();  // ClosedError rather than a write into a closed store
        return *root.t;
    }

    // The `active` property: entered and the transaction still open.
    bool is_active() const {
        const Derived& root = outer ? *outer : self();
        return state == kEntered && root.t && root.t->active();
    }

    // __enter__: a savepoint of the open outermost block of the same owner, target and thread, else a new
    // outermost block.
    static nb::object enter(nb::handle self_obj) {
        Derived& p = *nb::inst_ptr<Derived>(self_obj.ptr());
        if (p.state != kNew) throw std::runtime_error("this transaction was already entered; call transaction() again");
        p.thread = PyThread_get_thread_ident();
        for (TxnBlock* b : open_blocks) {
            Derived* o = static_cast<Derived*>(b);
            if (o->owner.ptr() != p.owner.ptr() || o->thread != p.thread || !p.same_target(*o)) continue;
            p.mark = o->active().savepoint();
            p.outer = o;
            p.outer_ref = nb::borrow(nb::find(o));
            p.state = kEntered;
            return nb::borrow(self_obj);
        }
        p.begin(p.handle());
        p.state = kEntered;
        open_blocks.push_back(&p);
        return nb::borrow(self_obj);
    }

    // __exit__: always returns false (an exception propagates).
    bool exit(nb::handle exc_type) {
        if (state != kEntered) return false;
        state = kDone;
        if (outer) {
            if (outer->t && outer->t->active()) {
                if (!exc_type.is_none()) outer->t->rollback_to(mark);
                else self().release_savepoint(*outer->t, mark);
            }
            outer = nullptr;
            outer_ref = nb::object();
            return false;
        }
        unregister();
        if (!exc_type.is_none() || !t->active()) {
            t->rollback();
            return false;
        }
        try {
            handle();  // ClosedError rather than a commit into a closed store
            t->commit();
        } catch (...) {
            t->rollback();
            throw;
        }
        return false;
    }

private:
    Derived& self() { return static_cast<Derived&>(*this); }
    const Derived& self() const { return static_cast<const Derived&>(*this); }
    void unregister() {
        open_blocks.erase(std::remove(open_blocks.begin(), open_blocks.end(), this), open_blocks.end());
    }
};

}  // namespace mmstore::py
