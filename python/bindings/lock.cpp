// python/bindings/lock.cpp -- mmstore._core.StoreLock: the object `handle.lock` returns, with acquire,
// release and the context-manager protocol as raw CPython methods. `with d.lock: d["n"] += 1` is the
// pattern SharedDict users run in tight loops across processes, so entering and leaving costs one C call
// each (a Python-level wrapper measured ~3x slower per round trip).
#include "handles.hpp"

namespace mmstore::py {

namespace {

struct LockObj {
    PyObject_HEAD
    PyObject* owner;                                  // the handle (strong reference)
    containers::Store* (*store_of)(PyObject* owner);  // nullptr with ClosedError set when closed
};

PyTypeObject* g_lock_type = nullptr;

template <class H>
containers::Store* store_of(PyObject* owner) {
    H* h = open_handle<H>(owner, "store");
    return h ? &h->obj->store() : nullptr;
}

// Raises mmstore.CannotAcquireLock / CannotAcquireLockTimeout (defined in Python, mmstore._errors).
void raise_not_acquired(const containers::Store& s, bool timed_out, double timeout) {
    const int pid = s.lock_holder_pid();
    PyObject* mod = PyImport_ImportModule("mmstore._errors");
    if (!mod) return;
    PyObject* cls = PyObject_GetAttrString(mod, timed_out ? "CannotAcquireLockTimeout" : "CannotAcquireLock");
    Py_DECREF(mod);
    if (!cls) return;
    const std::string msg = s.path() + ": " +
                            (timed_out ? "the lock was not acquired within " + std::to_string(timeout) + " s (held by process " +
                                             std::to_string(pid) + ")"
                                       : "the lock is held by process " + std::to_string(pid));
    PyObject* exc = PyObject_CallFunction(cls, "ssi", msg.c_str(), s.path().c_str(), pid);
    Py_DECREF(cls);
    if (exc) {
        PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc)), exc);
        Py_DECREF(exc);
    }
}

// Takes the lock; returns false with an error set when not acquired.
bool acquire(LockObj* self, bool block, double timeout) {
    containers::Store* s = self->store_of(self->owner);
    if (!s) return false;
    try {
        s->check_writable();
        if (block && timeout < 0) {
            s->lock_write();
            return true;
        }
        if (s->try_lock_write(block ? static_cast<std::int64_t>(timeout * 1e9) : 0)) return true;
    } catch (...) {
        set_error_from_exception();
        return false;
    }
    raise_not_acquired(*s, block, timeout);
    return false;
}

PyObject* lock_acquire(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    static const char* names[] = {"block", "timeout"};
    PyObject* vals[2] = {nullptr, nullptr};
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "acquire(block=True, timeout=None)");
        return nullptr;
    }
    for (Py_ssize_t i = 0; i < nargs; ++i) vals[i] = args[i];
    for (Py_ssize_t i = 0; kwnames && i < PyTuple_GET_SIZE(kwnames); ++i) {
        const char* k = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, i));
        int slot = -1;
        for (int j = 0; j < 2; ++j)
            if (k && std::strcmp(k, names[j]) == 0) slot = j;
        if (slot < 0 || vals[slot]) {
            PyErr_Format(PyExc_TypeError, "acquire() got an unexpected or repeated keyword argument '%s'", k ? k : "?");
            return nullptr;
        }
        vals[slot] = args[nargs + i];
    }
    const int block = vals[0] ? PyObject_IsTrue(vals[0]) : 1;
    if (block < 0) return nullptr;
    double timeout = -1;
    if (vals[1] && vals[1] != Py_None) {
        if (!block) {
            PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking acquire");
            return nullptr;
        }
        timeout = PyFloat_AsDouble(vals[1]);
        if (timeout == -1 && PyErr_Occurred()) return nullptr;
        if (timeout < 0) {
            PyErr_SetString(PyExc_ValueError, "timeout must be >= 0 or None");
            return nullptr;
        }
    }
    if (!acquire(reinterpret_cast<LockObj*>(self), block != 0, timeout)) return nullptr;
    Py_RETURN_TRUE;
}

PyObject* lock_release(PyObject* self, PyObject*) {
    auto* l = reinterpret_cast<LockObj*>(self);
    containers::Store* s = l->store_of(l->owner);
    if (!s) return nullptr;
    if (s->lock_depth() == 0 || !s->lock_held_by_me()) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return nullptr;
    }
    s->unlock_write();
    Py_RETURN_NONE;
}

