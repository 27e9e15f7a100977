// python/bindings/list_txn.cpp -- mmstore._core._ListTransaction, the native side of
// `with l.transaction() as t:` on mmstore.List (python/mmstore/_list_txn.py).
//
// A _ListTransaction is a mmstore::List::Transaction on a List handle. It holds the store's write lock from
// __enter__ to __exit__ (waiting for it releases the GIL: module.cpp). The outermost block of a (handle,
// thread) owns the transaction; a block entered while one is open there is a savepoint of it. Indexing,
// slices, len and the writes are native; values are encoded and decoded as the handle does. docs/design.md,
// "List transactions".
#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "handles.hpp"
#include "txn_block.hpp"

namespace mmstore::py {

namespace {

// One `with l.transaction() as t:` block on a List handle (txn_block.hpp). Blocks of the same handle and
// thread nest as savepoints.
struct PyListTxn : TxnBlock<PyListTxn, mmstore::List::Transaction, ListHandle> {
    static constexpr const char* kKind = "List";
    static constexpr bool kCheckOpenOnUse = true;

    bool same_target(const PyListTxn&) const { return true; }
    void begin(ListHandle* h) { t.emplace(*h->obj); }  // takes the write lock (waiting releases the GIL)
    static void release_savepoint(mmstore::List::Transaction& txn, std::size_t mark) { txn.release_savepoint(mark); }
};

// Python index -> position (negative from the end); IndexError when out of range.
std::uint64_t position(std::uint64_t n, Py_ssize_t i, const char* what) {
    if (i < 0) i += static_cast<Py_ssize_t>(n);
    if (i < 0 || static_cast<std::uint64_t>(i) >= n) {
        PyErr_Format(PyExc_IndexError, "%s index out of range", what);
        throw nb::python_error();
    }
    return static_cast<std::uint64_t>(i);
}

Py_ssize_t as_index(nb::handle key) {
    const Py_ssize_t i = PyNumber_AsSsize_t(key.ptr(), PyExc_IndexError);
    if (i == -1 && PyErr_Occurred()) throw nb::python_error();
    return i;
}

std::string encode_value(ListHandle* h, nb::handle value) {
    EncBuf vb;
    if (!encode_into(value.ptr(), vb, h->flags, false)) throw nb::python_error();
    return std::string(vb.sv);
}

// Element i as the transaction sees it (decoded from a private copy: decoding may run Python code).
nb::object get_at(PyListTxn& p, std::uint64_t i) {
    auto& t = p.active();
    ListHandle* h = p.handle();
    containers::WordBuf buf;
    const std::string enc(t.get_encoded(i, buf));
    PyObject* o = decode(enc.data(), enc.size(), h->flags);
    if (!o) throw nb::python_error();
    return nb::steal(o);
}

nb::object txn_getitem(PyListTxn& p, nb::handle key) {
    auto& t = p.active();
    if (PySlice_Check(key.ptr())) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key.ptr(), &start, &stop, &step) < 0) throw nb::python_error();
        const Py_ssize_t n = PySlice_AdjustIndices(static_cast<Py_ssize_t>(t.size()), &start, &stop, step);
        nb::list out;
        for (Py_ssize_t k = 0, i = start; k < n; ++k, i += step) out.append(get_at(p, static_cast<std::uint64_t>(i)));
        return std::move(out);
    }
    if (!PyIndex_Check(key.ptr())) {
        PyErr_Format(PyExc_TypeError, "list indices must be integers or slices, not %s", Py_TYPE(key.ptr())->tp_name);
        throw nb::python_error();
    }
    return get_at(p, position(t.size(), as_index(key), "list"));
}

void txn_splice(PyListTxn& p, std::uint64_t start, std::uint64_t stop, nb::handle values) {
    ListHandle* h = p.handle();
    std::vector<std::string> encs;
    for (nb::handle v : values) encs.push_back(encode_value(h, v));  // before any change: may run Python code
    std::vector<std::string_view> views(encs.begin(), encs.end());
    p.active().splice(start, stop, views);
}

void txn_setitem(PyListTxn& p, nb::handle key, nb::handle value) {
    (void)p.active();
    ListHandle* h = p.handle();
    if (PySlice_Check(key.ptr())) {
        nb::list values = nb::steal<nb::list>(PySequence_List(value.ptr()));
        if (!values.is_valid()) throw nb::python_error();
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key.ptr(), &start, &stop, &step) < 0) throw nb::python_error();
        const Py_ssize_t n = PySlice_AdjustIndices(static_cast<Py_ssize_t>(p.active().size()), &start, &stop, step);
        if (step == 1) {
            txn_splice(p, static_cast<std::uint64_t>(start), static_cast<std::uint64_t>(std::max(start, stop)), values);
            return;
        }
        if (static_cast<Py_ssize_t>(nb::len(values)) != n) {
            PyErr_Format(PyExc_ValueError, "attempt to assign sequence of size %zd to extended slice of size %zd",
                         static_cast<Py_ssize_t>(nb::len(values)), n);
            throw nb::python_error();
        }
        std::vector<std::string> encs;
        for (nb::handle v : values) encs.push_back(encode_value(h, v));
        auto& tt = p.active();
        for (Py_ssize_t k = 0, i = start; k < n; ++k, i += step) tt.set_encoded(static_cast<std::uint64_t>(i), encs[k]);
        return;
    }
    const Py_ssize_t i = as_index(key);
    const std::string enc = encode_value(h, value);
    auto& tt = p.active();  // encoding ran Python code: check again
    tt.set_encoded(position(tt.size(), i, "list assignment"), enc);
}