PyObject* lock_enter(PyObject* self, PyObject*) {
    if (!acquire(reinterpret_cast<LockObj*>(self), true, -1)) return nullptr;
    Py_INCREF(self);
    return self;
}

PyObject* lock_exit(PyObject* self, PyObject* const*, Py_ssize_t) {
    PyObject* r = lock_release(self, nullptr);
    if (!r) return nullptr;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

PyObject* lock_holder_pid(PyObject* self, PyObject*) {
    auto* l = reinterpret_cast<LockObj*>(self);
    containers::Store* s = l->store_of(l->owner);
    return s ? PyLong_FromLong(s->lock_holder_pid()) : nullptr;
}

PyObject* lock_locked(PyObject* self, PyObject*) {
    auto* l = reinterpret_cast<LockObj*>(self);
    containers::Store* s = l->store_of(l->owner);
    return s ? PyBool_FromLong(s->lock_holder_pid() != 0) : nullptr;
}

PyObject* lock_owned(PyObject* self, PyObject*) {
    auto* l = reinterpret_cast<LockObj*>(self);
    containers::Store* s = l->store_of(l->owner);
    return s ? PyBool_FromLong(s->lock_depth() > 0 && s->lock_held_by_me()) : nullptr;
}

PyObject* lock_repr(PyObject* self) {
    auto* l = reinterpret_cast<LockObj*>(self);
    PyObject* path = PyObject_GetAttrString(l->owner, "path");
    if (!path) return nullptr;
    PyObject* r = PyUnicode_FromFormat("<mmstore.StoreLock of %R>", path);
    Py_DECREF(path);
    return r;
}

void lock_dealloc(PyObject* self) {
    PyTypeObject* tp = Py_TYPE(self);
    Py_XDECREF(reinterpret_cast<LockObj*>(self)->owner);
    tp->tp_free(self);
    Py_DECREF(tp);
}

PyMethodDef lock_methods[] = {
    {"acquire", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(lock_acquire)), METH_FASTCALL | METH_KEYWORDS,
     "acquire($self, block=True, timeout=None)\n--\n\nTake the store's lock and return True. With block=False raise "
     "CannotAcquireLock when it is held elsewhere; with a timeout (seconds) raise CannotAcquireLockTimeout when it "
     "passes. Both carry blocking_pid. A holder that died is detected and the store repaired before this returns."},
    {"release", lock_release, METH_NOARGS, "Release one level of this thread's hold (RuntimeError if not held)."},
    {"__enter__", lock_enter, METH_NOARGS, nullptr},
    {"__exit__", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(lock_exit)), METH_FASTCALL, nullptr},
    {"locked", lock_locked, METH_NOARGS, "True when any thread of any process holds the lock."},
    {"owned", lock_owned, METH_NOARGS, "True when the calling thread holds the lock through this handle."},
    {"holder_pid", lock_holder_pid, METH_NOARGS, "Pid of the holding process (0 when free)."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot lock_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(lock_dealloc)},
    {Py_tp_methods, reinterpret_cast<void*>(lock_methods)},
    {Py_tp_repr, reinterpret_cast<void*>(lock_repr)},
    {Py_tp_doc, const_cast<char*>("The store's process-shared, robust, recursive write lock (handle.lock).")},
    {0, nullptr},
};
PyType_Spec lock_spec = {"mmstore._core.StoreLock", sizeof(LockObj), 0, Py_TPFLAGS_DEFAULT, lock_slots};

}  // namespace

template <class H>
PyObject* make_lock(PyObject* owner) {
    if (!handle_of<H>(owner)) return nullptr;
    auto* l = PyObject_New(LockObj, g_lock_type);
    if (!l) return nullptr;
    Py_INCREF(owner);
    l->owner = owner;
    l->store_of = store_of<H>;
    return reinterpret_cast<PyObject*>(l);
}

template PyObject* make_lock<DictHandle>(PyObject*);
template PyObject* make_lock<ListHandle>(PyObject*);

void bind_lock(nb::module_& m) {
    g_lock_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&lock_spec));
    if (!g_lock_type) throw nb::python_error();
    m.attr("StoreLock") = nb::handle(reinterpret_cast<PyObject*>(g_lock_type));
}

}  // namespace mmstore::py