void txn_delitem(PyListTxn& p, nb::handle key) {
    auto& t = p.active();
    if (PySlice_Check(key.ptr())) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key.ptr(), &start, &stop, &step) < 0) throw nb::python_error();
        const Py_ssize_t n = PySlice_AdjustIndices(static_cast<Py_ssize_t>(t.size()), &start, &stop, step);
        if (step == 1) {
            t.splice(static_cast<std::uint64_t>(start), static_cast<std::uint64_t>(std::max(start, stop)), {});
            return;
        }
        std::vector<std::uint64_t> drop;
        for (Py_ssize_t k = 0, i = start; k < n; ++k, i += step) drop.push_back(static_cast<std::uint64_t>(i));
        std::sort(drop.rbegin(), drop.rend());
        for (const std::uint64_t i : drop) t.erase(i);
        return;
    }
    t.erase(position(t.size(), as_index(key), "list assignment"));
}

void txn_append(PyListTxn& p, nb::handle value) {
    const std::string enc = encode_value(p.handle(), value);
    p.active().push_back_encoded(enc);
}

void txn_extend(PyListTxn& p, nb::handle values) {
    // Encoded one by one and appended to the write set: an exception from the iterable leaves the elements
    // before it in the transaction, as list.extend does (the block then decides).
    ListHandle* h = p.handle();
    if (values.ptr() == p.owner.ptr() || values.ptr() == nb::find(&p).ptr()) {
        nb::list snap = nb::steal<nb::list>(PySequence_List(values.ptr()));  // l.extend(t) / t.extend(t)
        if (!snap.is_valid()) throw nb::python_error();
        for (nb::handle v : snap) txn_append(p, v);
        return;
    }
    for (nb::handle v : values) {
        const std::string enc = encode_value(h, v);
        p.active().push_back_encoded(enc);
    }
}

nb::object txn_pop(PyListTxn& p, Py_ssize_t index) {
    auto& t = p.active();
    if (t.size() == 0) {
        PyErr_SetString(PyExc_IndexError, "pop from empty list");
        throw nb::python_error();
    }
    const std::uint64_t i = position(t.size(), index, "pop");
    nb::object x = get_at(p, i);
    p.active().erase(i);
    return x;
}

void txn_insert(PyListTxn& p, Py_ssize_t i, nb::handle value) {
    const std::string enc = encode_value(p.handle(), value);
    auto& t = p.active();
    const auto n = static_cast<Py_ssize_t>(t.size());
    if (i < 0) i = std::max<Py_ssize_t>(0, i + n);
    if (i > n) i = n;
    t.insert_encoded(static_cast<std::uint64_t>(i), enc);
}

}  // namespace

void bind_list_txn(nb::module_& m) {
    nb::class_<PyListTxn>(m, "_ListTransaction")
        .def("__init__", [](PyListTxn* self, nb::handle owner) { new (self) PyListTxn{{nb::borrow(owner)}}; },
             nb::arg("owner"))
        .def("__enter__", &PyListTxn::enter)
        .def("__exit__", [](PyListTxn& p, nb::handle t, nb::handle, nb::handle) { return p.exit(t); },
             nb::arg("exc_type").none(), nb::arg("exc").none(), nb::arg("tb").none())
        .def("__len__", [](PyListTxn& p) { return p.active().size(); })
        .def("__getitem__", &txn_getitem, nb::arg("index"))
        .def("__setitem__", &txn_setitem, nb::arg("index"), nb::arg("value").none())
        .def("__delitem__", &txn_delitem, nb::arg("index"))
        .def("append", &txn_append, nb::arg("value").none())
        .def("extend", &txn_extend, nb::arg("values"))
        .def("pop", &txn_pop, nb::arg("index") = -1)
        .def("insert", &txn_insert, nb::arg("index"), nb::arg("value").none())
        .def("clear", [](PyListTxn& p) { p.active().clear(); })
        .def_prop_ro("_owner", [](PyListTxn& p) { return p.owner; })
        .def_prop_ro("active", [](PyListTxn& p) { return p.is_active(); });
}

}  // namespace mmstore::py
