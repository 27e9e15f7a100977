// python/bindings/records.cpp -- the typed-records face in CPython (mmstore/records.hpp underneath).
//
// Types (raw CPython heap types; the hot paths are slot functions, no nanobind dispatch):
//   _SchemaNative      one per Python Schema: the C++ Schema, interned field names, the proxy class, and
//                      pack / pack_into / unpack_from.
//   RecordProxy        base of every per-schema proxy class (built in mmstore/_records.py with one
//                      _Field descriptor per field): a record in a column set (array or mapping) or a packed
//                      row in a buffer. A proxy holds a strong reference to the object owning its memory, so
//                      it never dangles.
//   _Field             descriptor reading one field straight from the memory (fixed fields by offset;
//                      variable fields decoded from their codec value; nested records as zero-copy proxies).
//   _ArrayNative       an open RecordArray image (file mapping, or a caller's buffer kept by a Py_buffer);
//                      exports the image through the buffer protocol for numpy column views.
//   _MappingNative     an open Mapping image: lookups through mp_subscript / sq_contains.
//   _ArrayBuilder, _MappingBuilder  packing loops over Python iterables, in C++.
// Everything runs under the GIL.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "codec.hpp"
#include "handles.hpp"
#include "mmstore/error.hpp"
#include "mmstore/records.hpp"
#include "mmstore/storage/checksum.hpp"
#include "mmstore/internal/records_format.hpp"

namespace nb = nanobind;

namespace mmstore::py {

namespace {

namespace tag = mmstore::codec::tag;
using mmstore::FieldType;
using mmstore::detail::ColumnSet;
using mmstore::detail::load;

PyTypeObject* g_schema_type = nullptr;
PyTypeObject* g_proxy_type = nullptr;
PyTypeObject* g_field_type = nullptr;
PyTypeObject* g_array_type = nullptr;
PyTypeObject* g_mapping_type = nullptr;
PyTypeObject* g_bufowner_type = nullptr;
PyTypeObject* g_iter_type = nullptr;

// ---------------------------------------------------------------------------------------------------------
// _SchemaNative

struct FieldInfo {
    PyObject* name = nullptr;  // interned str
    FieldType type{};
    unsigned width = 0;        // fixed fields
    std::uint32_t row_off = 0;
    PyObject* nested = nullptr;  // kRecord: the nested _SchemaNative (strong), set by set_nested
};

struct SchemaNative {
    mmstore::SchemaPtr schema;
    std::vector<FieldInfo> fields;
    PyObject* proxy_cls = nullptr;  // strong
    PyObject* coerce = nullptr;     // strong: coerce(type_code, value) -> value
    PyObject* blob = nullptr;       // bytes
    PyObject* factory = nullptr;    // strong: the struct class (or None)
    // Set by mmstore.compat.sharedbuffers (set_missing_raises): reading a field that was never set raises
    // AttributeError instead of returning None, and packing stores a None variable field as a present None,
    // so that hasattr() tells "unset" from None as sharedbuffers does.
    bool missing_raises = false;
    // With missing_raises: index of the hidden field whose integer value has bit i set when fixed-width field i
    // was None (a fixed field has no room for None), or -1.
    Py_ssize_t none_mask = -1;
};

struct SchemaObj {
    PyObject_HEAD
    SchemaNative* n;
};

inline SchemaNative& sn(PyObject* o) { return *reinterpret_cast<SchemaObj*>(o)->n; }

void error_from_exception() { set_error_from_exception(); }

PyObject* schema_new(PyTypeObject* type, PyObject* args, PyObject*) {
    Py_buffer blob;
    if (!PyArg_ParseTuple(args, "y*", &blob)) return nullptr;
    auto* self = reinterpret_cast<SchemaObj*>(type->tp_alloc(type, 0));
    if (self == nullptr) {
        PyBuffer_Release(&blob);
        return nullptr;
    }
    try {
        auto n = std::make_unique<SchemaNative>();
        n->schema = mmstore::Schema::decode(std::string_view(static_cast<const char*>(blob.buf), blob.len));
        n->blob = PyBytes_FromStringAndSize(static_cast<const char*>(blob.buf), blob.len);
        for (std::size_t i = 0; i < n->schema->size(); ++i) {
            const auto& f = n->schema->field(i);
            FieldInfo fi;
            fi.name = PyUnicode_FromStringAndSize(f.name.data(), static_cast<Py_ssize_t>(f.name.size()));
            if (fi.name == nullptr) throw nb::python_error();
            PyUnicode_InternInPlace(&fi.name);
            fi.type = f.type;
            fi.width = mmstore::fixed_width(f.type);
            fi.row_off = n->schema->row_offset(i);
            n->fields.push_back(fi);
        }
        self->n = n.release();
    } catch (nb::python_error& e) {
        PyBuffer_Release(&blob);
        Py_DECREF(self);
        e.restore();
        return nullptr;
    } catch (...) {
        PyBuffer_Release(&blob);
        Py_DECREF(self);
        error_from_exception();
        return nullptr;
    }
    PyBuffer_Release(&blob);
    return reinterpret_cast<PyObject*>(self);
}

// Garbage collection: a schema holds its struct class (factory), whose methods hold their module's globals,
// which hold the class and whatever handles the module keeps (a Dict in a script's globals). Unless the
// collector can see these references the cycle is never freed, the handles in it are never closed, and
// nanobind reports them as leaked at exit. So _SchemaNative, _Field and the record images traverse what they
// hold, and so do proxies and record iterators (a proxy in a script's globals holds its schema too). Proxies
// and iterators have no tp_clear: they never start a cycle of their own, and the collector breaks every cycle
// through them by clearing the schema or the image on it.
int schema_traverse(PyObject* o, visitproc visit, void* arg) {
    Py_VISIT(Py_TYPE(o));
    auto* self = reinterpret_cast<SchemaObj*>(o);
    if (self->n) {
        for (auto& f : self->n->fields) Py_VISIT(f.nested);
        Py_VISIT(self->n->proxy_cls);
        Py_VISIT(self->n->coerce);
        Py_VISIT(self->n->factory);
    }
    return 0;
}

int schema_clear(PyObject* o) {
    auto* self = reinterpret_cast<SchemaObj*>(o);
    if (self->n) {
        for (auto& f : self->n->fields) Py_CLEAR(f.nested);
        Py_CLEAR(self->n->proxy_cls);
        Py_CLEAR(self->n->coerce);
        Py_CLEAR(self->n->factory);
    }
    return 0;
}

void schema_dealloc(PyObject* o) {
    PyObject_GC_UnTrack(o);
    auto* self = reinterpret_cast<SchemaObj*>(o);
    if (self->n) {
        for (auto& f : self->n->fields) {
            Py_XDECREF(f.name);
            Py_XDECREF(f.nested);
        }
        Py_XDECREF(self->n->proxy_cls);
        Py_XDECREF(self->n->coerce);
        Py_XDECREF(self->n->blob);
        Py_XDECREF(self->n->factory);
        delete self->n;
    }
    PyTypeObject* tp = Py_TYPE(o);
    tp->tp_free(o);
    Py_DECREF(tp);
}

// ---------------------------------------------------------------------------------------------------------
// Packing Python objects into rows

// The value of field `name` of `obj` (new reference), nullptr with no error when missing, or nullptr with
// an error set.
bool family_tag_ok(FieldType t, std::uint8_t tg) {
    switch (t) {
        case FieldType::kStr: return (tg >= tag::kShortStr && tg < tag::kShortStr + 32) || tg == tag::kStr;
        case FieldType::kBytes: return (tg >= tag::kShortBytes && tg < tag::kShortBytes + 32) || tg == tag::kBytes;
        case FieldType::kTuple: return tg == tag::kTuple;
        case FieldType::kList: return tg == tag::kList;
        case FieldType::kDict: return tg == tag::kDict;
        case FieldType::kFrozenSet: return tg == tag::kFrozenSet;
        case FieldType::kDate: return tg == tag::kDate;
        case FieldType::kDateTime: return tg == tag::kDateTime;
        case FieldType::kDecimal: return tg == tag::kDecimal;
        case FieldType::kNdArray: return tg == tag::kNdArray;
        default: return true;
    }
}

void type_error(const FieldInfo& fi, PyObject* v) {
    PyErr_Format(PyExc_TypeError, "field '%U' (%s) cannot hold a value of type %s", fi.name,
                 mmstore::field_type_name(fi.type), Py_TYPE(v)->tp_name);
}

// `value`: obj is the value of the schema's only field (a Mapping's plain values), not a record.
bool pack_row(SchemaObj* so, PyObject* obj, std::string& out, int depth, bool value = false);

bool store_fixed(const FieldInfo& fi, PyObject* v, char* p) {
    switch (fi.type) {
        case FieldType::kFloat64: case FieldType::kFloat32: {
            const double d = PyFloat_CheckExact(v) ? PyFloat_AS_DOUBLE(v) : PyFloat_AsDouble(v);
            if (d == -1.0 && PyErr_Occurred()) {
                if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                    PyErr_Clear();
                    type_error(fi, v);
                }
                return false;
            }
            if (fi.type == FieldType::kFloat64) std::memcpy(p, &d, 8);
            else {
                const float f = static_cast<float>(d);
                std::memcpy(p, &f, 4);
            }
            return true;
        }
        case FieldType::kUInt64: {
            if (!PyLong_Check(v) && !PyIndex_Check(v)) {
                type_error(fi, v);
                return false;
            }
            PyObject* iv = PyNumber_Index(v);
            if (iv == nullptr) return false;
            const unsigned long long u = PyLong_AsUnsignedLongLong(iv);
            Py_DECREF(iv);
            if (u == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
                PyErr_Clear();
                PyErr_Format(PyExc_OverflowError, "field '%U' (uint64): value out of range", fi.name);
                return false;
            }
            std::memcpy(p, &u, 8);
            return true;
        }
        default: break;
    }
    // Exact ints and anything with __index__ (numpy integers, IntEnum); floats and strs are refused.
    PyObject* iv = PyLong_Check(v) ? (Py_INCREF(v), v) : PyIndex_Check(v) ? PyNumber_Index(v) : nullptr;
    if (iv == nullptr) {
        if (!PyErr_Occurred()) type_error(fi, v);
        return false;
    }
    int overflow = 0;
    const long long x = PyLong_AsLongLongAndOverflow(iv, &overflow);
    Py_DECREF(iv);
    if (x == -1 && PyErr_Occurred()) return false;
    long long lo, hi;
    switch (fi.type) {
        case FieldType::kBool: lo = 0; hi = 1; break;
        case FieldType::kInt8: lo = INT8_MIN; hi = INT8_MAX; break;
        case FieldType::kInt16: lo = INT16_MIN; hi = INT16_MAX; break;
        case FieldType::kInt32: lo = INT32_MIN; hi = INT32_MAX; break;
        case FieldType::kUInt8: lo = 0; hi = UINT8_MAX; break;
        case FieldType::kUInt16: lo = 0; hi = UINT16_MAX; break;
        case FieldType::kUInt32: lo = 0; hi = UINT32_MAX; break;
        default: lo = LLONG_MIN; hi = LLONG_MAX; break;
    }
    if (overflow || x < lo || x > hi) {
        PyErr_Format(PyExc_OverflowError, "field '%U' (%s): %R is out of range", fi.name, mmstore::field_type_name(fi.type), v);
        return false;
    }
    std::memcpy(p, &x, fi.width);
    return true;
}

bool encode_var(SchemaObj* so, const FieldInfo& fi, PyObject* v, std::string& out, int depth) {
    const CodecFlags flags{true};
    if (fi.type == FieldType::kRecord) {
        if (depth > 32) {
            PyErr_SetString(PyExc_RecursionError, "mmstore: records nested deeper than 32 levels");
            return false;
        }
        auto* nested = reinterpret_cast<SchemaObj*>(fi.nested);
        if (nested == nullptr) {
            PyErr_Format(PyExc_RuntimeError, "nested schema of field '%U' not bound", fi.name);
            return false;
        }
        out.push_back(static_cast<char>(tag::kRecord));
        const std::uint32_t code = nested->n->schema->type_code();
        out.append(reinterpret_cast<const char*>(&code), 4);
        const std::size_t len_at = out.size();
        out.append(4, '\0');
        if (!pack_row(nested, v, out, depth + 1)) return false;
        const auto len = static_cast<std::uint32_t>(out.size() - len_at - 4);
        std::memcpy(&out[len_at], &len, 4);
        return true;
    }
    const std::size_t at = out.size();
    if (fi.type == FieldType::kStr && PyUnicode_CheckExact(v)) {
        Py_ssize_t n;
        const char* s = PyUnicode_AsUTF8AndSize(v, &n);
        if (s != nullptr) {
            if (n <= 31) out.push_back(static_cast<char>(tag::kShortStr + n));
            else {
                out.push_back(static_cast<char>(tag::kStr));
                const auto l = static_cast<std::uint32_t>(n);
                out.append(reinterpret_cast<const char*>(&l), 4);
            }
            out.append(s, static_cast<std::size_t>(n));
            return true;
        }
        PyErr_Clear();
    }
    if (encode(v, out, flags, false)) {
        if (family_tag_ok(fi.type, static_cast<std::uint8_t>(out[at]))) return true;
    } else if (fi.type == FieldType::kObject) {
        return false;
    } else {
        PyErr_Clear();  // a typed field: the coercion below decides (and raises TypeError if it cannot)
    }
    out.resize(at);
    if (so->n->coerce == nullptr) {
        type_error(fi, v);
        return false;
    }
    PyObject* c = PyObject_CallFunction(so->n->coerce, "iO", static_cast<int>(fi.type), v);
    if (c == nullptr) return false;
    const bool ok = encode(c, out, flags, false);
    Py_DECREF(c);
    if (!ok) return false;
    if (!family_tag_ok(fi.type, static_cast<std::uint8_t>(out[at]))) {
        out.resize(at);
        type_error(fi, v);
        return false;
    }
    return true;
}

// How pack_row reads the fields of an item. Accepted: an instance of the schema's class or a record proxy
// (attributes), a mapping of field names (every key must be a field), a tuple or list of exactly one value
// per field in order, or another object that has at least one of the fields as an attribute (duck typing:
// dataclasses of a compatible class, namedtuples). Anything else (a number, a str, a mapping with an
// unknown key, a sequence of the wrong length) is a TypeError: storing it as an empty record would lose it.
// kValue: the item is the value of a one-field schema itself (pack_row(..., value=true)).
enum class Shape { kAttrs, kDict, kMapping, kSequence, kValue, kBad };

std::string schema_label(SchemaObj* so) {
    const auto& n = *so->n;
    if (n.factory != nullptr && PyType_Check(n.factory)) {
        const char* t = reinterpret_cast<PyTypeObject*>(n.factory)->tp_name;
        const char* dot = std::strrchr(t, '.');
        return dot != nullptr ? dot + 1 : t;
    }
    return n.schema->name();
}

Shape shape_of(SchemaObj* so, PyObject* obj) {
    const auto& n = *so->n;
    if (PyDict_Check(obj)) return Shape::kDict;
    if (n.factory != nullptr && PyType_Check(n.factory) && PyObject_TypeCheck(obj, reinterpret_cast<PyTypeObject*>(n.factory)))
        return Shape::kAttrs;
    if (PyObject_TypeCheck(obj, g_proxy_type)) return Shape::kAttrs;
    const bool scalar = obj == Py_None || PyUnicode_Check(obj) || PyBytes_Check(obj) || PyByteArray_Check(obj) ||
                        PyLong_Check(obj) || PyFloat_Check(obj) || PyComplex_Check(obj) || PyMemoryView_Check(obj);
    if (!scalar) {
        if (PyList_Check(obj)) return Shape::kSequence;
        if (PyTuple_CheckExact(obj)) return Shape::kSequence;  // (no _fields lookup: it raises, slowly)
        if (PyTuple_Check(obj)) {
            // A namedtuple names its fields: read them by name.
            if (PyObject_HasAttrString(obj, "_fields")) return Shape::kAttrs;
            return Shape::kSequence;
        }
        if (PyMapping_Check(obj) && !PySequence_Check(obj) && PyObject_HasAttrString(obj, "keys")) return Shape::kMapping;
        for (const FieldInfo& fi : n.fields)
            if (PyObject_HasAttr(obj, fi.name)) return Shape::kAttrs;
    }
    PyErr_Format(PyExc_TypeError,
                 "cannot pack %s as a record of %s: expected an instance of %s, a mapping of its field names or a "
                 "sequence of %zd values",
                 Py_TYPE(obj)->tp_name, schema_label(so).c_str(), schema_label(so).c_str(),
                 static_cast<Py_ssize_t>(n.fields.size()));
    return Shape::kBad;
}

// TypeError naming the first key of mapping `obj` that is not a field of the schema (it has one).
void unknown_key_error(SchemaObj* so, PyObject* obj) {
    PyObject* keys = PyMapping_Keys(obj);
    if (keys == nullptr) return;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); ++i) {
        PyObject* k = PyList_GET_ITEM(keys, i);
        bool known = false;
        for (const FieldInfo& fi : so->n->fields) {
            const int eq = PyObject_RichCompareBool(k, fi.name, Py_EQ);
            if (eq < 0) {
                Py_DECREF(keys);
                return;
            }
            if (eq) {
                known = true;
                break;
            }
        }
        if (!known) {
            PyErr_Format(PyExc_TypeError, "%s has no field %R", schema_label(so).c_str(), k);
            Py_DECREF(keys);
            return;
        }
    }
    Py_DECREF(keys);
    PyErr_Format(PyExc_TypeError, "a mapping with keys that are not fields of %s", schema_label(so).c_str());
}

// Field `i` of `obj` read according to `shape` (a new reference), or nullptr: absent (no error) or failed.
PyObject* field_value(SchemaObj* so, Shape shape, PyObject* obj, std::size_t i) {
    PyObject* name = so->n->fields[i].name;
    switch (shape) {
        case Shape::kDict: {
            PyObject* v = PyDict_GetItemWithError(obj, name);
            Py_XINCREF(v);
            return v;
        }
        case Shape::kMapping: {
            PyObject* v = PyObject_GetItem(obj, name);
            if (v == nullptr && PyErr_ExceptionMatches(PyExc_KeyError)) PyErr_Clear();
            return v;
        }
        case Shape::kSequence:
            return PySequence_GetItem(obj, static_cast<Py_ssize_t>(i));
        case Shape::kValue:
            Py_INCREF(obj);
            return obj;
        default: {
            PyObject* v = PyObject_GetAttr(obj, name);
            if (v == nullptr && PyErr_ExceptionMatches(PyExc_AttributeError)) PyErr_Clear();
            return v;
        }
    }
}

// Appends the packed row of `obj` (see Shape for what it may be) to `out`.
bool pack_row(SchemaObj* so, PyObject* obj, std::string& out, int depth, bool value) {
    const auto& s = *so->n->schema;
    const std::size_t nf = so->n->fields.size();
    const Shape shape = value && nf == 1 ? Shape::kValue : shape_of(so, obj);
    if (shape == Shape::kBad) return false;
    if (shape == Shape::kSequence && PySequence_Size(obj) != static_cast<Py_ssize_t>(nf)) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "a record of %s has %zd fields, but the %s has %zd values",
                         schema_label(so).c_str(), static_cast<Py_ssize_t>(nf), Py_TYPE(obj)->tp_name,
                         PySequence_Size(obj));
        return false;
    }
    const std::size_t start = out.size();
    out.resize(start + s.row_header_size(), '\0');
    Py_ssize_t found = 0;  // keys of a mapping that name a field
    for (std::size_t i = 0; i < nf; ++i) {
        const FieldInfo& fi = so->n->fields[i];
        PyObject* v = field_value(so, shape, obj, i);
        if (v == nullptr) {
            if (PyErr_Occurred()) return false;
            continue;
        }
        ++found;
        if (v == Py_None) {
            Py_DECREF(v);
            if (so->n->missing_raises && !fi.width) {  // a present None: its slot points at a kNone byte
                const std::uint64_t rel = out.size() - start;
                if (rel > 0xFFFFFFFFu) {
                    PyErr_SetString(PyExc_OverflowError, "a packed record exceeds 4 GiB");
                    return false;
                }
                const auto r32 = static_cast<std::uint32_t>(rel);
                out.push_back('\0');
                std::memcpy(&out[start + fi.row_off], &r32, 4);
                out[start + 4 + i / 8] = static_cast<char>(out[start + 4 + i / 8] | (1 << (i % 8)));
            }
            continue;
        }
        bool ok;
        if (fi.width) {
            ok = store_fixed(fi, v, &out[start + fi.row_off]);
        } else {
            const std::uint64_t rel = out.size() - start;
            if (rel > 0xFFFFFFFFu) {
                Py_DECREF(v);
                PyErr_SetString(PyExc_OverflowError, "a packed record exceeds 4 GiB");
                return false;
            }
            const auto r32 = static_cast<std::uint32_t>(rel);
            ok = encode_var(so, fi, v, out, depth);
            if (ok) std::memcpy(&out[start + fi.row_off], &r32, 4);
        }
        Py_DECREF(v);
        if (!ok) return false;
        out[start + 4 + i / 8] = static_cast<char>(out[start + 4 + i / 8] | (1 << (i % 8)));
    }
    if (shape == Shape::kDict || shape == Shape::kMapping) {
        const Py_ssize_t size = shape == Shape::kDict ? PyDict_GET_SIZE(obj) : PyObject_Size(obj);
        if (size < 0) return false;
        if (size > found) {
            unknown_key_error(so, obj);
            return false;
        }
    }
    const std::uint64_t total = out.size() - start;
    if (total > 0xFFFFFFFFu) {
        PyErr_SetString(PyExc_OverflowError, "a packed record exceeds 4 GiB");
        return false;
    }
    const auto t32 = static_cast<std::uint32_t>(total);
    std::memcpy(&out[start], &t32, 4);
    return true;
}

// ---------------------------------------------------------------------------------------------------------
// Proxies

struct ProxyObj {
    PyObject_HEAD
    PyObject* so;     // _SchemaNative (strong)
    PyObject* owner;  // memory owner (strong)
    const ColumnSet* cols;
    std::uint64_t idx;
    const char* row;
    std::uint32_t row_len;
    const CodecFlags* flags;
};

PyObject* make_proxy(PyObject* so, PyObject* owner, const CodecFlags* flags) {
    PyObject* cls = sn(so).proxy_cls;
    if (cls == nullptr) {
        PyErr_SetString(PyExc_RuntimeError, "schema has no proxy class");
        return nullptr;
    }
    auto* tp = reinterpret_cast<PyTypeObject*>(cls);
    // (Tried: a free list of dead proxies. No measurable gain over pymalloc for `arr[i].a`.)
    auto* p = reinterpret_cast<ProxyObj*>(tp->tp_alloc(tp, 0));
    if (p == nullptr) return nullptr;
    Py_INCREF(so);
    Py_INCREF(owner);
    p->so = so;
    p->owner = owner;
    p->flags = flags;
    return reinterpret_cast<PyObject*>(p);
}

PyObject* col_proxy(PyObject* so, PyObject* owner, const CodecFlags* flags, const ColumnSet* cols, std::uint64_t idx) {
    PyObject* o = make_proxy(so, owner, flags);
    if (o) {
        auto* p = reinterpret_cast<ProxyObj*>(o);
        p->cols = cols;
        p->idx = idx;
    }
    return o;
}

// A row proxy over [row, row+avail): validates the row header.
PyObject* row_proxy(PyObject* so, PyObject* owner, const CodecFlags* flags, const char* row, std::size_t avail) {
    try {
        auto v = mmstore::RecordView::from_row(*sn(so).schema, std::string_view(row, avail));
        (void)v;
    } catch (...) {
        error_from_exception();
        return nullptr;
    }
    PyObject* o = make_proxy(so, owner, flags);
    if (o) {
        auto* p = reinterpret_cast<ProxyObj*>(o);
        p->row = row;
        p->row_len = load<std::uint32_t>(row);
    }
    return o;
}

int proxy_traverse(PyObject* o, visitproc visit, void* arg) {
    Py_VISIT(Py_TYPE(o));
    auto* p = reinterpret_cast<ProxyObj*>(o);
    Py_VISIT(p->so);
    Py_VISIT(p->owner);
    return 0;
}

void proxy_dealloc(PyObject* o) {
    PyObject_GC_UnTrack(o);
    auto* p = reinterpret_cast<ProxyObj*>(o);
    Py_CLEAR(p->so);
    Py_CLEAR(p->owner);
    PyTypeObject* tp = Py_TYPE(o);
    tp->tp_free(o);
    Py_DECREF(tp);
}

PyObject* box_fixed(FieldType t, const char* q) {
    switch (t) {
        case FieldType::kInt8: return PyLong_FromLong(load<std::int8_t>(q));
        case FieldType::kInt16: return PyLong_FromLong(load<std::int16_t>(q));
        case FieldType::kInt32: return PyLong_FromLong(load<std::int32_t>(q));
        case FieldType::kInt64: return PyLong_FromLongLong(load<std::int64_t>(q));
        case FieldType::kUInt8: return PyLong_FromLong(load<std::uint8_t>(q));
        case FieldType::kUInt16: return PyLong_FromLong(load<std::uint16_t>(q));
        case FieldType::kUInt32: return PyLong_FromUnsignedLong(load<std::uint32_t>(q));
        case FieldType::kUInt64: return PyLong_FromUnsignedLongLong(load<std::uint64_t>(q));
        case FieldType::kFloat32: return PyFloat_FromDouble(load<float>(q));
        case FieldType::kFloat64: return PyFloat_FromDouble(load<double>(q));
        case FieldType::kBool: return PyBool_FromLong(load<std::uint8_t>(q) != 0);
        default: Py_RETURN_NONE;
    }
}

// Decodes the codec value `v` (inside the memory of `owner`) for field `fi`.
PyObject* decode_value(const ProxyObj* p, const FieldInfo& fi, std::string_view v) {
    if (v.empty() || (v.size() == 1 && v[0] == 0)) Py_RETURN_NONE;
    const auto t = static_cast<std::uint8_t>(v[0]);
    if (t == tag::kRecord && fi.nested != nullptr) {
        if (v.size() < 9) {
            raise_error(static_cast<int>(ErrorCode::kCorrupt), "", "corrupt nested record");
            return nullptr;
        }
        return row_proxy(fi.nested, p->owner, p->flags, v.data() + 9, v.size() - 9);
    }
    if (t >= tag::kShortStr && t < tag::kShortStr + 32) {
        const std::size_t n = t - tag::kShortStr;
        const auto* d = reinterpret_cast<const unsigned char*>(v.data() + 1);
        bool ascii = true;
        for (std::size_t k = 0; k < n; ++k) ascii &= d[k] < 128;
        if (ascii) {
            PyObject* s = PyUnicode_New(static_cast<Py_ssize_t>(n), 127);
            if (s != nullptr) std::memcpy(PyUnicode_DATA(s), d, n);
            return s;
        }
    }
    return decode(v.data(), v.size(), *p->flags);
}

// A str or bytes field stored in Arrow layout (format version 3): the bytes, validated at open.
PyObject* read_arrow(const ColumnSet* c, const FieldInfo& fi, std::size_t i, std::uint64_t idx) {
    if (!c->present(i, idx)) Py_RETURN_NONE;
    const std::string_view v = c->var_bytes(i, idx);
    if (fi.type == FieldType::kBytes) return PyBytes_FromStringAndSize(v.data(), static_cast<Py_ssize_t>(v.size()));
    // ASCII (the common case) needs no decoder: check 8 bytes at a time, then copy into a compact str.
    const auto* d = reinterpret_cast<const unsigned char*>(v.data());
    const std::size_t n = v.size();
    std::uint64_t hi = 0;
    std::size_t k = 0;
    for (; k + 8 <= n; k += 8) hi |= load<std::uint64_t>(v.data() + k);
    for (; k < n; ++k) hi |= d[k];
    if ((hi & 0x8080808080808080ull) == 0) {
        PyObject* s = PyUnicode_New(static_cast<Py_ssize_t>(n), 127);
        if (s != nullptr) std::memcpy(PyUnicode_DATA(s), d, n);
        return s;
    }
    return PyUnicode_DecodeUTF8(v.data(), static_cast<Py_ssize_t>(n), "strict");
}

PyObject* read_field(const ProxyObj* p, std::size_t i) {
    const SchemaNative& n = sn(p->so);
    const FieldInfo& fi = n.fields[i];
    if (p->row != nullptr) {
        const char* row = p->row;
        if (!(static_cast<std::uint8_t>(row[4 + i / 8]) >> (i % 8) & 1)) Py_RETURN_NONE;
        if (fi.width) return box_fixed(fi.type, row + fi.row_off);
        const auto at = load<std::uint32_t>(row + fi.row_off);
        if (at == 0) Py_RETURN_NONE;
        try {
            if (at < n.schema->row_header_size())
                throw mmstore::FormatError(ErrorCode::kCorrupt, "", "corrupt record: value offset inside the fixed part");
            const std::size_t end = mmstore::detail::value_end(row, p->row_len, at);
            return decode_value(p, fi, std::string_view(row + at, end - at));
        } catch (...) {
            error_from_exception();
            return nullptr;
        }
    }
    const ColumnSet* c = p->cols;
    if (fi.width) {
        const std::uint8_t* pres = c->presence[i];
        if (pres != nullptr && !(pres[p->idx / 8] >> (p->idx % 8) & 1)) Py_RETURN_NONE;
        return box_fixed(fi.type, c->data[i] + p->idx * fi.width);
    }
    if (c->off_width[i]) return read_arrow(c, fi, i, p->idx);
    try {
        const auto v = c->heap_value(load<std::uint64_t>(c->data[i] + p->idx * 8));
        return decode_value(p, fi, v);
    } catch (...) {
        error_from_exception();
        return nullptr;
    }
}

bool is_proxy(PyObject* o) { return PyObject_TypeCheck(o, g_proxy_type); }

// Whether field i of the proxy holds a value (None stored as a value counts); used only for missing_raises.
bool field_present(const ProxyObj* p, std::size_t i) {
    const FieldInfo& fi = sn(p->so).fields[i];
    if (p->row != nullptr) {
        if (!(static_cast<std::uint8_t>(p->row[4 + i / 8]) >> (i % 8) & 1)) return false;
        return fi.width != 0 || load<std::uint32_t>(p->row + fi.row_off) != 0;
    }
    const ColumnSet* c = p->cols;
    if (fi.width || c->off_width[i]) return c->present(i, p->idx);
    const auto off = load<std::uint64_t>(c->data[i] + p->idx * 8);
    return !(off < c->heap_len && c->heap[off] == 0);  // a column stores an unset value as a kNone byte
}

PyObject* proxy_values(PyObject* self, PyObject*) {
    auto* p = reinterpret_cast<ProxyObj*>(self);
    const std::size_t nf = sn(p->so).fields.size();
    PyObject* t = PyTuple_New(static_cast<Py_ssize_t>(nf));
    if (t == nullptr) return nullptr;
    for (std::size_t i = 0; i < nf; ++i) {
        PyObject* v = read_field(p, i);
        if (v == nullptr) {
            Py_DECREF(t);
            return nullptr;
        }
        PyTuple_SET_ITEM(t, static_cast<Py_ssize_t>(i), v);
    }
    return t;
}

PyObject* proxy_schema_native(PyObject* self, PyObject*) {
    auto* p = reinterpret_cast<ProxyObj*>(self);
    Py_INCREF(p->so);
    return p->so;
}

// The packed row of this record (bytes).
PyObject* proxy_row(PyObject* self, PyObject*) {
    auto* p = reinterpret_cast<ProxyObj*>(self);
    if (p->row != nullptr) return PyBytes_FromStringAndSize(p->row, p->row_len);
    try {
        // Column-backed: the same walk as RecordView::to_row, from the proxy's own pointers.
        const auto& s = *sn(p->so).schema;
        std::string row(s.row_header_size(), '\0');
        const ColumnSet* c = p->cols;
        for (std::size_t i = 0; i < s.size(); ++i) {
            const auto& fi = sn(p->so).fields[i];
            if (fi.width) {
                const std::uint8_t* pres = c->presence[i];
                if (pres != nullptr && !(pres[p->idx / 8] >> (p->idx % 8) & 1)) continue;
                std::memcpy(&row[fi.row_off], c->data[i] + p->idx * fi.width, fi.width);
            } else if (c->off_width[i]) {
                if (!c->present(i, p->idx)) continue;
                const auto at = static_cast<std::uint32_t>(row.size());
                std::memcpy(&row[fi.row_off], &at, 4);
                const auto raw = c->var_bytes(i, p->idx);
                codec::encode(fi.type == FieldType::kStr ? codec::Value::str(raw) : codec::Value::bytes(raw), row);
            } else {
                const auto val = c->heap_value(load<std::uint64_t>(c->data[i] + p->idx * 8));
                if (val.size() == 1 && val[0] == 0) continue;
                const auto at = static_cast<std::uint32_t>(row.size());
                std::memcpy(&row[fi.row_off], &at, 4);
                row += val;
            }
            row[4 + i / 8] = static_cast<char>(row[4 + i / 8] | (1 << (i % 8)));
        }
        const auto total = static_cast<std::uint32_t>(row.size());
        std::memcpy(row.data(), &total, 4);
        return PyBytes_FromStringAndSize(row.data(), static_cast<Py_ssize_t>(row.size()));
    } catch (...) {
        error_from_exception();
        return nullptr;
    }
}

PyMethodDef proxy_methods[] = {
    {"_values", proxy_values, METH_NOARGS, "Tuple of every field value, in schema order."},
    {"_schema_native", proxy_schema_native, METH_NOARGS, nullptr},
    {"_row", proxy_row, METH_NOARGS, "The record packed as a row (bytes)."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot proxy_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(proxy_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(proxy_traverse)},
    {Py_tp_methods, proxy_methods},
    {Py_tp_doc, const_cast<char*>("Base of record proxies: fields read straight from the stored bytes.")},
    {0, nullptr},
};
PyType_Spec proxy_spec = {"mmstore._core.RecordProxy", sizeof(ProxyObj), 0,
                          Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
                          proxy_slots};

// _Field(schema_native, index): the descriptor of one field.
struct FieldObj {
    PyObject_HEAD
    PyObject* so;
    std::size_t index;
};

PyObject* field_new(PyTypeObject* type, PyObject* args, PyObject*) {
    PyObject* so;
    Py_ssize_t index;
    if (!PyArg_ParseTuple(args, "O!n", g_schema_type, &so, &index)) return nullptr;
    if (index < 0 || static_cast<std::size_t>(index) >= sn(so).fields.size()) {
        PyErr_SetString(PyExc_IndexError, "field index out of range");
        return nullptr;
    }
    auto* f = reinterpret_cast<FieldObj*>(type->tp_alloc(type, 0));
    if (f == nullptr) return nullptr;
    Py_INCREF(so);
    f->so = so;
    f->index = static_cast<std::size_t>(index);
    return reinterpret_cast<PyObject*>(f);
}

int field_traverse(PyObject* o, visitproc visit, void* arg) {
    Py_VISIT(Py_TYPE(o));
    Py_VISIT(reinterpret_cast<FieldObj*>(o)->so);
    return 0;
}

int field_clear(PyObject* o) {
    Py_CLEAR(reinterpret_cast<FieldObj*>(o)->so);
    return 0;
}

void field_dealloc(PyObject* o) {
    PyObject_GC_UnTrack(o);
    Py_XDECREF(reinterpret_cast<FieldObj*>(o)->so);
    PyTypeObject* tp = Py_TYPE(o);
    tp->tp_free(o);
    Py_DECREF(tp);
}

PyObject* field_get(PyObject* self, PyObject* obj, PyObject*) {
    if (obj == nullptr || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    auto* f = reinterpret_cast<FieldObj*>(self);
    if (!is_proxy(obj) || reinterpret_cast<ProxyObj*>(obj)->so != f->so) {
        PyErr_SetString(PyExc_TypeError, "field descriptor used on a proxy of another schema");
        return nullptr;
    }
    auto* p = reinterpret_cast<ProxyObj*>(obj);
    if (sn(p->so).missing_raises && !field_present(p, f->index)) {
        const Py_ssize_t m = sn(p->so).none_mask;
        if (m >= 0 && sn(p->so).fields[f->index].width && field_present(p, static_cast<std::size_t>(m))) {
            PyObject* mask = read_field(p, static_cast<std::size_t>(m));
            if (mask == nullptr) return nullptr;
            PyObject* sh = PyLong_FromSsize_t(static_cast<Py_ssize_t>(f->index));
            PyObject* shifted = sh && PyLong_Check(mask) ? PyNumber_Rshift(mask, sh) : nullptr;
            Py_XDECREF(sh);
            Py_DECREF(mask);
            long b = 0;
            if (shifted != nullptr) {
                int overflow = 0;
                const long long lo = PyLong_AsLongLongAndOverflow(shifted, &overflow);  // only the low bit matters
                b = overflow ? 0 : static_cast<long>(lo & 1);
                if (overflow) {  // a mask wider than 64 bits: take its low bit exactly
                    PyObject* one = PyLong_FromLong(1);
                    PyObject* low = one ? PyNumber_And(shifted, one) : nullptr;
                    b = low ? PyLong_AsLong(low) : 0;
                    Py_XDECREF(low);
                    Py_XDECREF(one);
                }
                Py_DECREF(shifted);
            }
            PyErr_Clear();  // a malformed mask is no mask: the field reads as unset
            if (b == 1) Py_RETURN_NONE;  // set to None: present, as in sharedbuffers
        }
        PyErr_Format(PyExc_AttributeError, "field '%U' of this %s record is not set", sn(p->so).fields[f->index].name,
                     Py_TYPE(obj)->tp_name);
        return nullptr;
    }
    return read_field(p, f->index);
}

int field_set(PyObject*, PyObject*, PyObject*) {
    PyErr_SetString(PyExc_AttributeError, "record proxies are read-only (use .copy() for a mutable object)");
    return -1;
}

PyType_Slot field_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(field_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(field_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(field_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(field_clear)},
    {Py_tp_descr_get, reinterpret_cast<void*>(field_get)},
    {Py_tp_descr_set, reinterpret_cast<void*>(field_set)},
    {0, nullptr},
};
PyType_Spec field_spec = {"mmstore._core._Field", sizeof(FieldObj), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, field_slots};

// ---------------------------------------------------------------------------------------------------------
// Buffer owner for unpack_from

struct BufOwner {
    PyObject_HEAD
    Py_buffer view;
    CodecFlags flags;
};

void bufowner_dealloc(PyObject* o) {
    PyBuffer_Release(&reinterpret_cast<BufOwner*>(o)->view);
    PyTypeObject* tp = Py_TYPE(o);
    tp->tp_free(o);
    Py_DECREF(tp);
}

PyType_Slot bufowner_slots[] = {{Py_tp_dealloc, reinterpret_cast<void*>(bufowner_dealloc)}, {0, nullptr}};
PyType_Spec bufowner_spec = {"mmstore._core._BufferOwner", sizeof(BufOwner), 0, Py_TPFLAGS_DEFAULT, bufowner_slots};

// ---------------------------------------------------------------------------------------------------------
// _SchemaNative methods

PyObject* schema_pack(PyObject* self, PyObject* obj) {
    std::string out;
    if (!pack_row(reinterpret_cast<SchemaObj*>(self), obj, out, 0)) return nullptr;
    return PyBytes_FromStringAndSize(out.data(), static_cast<Py_ssize_t>(out.size()));
}

PyObject* schema_pack_into(PyObject* self, PyObject* args) {
    PyObject* obj;
    Py_buffer buf;
    Py_ssize_t offset = 0;
    if (!PyArg_ParseTuple(args, "Ow*|n", &obj, &buf, &offset)) return nullptr;
    std::string out;
    PyObject* r = nullptr;
    if (pack_row(reinterpret_cast<SchemaObj*>(self), obj, out, 0)) {
        if (offset < 0 || offset > buf.len || static_cast<std::size_t>(buf.len - offset) < out.size()) {
            PyErr_Format(PyExc_ValueError, "pack_into: %zd bytes do not fit at offset %zd of a %zd-byte buffer",
                         static_cast<Py_ssize_t>(out.size()), offset, buf.len);
        } else {
            std::memcpy(static_cast<char*>(buf.buf) + offset, out.data(), out.size());
            r = PyLong_FromSsize_t(static_cast<Py_ssize_t>(out.size()));
        }
    }
    PyBuffer_Release(&buf);
    return r;
}

PyObject* schema_unpack_from(PyObject* self, PyObject* args) {
    PyObject* obj;
    Py_ssize_t offset = 0;
    int allow_pickle = 1;
    if (!PyArg_ParseTuple(args, "O|np", &obj, &offset, &allow_pickle)) return nullptr;
    auto* owner = reinterpret_cast<BufOwner*>(g_bufowner_type->tp_alloc(g_bufowner_type, 0));
    if (owner == nullptr) return nullptr;
    if (PyObject_GetBuffer(obj, &owner->view, PyBUF_SIMPLE) != 0) {
        owner->view.obj = nullptr;
        Py_DECREF(owner);
        return nullptr;
    }
    owner->flags = CodecFlags{allow_pickle != 0};
    if (offset < 0 || offset > owner->view.len) {
        Py_DECREF(owner);
        PyErr_SetString(PyExc_ValueError, "unpack_from: offset outside the buffer");
        return nullptr;
    }
    PyObject* r = row_proxy(self, reinterpret_cast<PyObject*>(owner), &owner->flags,
                            static_cast<const char*>(owner->view.buf) + offset,
                            static_cast<std::size_t>(owner->view.len - offset));
    Py_DECREF(owner);
    return r;
}

PyObject* schema_bind(PyObject* self, PyObject* args) {
    PyObject *proxy_cls, *coerce, *factory;
    if (!PyArg_ParseTuple(args, "OOO", &proxy_cls, &coerce, &factory)) return nullptr;
    if (!PyType_Check(proxy_cls) || !PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(proxy_cls), g_proxy_type)) {
        PyErr_SetString(PyExc_TypeError, "proxy class must derive from RecordProxy");
        return nullptr;
    }
    auto& n = sn(self);
    Py_INCREF(proxy_cls);
    Py_XSETREF(n.proxy_cls, proxy_cls);
    Py_INCREF(coerce);
    Py_XSETREF(n.coerce, coerce);
    Py_INCREF(factory);
    Py_XSETREF(n.factory, factory);
    Py_RETURN_NONE;
}

PyObject* schema_set_nested(PyObject* self, PyObject* args) {
    Py_ssize_t i;
    PyObject* nested;
    if (!PyArg_ParseTuple(args, "nO!", &i, g_schema_type, &nested)) return nullptr;
    auto& n = sn(self);
    if (i < 0 || static_cast<std::size_t>(i) >= n.fields.size() || n.fields[i].type != FieldType::kRecord) {
        PyErr_SetString(PyExc_ValueError, "set_nested: not a record field");
        return nullptr;
    }
    if (!(*n.schema->field(i).nested == *sn(nested).schema)) {
        PyErr_SetString(PyExc_ValueError, "set_nested: schema differs from the field's nested schema");
        return nullptr;
    }
    Py_INCREF(nested);
    Py_XSETREF(n.fields[i].nested, nested);
    Py_RETURN_NONE;
}

PyObject* schema_set_missing_raises(PyObject* self, PyObject* args) {
    int on = 0;
    Py_ssize_t mask = -1;
    if (!PyArg_ParseTuple(args, "p|n", &on, &mask)) return nullptr;
    auto& n = sn(self);
    if (mask >= 0 && (static_cast<std::size_t>(mask) >= n.fields.size() || n.fields[mask].width)) {
        PyErr_SetString(PyExc_ValueError, "set_missing_raises: the None mask must be a variable field");
        return nullptr;
    }
    n.missing_raises = on != 0;
    n.none_mask = mask;
    Py_RETURN_NONE;
}

PyObject* schema_blob(PyObject* self, PyObject*) {
    Py_INCREF(sn(self).blob);
    return sn(self).blob;
}

PyMethodDef schema_methods[] = {
    {"pack", schema_pack, METH_O, nullptr},
    {"pack_into", schema_pack_into, METH_VARARGS, nullptr},
    {"unpack_from", schema_unpack_from, METH_VARARGS, nullptr},
    {"bind", schema_bind, METH_VARARGS, nullptr},
    {"set_nested", schema_set_nested, METH_VARARGS, nullptr},
    {"blob", schema_blob, METH_NOARGS, nullptr},
    {"set_missing_raises", schema_set_missing_raises, METH_VARARGS, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot schema_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(schema_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(schema_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(schema_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(schema_clear)},
    {Py_tp_methods, schema_methods},
    {0, nullptr},
};
PyType_Spec schema_spec = {"mmstore._core._SchemaNative", sizeof(SchemaObj), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
                           schema_slots};

// ---------------------------------------------------------------------------------------------------------
// Opened images: shared state of _ArrayNative and _MappingNative

struct ImageState {
    std::unique_ptr<mmstore::RecordArray> array;
    std::unique_ptr<mmstore::Mapping> mapping;
    const ColumnSet* cols = nullptr;
    std::string_view image;
    Py_buffer view{};
    bool has_view = false;
    CodecFlags flags;
    // Set by mmstore.compat.sharedbuffers (_str_keys_as_bytes), whose string mappers key by bytes: lookups take
    // a str key as its UTF-8 bytes (surrogateescape), a bytearray or memoryview as its bytes, here in C++
    // rather than in a Python wrapper around every lookup (sharedbuffers' suite does tens of millions).
    bool str_keys_as_bytes = false;
    std::string path;
    PyObject* so = nullptr;  // bound _SchemaNative (strong)
    Py_ssize_t exports = 0;
    // close() only marks the handle: proxies and numpy views keep the memory (they hold this object), so
    // nothing dangles; the mapping goes away with the last reference.
    bool closed = false;
};

struct ImageObj {
    PyObject_HEAD
    ImageState* st;
};

inline ImageState& st_of(PyObject* o) { return *reinterpret_cast<ImageObj*>(o)->st; }

const ColumnSet* columns_of(const mmstore::RecordArray& a) { return &a.columns(); }
const ColumnSet* columns_of(const mmstore::Mapping& m) { return &m.columns(); }

// Opens an image: args (path, offset, length, allow_pickle) or (buffer=..., allow_pickle).
PyObject* image_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
    static const char* kw[] = {"path", "offset", "length", "buffer", "allow_pickle", nullptr};
    PyObject* path = Py_None;
    unsigned long long offset = 0, length = 0;
    PyObject* buffer = Py_None;
    int allow_pickle = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OKKOp", const_cast<char**>(kw), &path, &offset, &length, &buffer,
                                     &allow_pickle))
        return nullptr;
    auto* self = reinterpret_cast<ImageObj*>(type->tp_alloc(type, 0));
    if (self == nullptr) return nullptr;
    self->st = new ImageState();
    ImageState& st = *self->st;
    st.flags = CodecFlags{allow_pickle != 0};
    const bool is_map = PyType_IsSubtype(type, g_mapping_type);
    try {
        if (buffer != Py_None) {
            if (PyObject_GetBuffer(buffer, &st.view, PyBUF_SIMPLE) != 0) throw nb::python_error();
            st.has_view = true;
            st.path = "<buffer>";
            if (is_map) st.mapping = std::make_unique<mmstore::Mapping>(mmstore::Mapping::from_buffer(st.view.buf, st.view.len, st.path));
            else st.array = std::make_unique<mmstore::RecordArray>(mmstore::RecordArray::from_buffer(st.view.buf, st.view.len, st.path));
        } else {
            PyObject* fs = PyOS_FSPath(path);
            if (fs == nullptr) throw nb::python_error();
            PyObject* b = nullptr;
            if (!PyUnicode_FSConverter(fs, &b)) {
                Py_DECREF(fs);
                throw nb::python_error();
            }
            Py_DECREF(fs);
            st.path = PyBytes_AS_STRING(b);
            Py_DECREF(b);
            if (is_map) st.mapping = std::make_unique<mmstore::Mapping>(mmstore::Mapping::open(st.path, offset, length));
            else st.array = std::make_unique<mmstore::RecordArray>(mmstore::RecordArray::open(st.path, offset, length));
        }
        st.flags.path = &st.path;
        st.cols = is_map ? columns_of(*st.mapping) : columns_of(*st.array);
        st.image = is_map ? st.mapping->image() : st.array->image();
    } catch (nb::python_error& e) {
        Py_DECREF(self);
        e.restore();
        return nullptr;
    } catch (...) {
        Py_DECREF(self);
        error_from_exception();
        return nullptr;
    }
    return reinterpret_cast<PyObject*>(self);
}

int image_traverse(PyObject* o, visitproc visit, void* arg) {
    Py_VISIT(Py_TYPE(o));
    auto* self = reinterpret_cast<ImageObj*>(o);
    if (self->st) Py_VISIT(self->st->so);
    return 0;
}

int image_clear(PyObject* o) {
    auto* self = reinterpret_cast<ImageObj*>(o);
    if (self->st) Py_CLEAR(self->st->so);
    return 0;
}

void image_dealloc(PyObject* o) {
    PyObject_GC_UnTrack(o);
    auto* self = reinterpret_cast<ImageObj*>(o);
    if (self->st) {
        self->st->array.reset();
        self->st->mapping.reset();
        if (self->st->has_view) PyBuffer_Release(&self->st->view);
        Py_XDECREF(self->st->so);
        delete self->st;
    }
    PyTypeObject* tp = Py_TYPE(o);
    tp->tp_free(o);
    Py_DECREF(tp);
}

int image_getbuffer(PyObject* o, Py_buffer* view, int flags) {
    ImageState& st = st_of(o);
    if (flags & PyBUF_WRITABLE) {
        PyErr_SetString(PyExc_BufferError, "record files are read-only");
        return -1;
    }
    if (PyBuffer_FillInfo(view, o, const_cast<char*>(st.image.data()), static_cast<Py_ssize_t>(st.image.size()), 1, flags) != 0)
        return -1;
    ++st.exports;
    return 0;
}

void image_releasebuffer(PyObject* o, Py_buffer*) { --st_of(o).exports; }

PyObject* image_bind(PyObject* self, PyObject* so) {
    if (!PyObject_TypeCheck(so, g_schema_type)) {
        PyErr_SetString(PyExc_TypeError, "bind() takes a _SchemaNative");
        return nullptr;
    }
    ImageState& st = st_of(self);
    if (!(*sn(so).schema == *st.cols->schema)) {
        PyErr_SetString(PyExc_ValueError, "schema differs from the stored schema");
        return nullptr;
    }
    Py_INCREF(so);
    Py_XSETREF(st.so, so);
    Py_RETURN_NONE;
}

PyObject* image_schema_blob(PyObject* self, PyObject*) {
    const std::string b = st_of(self).cols->schema->encode();
    return PyBytes_FromStringAndSize(b.data(), static_cast<Py_ssize_t>(b.size()));
}

PyObject* image_verify(PyObject* self, PyObject*) {
    ImageState& st = st_of(self);
    // Without the GIL: the image is read-only and stays mapped while `self` lives (the caller holds it); a
    // close() meanwhile only marks the handle (ImageState::closed).
    std::exception_ptr err;
    Py_BEGIN_ALLOW_THREADS
    try {
        if (st.mapping) st.mapping->verify();
        else st.array->verify();
    } catch (...) {
        err = std::current_exception();
    }
    Py_END_ALLOW_THREADS
    if (err) {
        try {
            std::rethrow_exception(err);
        } catch (...) {
            error_from_exception();
        }
        return nullptr;
    }
    Py_RETURN_NONE;
}

PyObject* image_exports(PyObject* self, PyObject*) { return PyLong_FromSsize_t(st_of(self).exports); }

PyObject* image_close(PyObject* self, PyObject*) {
    ImageState& st = st_of(self);
    if (st.exports > 0) {
        PyErr_Format(PyExc_BufferError, "cannot close %s: %zd exported buffers (numpy column views) are alive",
                     st.path.c_str(), st.exports);
        return nullptr;
    }
    st.closed = true;
    Py_RETURN_NONE;
}

PyObject* image_closed(PyObject* self, void*) { return PyBool_FromLong(st_of(self).closed); }

inline bool open_or_raise(ImageState& st) {
    if (!st.closed) [[likely]] return true;
    raise_error(static_cast<int>(ErrorCode::kClosed), st.path,
                std::string("operation on a closed ") + (st.mapping ? "Mapping" : "RecordArray"));
    return false;
}

Py_ssize_t image_len(PyObject* self) {
    if (!open_or_raise(st_of(self))) return -1;
    return static_cast<Py_ssize_t>(st_of(self).cols->count);
}

// (offset in the image, bytes per item, presence bitmap offset or -1) of a fixed field.
PyObject* image_column_info(PyObject* self, PyObject* arg) {
    ImageState& st = st_of(self);
    if (!open_or_raise(st)) return nullptr;
    const Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred()) return nullptr;
    if (i < 0 || static_cast<std::size_t>(i) >= st.cols->schema->size() || !mmstore::is_fixed(st.cols->schema->field(i).type)) {
        PyErr_SetString(PyExc_ValueError, "column(): not a fixed-width field");
        return nullptr;
    }
    const Py_ssize_t off = st.cols->count ? st.cols->data[i] - st.image.data() : 0;
    const Py_ssize_t poff = st.cols->presence[i] ? reinterpret_cast<const char*>(st.cols->presence[i]) - st.image.data() : -1;
    return Py_BuildValue("nIn", off, mmstore::fixed_width(st.cols->schema->field(i).type), poff);
}

// (offsets offset in the image, offset width 4 or 8, data offset, data length, presence offset or -1) of a
// str/bytes field in Arrow layout (format version 3), or None for any other field or an older file.
PyObject* image_var_column_info(PyObject* self, PyObject* arg) {
    ImageState& st = st_of(self);
    if (!open_or_raise(st)) return nullptr;
    const Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred()) return nullptr;
    const ColumnSet* c = st.cols;
    if (i < 0 || static_cast<std::size_t>(i) >= c->schema->size()) {
        PyErr_SetString(PyExc_IndexError, "field index out of range");
        return nullptr;
    }
    if (!c->off_width[i]) Py_RETURN_NONE;
    const char* base = st.image.data();
    const Py_ssize_t poff = c->presence[i] ? reinterpret_cast<const char*>(c->presence[i]) - base : -1;
    return Py_BuildValue("nInKn", static_cast<Py_ssize_t>(c->data[i] - base), static_cast<unsigned>(c->off_width[i]),
                         static_cast<Py_ssize_t>(c->var_data[i] - base),
                         static_cast<unsigned long long>(c->var_len[i]), poff);
}

inline bool bound(ImageState& st) {
    if (st.closed) [[unlikely]] {
        raise_error(static_cast<int>(ErrorCode::kClosed), st.path, "operation on a closed " +
                    std::string(st.mapping ? "Mapping" : "RecordArray"));
        return false;
    }
    if (st.so != nullptr) return true;
    PyErr_SetString(PyExc_RuntimeError, "image has no bound schema");
    return false;
}

PyObject* array_item(PyObject* self, Py_ssize_t i) {
    ImageState& st = st_of(self);
    if (!bound(st)) return nullptr;
    const auto n = static_cast<Py_ssize_t>(st.cols->count);
    if (i < 0) i += n;
    if (i < 0 || i >= n) {
        PyErr_SetString(PyExc_IndexError, "RecordArray index out of range");
        return nullptr;
    }
    return col_proxy(st.so, self, &st.flags, st.cols, static_cast<std::uint64_t>(i));
}

PyObject* array_subscript(PyObject* self, PyObject* key) {
    if (PyLong_CheckExact(key)) {
        const Py_ssize_t i = PyLong_AsSsize_t(key);
        if (i == -1 && PyErr_Occurred()) {
            if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
                PyErr_Clear();
                PyErr_SetString(PyExc_IndexError, "RecordArray index out of range");
            }
            return nullptr;
        }
        return array_item(self, i);
    }
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0) return nullptr;
        const Py_ssize_t len = PySlice_AdjustIndices(image_len(self), &start, &stop, step);
        PyObject* out = PyList_New(len);
        if (out == nullptr) return nullptr;
        for (Py_ssize_t k = 0, i = start; k < len; ++k, i += step) {
            PyObject* p = array_item(self, i);
            if (p == nullptr) {
                Py_DECREF(out);
                return nullptr;
            }
            PyList_SET_ITEM(out, k, p);
        }
        return out;
    }
    if (PyIndex_Check(key)) {
        const Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) return nullptr;
        return array_item(self, i);
    }
    PyErr_Format(PyExc_TypeError, "RecordArray indices must be integers or slices, not %s", Py_TYPE(key)->tp_name);
    return nullptr;
}

// Iterator over an array. It hands out two proxies in turn and re-points one instead of allocating when
// only the iterator still holds it: in `for r in arr`, `r` keeps the previous proxy alive while the next one
// is fetched, so the one before that is free again.
struct IterObj {
    PyObject_HEAD
    PyObject* owner;
    std::uint64_t next;
    ProxyObj* spare[2];
    int turn;
};

PyObject* array_iter(PyObject* self) {
    if (!bound(st_of(self))) return nullptr;
    auto* it = reinterpret_cast<IterObj*>(g_iter_type->tp_alloc(g_iter_type, 0));
    if (it == nullptr) return nullptr;
    Py_INCREF(self);
    it->owner = self;
    it->next = 0;
    it->spare[0] = it->spare[1] = nullptr;
    it->turn = 0;
    return reinterpret_cast<PyObject*>(it);
}

PyObject* iter_next(PyObject* o) {
    auto* it = reinterpret_cast<IterObj*>(o);
    ImageState& st = st_of(it->owner);
    if (it->next >= st.cols->count) return nullptr;
    if (st.closed) [[unlikely]] {
        bound(st);  // raises ClosedError
        return nullptr;
    }
    const std::uint64_t i = it->next++;
    ProxyObj*& slot = it->spare[it->turn];
    it->turn ^= 1;
    if (slot != nullptr && Py_REFCNT(slot) == 1) {
        slot->idx = i;
        Py_INCREF(slot);
        return reinterpret_cast<PyObject*>(slot);
    }
    Py_CLEAR(slot);  // (cleared before allocating: a collection may traverse this iterator meanwhile)
    slot = reinterpret_cast<ProxyObj*>(col_proxy(st.so, it->owner, &st.flags, st.cols, i));
    if (slot == nullptr) return nullptr;
    Py_INCREF(slot);
    return reinterpret_cast<PyObject*>(slot);
}

int iter_traverse(PyObject* o, visitproc visit, void* arg) {
    Py_VISIT(Py_TYPE(o));
    auto* it = reinterpret_cast<IterObj*>(o);
    Py_VISIT(it->owner);
    Py_VISIT(reinterpret_cast<PyObject*>(it->spare[0]));
    Py_VISIT(reinterpret_cast<PyObject*>(it->spare[1]));
    return 0;
}

void iter_dealloc_(PyObject* o) {
    PyObject_GC_UnTrack(o);
    auto* it = reinterpret_cast<IterObj*>(o);
    Py_XDECREF(it->spare[0]);
    Py_XDECREF(it->spare[1]);
    Py_XDECREF(it->owner);
    PyTypeObject* tp = Py_TYPE(o);
    tp->tp_free(o);
    Py_DECREF(tp);
}

PyType_Slot iter_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(iter_dealloc_)},
    {Py_tp_traverse, reinterpret_cast<void*>(iter_traverse)},
    {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
    {Py_tp_iternext, reinterpret_cast<void*>(iter_next)},
    {0, nullptr},
};
PyType_Spec iter_spec = {"mmstore._core._RecordIterator", sizeof(IterObj), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
                         iter_slots};

// _FieldValues(array, field): one field of every record as a read-only sequence (RecordArray.values(name)).
// v[i] reads field `field` of record i straight from the mapping, with no proxy in between: the analogue of
// Arrow's table.column(name)[i]. It holds the array (so the mapping stays) and raises ClosedError once the
// array is closed, as arr[i] does.
struct ValuesObj {
    PyObject_HEAD
    PyObject* owner;  // the _ArrayNative (strong)
    std::size_t field;
};

PyObject* values_new(PyTypeObject* type, PyObject* args, PyObject*) {
    PyObject* owner;
    Py_ssize_t field;
    if (!PyArg_ParseTuple(args, "O!n", g_array_type, &owner, &field)) return nullptr;
    if (!bound(st_of(owner))) return nullptr;
    if (field < 0 || static_cast<std::size_t>(field) >= sn(st_of(owner).so).fields.size()) {
        PyErr_SetString(PyExc_IndexError, "field index out of range");
        return nullptr;
    }
    auto* v = reinterpret_cast<ValuesObj*>(type->tp_alloc(type, 0));
    if (v == nullptr) return nullptr;
    Py_INCREF(owner);
    v->owner = owner;
    v->field = static_cast<std::size_t>(field);
    return reinterpret_cast<PyObject*>(v);
}

int values_traverse(PyObject* o, visitproc visit, void* arg) {
    Py_VISIT(Py_TYPE(o));
    Py_VISIT(reinterpret_cast<ValuesObj*>(o)->owner);
    return 0;
}

int values_clear(PyObject* o) {
    Py_CLEAR(reinterpret_cast<ValuesObj*>(o)->owner);
    return 0;
}

void values_dealloc(PyObject* o) {
    PyObject_GC_UnTrack(o);
    Py_XDECREF(reinterpret_cast<ValuesObj*>(o)->owner);
    PyTypeObject* tp = Py_TYPE(o);
    tp->tp_free(o);
    Py_DECREF(tp);
}

Py_ssize_t values_len(PyObject* self) {
    PyObject* owner = reinterpret_cast<ValuesObj*>(self)->owner;
    if (owner == nullptr) {
        PyErr_SetString(PyExc_RuntimeError, "field values of a collected RecordArray");
        return -1;
    }
    return image_len(owner);
}

PyObject* values_item(PyObject* self, Py_ssize_t i) {
    auto* v = reinterpret_cast<ValuesObj*>(self);
    if (v->owner == nullptr) {  // cleared by the garbage collector while in a cycle
        PyErr_SetString(PyExc_RuntimeError, "field values of a collected RecordArray");
        return nullptr;
    }
    ImageState& st = st_of(v->owner);
    if (!bound(st)) return nullptr;
    const auto n = static_cast<Py_ssize_t>(st.cols->count);
    if (i < 0) i += n;
    if (i < 0 || i >= n) {
        PyErr_SetString(PyExc_IndexError, "RecordArray index out of range");
        return nullptr;
    }
    const std::size_t f = v->field;
    const FieldInfo& fi = sn(st.so).fields[f];
    const ColumnSet* c = st.cols;
    const auto idx = static_cast<std::uint64_t>(i);
    if (fi.width) {
        if (!c->present(f, idx)) Py_RETURN_NONE;
        return box_fixed(fi.type, c->data[f] + idx * fi.width);
    }
    if (c->off_width[f]) return read_arrow(c, fi, f, idx);
    ProxyObj p{};  // read_field's view of record i (never handed out, so no reference is taken)
    p.so = st.so;
    p.owner = v->owner;
    p.cols = c;
    p.idx = idx;
    p.flags = &st.flags;
    return read_field(&p, f);
}

PyObject* values_subscript(PyObject* self, PyObject* key) {
    if (PyLong_CheckExact(key) || PyIndex_Check(key)) {
        const Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) return nullptr;
        return values_item(self, i);
    }
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0) return nullptr;
        const Py_ssize_t n = values_len(self);
        if (n < 0) return nullptr;
        const Py_ssize_t len = PySlice_AdjustIndices(n, &start, &stop, step);
        PyObject* out = PyList_New(len);
        if (out == nullptr) return nullptr;
        for (Py_ssize_t k = 0, i = start; k < len; ++k, i += step) {
            PyObject* x = values_item(self, i);
            if (x == nullptr) {
                Py_DECREF(out);
                return nullptr;
            }
            PyList_SET_ITEM(out, k, x);
        }
        return out;
    }
    PyErr_Format(PyExc_TypeError, "indices must be integers or slices, not %s", Py_TYPE(key)->tp_name);
    return nullptr;
}

PyType_Slot values_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(values_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(values_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(values_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(values_clear)},
    {Py_sq_length, reinterpret_cast<void*>(values_len)},
    {Py_sq_item, reinterpret_cast<void*>(values_item)},
    {Py_mp_length, reinterpret_cast<void*>(values_len)},
    {Py_mp_subscript, reinterpret_cast<void*>(values_subscript)},
    {Py_tp_doc, const_cast<char*>("One field of every record of a RecordArray, as a read-only sequence.")},
    {0, nullptr},
};
PyType_Spec values_spec = {"mmstore._core._FieldValues", sizeof(ValuesObj), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
                           values_slots};

PyObject* image_path(PyObject* self, void*) {
    const auto& p = st_of(self).path;
    return PyUnicode_DecodeFSDefaultAndSize(p.data(), static_cast<Py_ssize_t>(p.size()));
}

PyGetSetDef image_getset[] = {
    {"path", image_path, nullptr, nullptr, nullptr},
    {"closed", image_closed, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMethodDef array_methods[] = {
    {"bind", image_bind, METH_O, nullptr},
    {"schema_blob", image_schema_blob, METH_NOARGS, nullptr},
    {"verify", image_verify, METH_NOARGS, nullptr},
    {"exports", image_exports, METH_NOARGS, nullptr},
    {"close", image_close, METH_NOARGS, "Close the handle (BufferError while numpy column views are alive)."},
    {"column_info", image_column_info, METH_O, nullptr},
    {"var_column_info", image_var_column_info, METH_O, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot array_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(image_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(image_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(image_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(image_clear)},
    {Py_tp_methods, array_methods},
    {Py_tp_getset, image_getset},
    {Py_tp_iter, reinterpret_cast<void*>(array_iter)},
    {Py_sq_length, reinterpret_cast<void*>(image_len)},
    {Py_sq_item, reinterpret_cast<void*>(array_item)},
    {Py_mp_length, reinterpret_cast<void*>(image_len)},
    {Py_mp_subscript, reinterpret_cast<void*>(array_subscript)},
    {Py_bf_getbuffer, reinterpret_cast<void*>(image_getbuffer)},
    {Py_bf_releasebuffer, reinterpret_cast<void*>(image_releasebuffer)},
    {0, nullptr},
};
PyType_Spec array_spec = {"mmstore._core._ArrayNative", sizeof(ImageObj), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
                          array_slots};

// ---------------------------------------------------------------------------------------------------------
// _MappingNative

// The value of entry e: a proxy, or the plain value.
PyObject* entry_value(PyObject* self, std::uint64_t e) {
    ImageState& st = st_of(self);
    if (st.mapping->plain_values()) {
        ProxyObj tmp{};
        tmp.so = st.so;
        tmp.owner = self;
        tmp.cols = st.cols;
        tmp.idx = e;
        tmp.flags = &st.flags;
        return read_field(&tmp, 0);
    }
    return col_proxy(st.so, self, &st.flags, st.cols, e);
}

std::pair<std::uint64_t, std::uint64_t> lookup(PyObject* self, PyObject* key, bool& err) {
    ImageState& st = st_of(self);
    err = false;
    EncBuf e;
    PyObject* utf8 = nullptr;
    if (st.str_keys_as_bytes && (PyUnicode_Check(key) || PyByteArray_Check(key) || PyMemoryView_Check(key))) {
        utf8 = PyUnicode_Check(key) ? PyUnicode_AsEncodedString(key, "utf-8", "surrogateescape") : PyBytes_FromObject(key);
        if (utf8 == nullptr) {
            err = true;
            return {0, 0};
        }
    }
    const bool encoded = encode_into(utf8 != nullptr ? utf8 : key, e, st.flags, true);
    Py_XDECREF(utf8);
    if (!encoded) {  // unhashable keys raise TypeError, as for dict
        err = true;
        return {0, 0};
    }
    try {
        return st.mapping->find_encoded(e.sv);
    } catch (...) {
        error_from_exception();
        err = true;
        return {0, 0};
    }
}

PyObject* mapping_subscript(PyObject* self, PyObject* key) {
    if (!bound(st_of(self))) return nullptr;
    bool err;
    const auto [lo, hi] = lookup(self, key, err);
    if (err) return nullptr;
    if (lo == hi) {
        PyErr_SetObject(PyExc_KeyError, key);
        return nullptr;
    }
    return entry_value(self, lo);
}

int mapping_contains(PyObject* self, PyObject* key) {
    if (!open_or_raise(st_of(self))) return -1;
    bool err;
    const auto [lo, hi] = lookup(self, key, err);
    if (err) return -1;
    return lo != hi;
}

PyObject* mapping_get(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(key, default=None)");
        return nullptr;
    }
    if (!bound(st_of(self))) return nullptr;
    bool err;
    const auto [lo, hi] = lookup(self, args[0], err);
    if (err) return nullptr;
    if (lo == hi) {
        PyObject* d = nargs == 2 ? args[1] : Py_None;
        Py_INCREF(d);
        return d;
    }
    return entry_value(self, lo);
}

// get_all(key[, default]): every value of `key` as a list; [] (or `default`, when given) if there is none.
PyObject* mapping_get_all(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get_all(key, default=[])");
        return nullptr;
    }
    if (!bound(st_of(self))) return nullptr;
    bool err;
    const auto [lo, hi] = lookup(self, args[0], err);
    if (err) return nullptr;
    if (lo == hi && nargs == 2) {
        Py_INCREF(args[1]);
        return args[1];
    }
    PyObject* out = PyList_New(static_cast<Py_ssize_t>(hi - lo));
    if (out == nullptr) return nullptr;
    for (std::uint64_t e = lo; e < hi; ++e) {
        PyObject* v = entry_value(self, e);
        if (v == nullptr) {
            Py_DECREF(out);
            return nullptr;
        }
        PyList_SET_ITEM(out, static_cast<Py_ssize_t>(e - lo), v);
    }
    return out;
}

PyObject* mapping_entry_key(PyObject* self, PyObject* arg) {
    ImageState& st = st_of(self);
    if (!open_or_raise(st)) return nullptr;
    const unsigned long long e = PyLong_AsUnsignedLongLong(arg);
    if (e == static_cast<unsigned long long>(-1) && PyErr_Occurred()) return nullptr;
    if (e >= st.cols->count) {
        PyErr_SetString(PyExc_IndexError, "entry out of range");
        return nullptr;
    }
    if (st.mapping->approximate()) {
        PyErr_SetString(PyExc_TypeError, "an approximate mapping stores no keys");
        return nullptr;
    }
    try {
        const auto k = st.mapping->key_encoded(e);
        return decode(k.data(), k.size(), st.flags);
    } catch (...) {
        error_from_exception();
        return nullptr;
    }
}

// The stored key hash of entry e: all 64 bits for approximate maps (what they store instead of the key), the
// low 32 for exact ones. Used by mmstore.compat.sharedbuffers, whose approximate mappers iterate by hash.
PyObject* mapping_entry_hash(PyObject* self, PyObject* arg) {
    ImageState& st = st_of(self);
    if (!open_or_raise(st)) return nullptr;
    const unsigned long long e = PyLong_AsUnsignedLongLong(arg);
    if (e == static_cast<unsigned long long>(-1) && PyErr_Occurred()) return nullptr;
    if (e >= st.cols->count) {
        PyErr_SetString(PyExc_IndexError, "entry out of range");
        return nullptr;
    }
    try {
        return PyLong_FromUnsignedLongLong(st.mapping->key_hash_bits(e));
    } catch (...) {
        error_from_exception();
        return nullptr;
    }
}

PyObject* mapping_entry_value(PyObject* self, PyObject* arg) {
    ImageState& st = st_of(self);
    if (!bound(st)) return nullptr;
    const unsigned long long e = PyLong_AsUnsignedLongLong(arg);
    if (e == static_cast<unsigned long long>(-1) && PyErr_Occurred()) return nullptr;
    if (e >= st.cols->count) {
        PyErr_SetString(PyExc_IndexError, "entry out of range");
        return nullptr;
    }
    return entry_value(self, e);
}

PyObject* mapping_set_str_keys_as_bytes(PyObject* self, PyObject* on) {
    const int v = PyObject_IsTrue(on);
    if (v < 0) return nullptr;
    st_of(self).str_keys_as_bytes = v != 0;
    Py_RETURN_NONE;
}

PyObject* mapping_info(PyObject* self, PyObject*) {
    auto& m = *st_of(self).mapping;
    return Py_BuildValue("{s:O,s:O,s:O,s:i}", "multi", m.multi() ? Py_True : Py_False, "approximate",
                         m.approximate() ? Py_True : Py_False, "plain_values", m.plain_values() ? Py_True : Py_False,
                         "key_kind", static_cast<int>(m.key_kind()));
}

PyMethodDef mapping_methods[] = {
    {"bind", image_bind, METH_O, nullptr},
    {"schema_blob", image_schema_blob, METH_NOARGS, nullptr},
    {"verify", image_verify, METH_NOARGS, nullptr},
    {"exports", image_exports, METH_NOARGS, nullptr},
    {"close", image_close, METH_NOARGS, "Close the handle (BufferError while numpy column views are alive)."},
    {"get", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(mapping_get)), METH_FASTCALL, nullptr},
    {"get_all", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(mapping_get_all)), METH_FASTCALL, nullptr},
    {"_str_keys_as_bytes", mapping_set_str_keys_as_bytes, METH_O, nullptr},
    {"column_info", image_column_info, METH_O, nullptr},
    {"entry_key", mapping_entry_key, METH_O, nullptr},
    {"entry_value", mapping_entry_value, METH_O, nullptr},
    {"entry_hash", mapping_entry_hash, METH_O, nullptr},
    {"info", mapping_info, METH_NOARGS, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot mapping_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(image_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(image_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(image_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(image_clear)},
    {Py_tp_methods, mapping_methods},
    {Py_tp_getset, image_getset},
    {Py_sq_length, reinterpret_cast<void*>(image_len)},
    {Py_sq_contains, reinterpret_cast<void*>(mapping_contains)},
    {Py_mp_length, reinterpret_cast<void*>(image_len)},
    {Py_mp_subscript, reinterpret_cast<void*>(mapping_subscript)},
    {Py_bf_getbuffer, reinterpret_cast<void*>(image_getbuffer)},
    {Py_bf_releasebuffer, reinterpret_cast<void*>(image_releasebuffer)},
    {0, nullptr},
};
PyType_Spec mapping_spec = {"mmstore._core._MappingNative", sizeof(ImageObj), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
                            mapping_slots};

// ---------------------------------------------------------------------------------------------------------
// Builders (nanobind classes: their per-call overhead is amortized by add_many loops in C++)

struct ArrayBuilderH {
    std::unique_ptr<mmstore::RecordArrayBuilder> b;
    nb::object so;
    std::uint64_t done = 0;  // items added by earlier add_many calls (error messages index the whole input)
};

struct MappingBuilderH {
    std::unique_ptr<mmstore::MappingBuilder> b;
    nb::object so;
    mmstore::KeyKind key_kind;
    bool plain;
    std::uint64_t done = 0;  // items added by earlier add_many calls
};

bool check_key_kind(mmstore::KeyKind k, PyObject* key) {
    if (k == mmstore::KeyKind::kStr && !PyUnicode_Check(key)) {
        PyErr_Format(PyExc_TypeError, "this mapping has str keys, not %s", Py_TYPE(key)->tp_name);
        return false;
    }
    if (k == mmstore::KeyKind::kInt && (!PyLong_Check(key) || PyBool_Check(key))) {
        PyErr_Format(PyExc_TypeError, "this mapping has int keys, not %s", Py_TYPE(key)->tp_name);
        return false;
    }
    return true;
}

// Rewrites a pending TypeError, ValueError or OverflowError raised for item `index` of a build as
// "<what>: item <index>: <message>" (same type, the original chained as __cause__), so the caller can find
// the bad item in its input.
void name_item_in_error(const char* what, std::uint64_t index) {
    if (!PyErr_ExceptionMatches(PyExc_TypeError) && !PyErr_ExceptionMatches(PyExc_ValueError) &&
        !PyErr_ExceptionMatches(PyExc_OverflowError))
        return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != nullptr) PyException_SetTraceback(value, tb);
    PyObject* msg = PyObject_Str(value);
    if (msg == nullptr) {
        PyErr_Restore(type, value, tb);
        return;
    }
    PyErr_Format(type, "%s: item %llu: %U", what, static_cast<unsigned long long>(index), msg);
    Py_DECREF(msg);
    PyObject *t2, *v2, *tb2;
    PyErr_Fetch(&t2, &v2, &tb2);
    PyErr_NormalizeException(&t2, &v2, &tb2);
    PyException_SetCause(v2, value);  // steals value
    PyException_SetContext(v2, nullptr);
    Py_DECREF(type);
    Py_XDECREF(tb);
    PyErr_Restore(t2, v2, tb2);
}

// Packs `v` as the value of a mapping entry: a record, or a plain value wrapped in the one-field row.
// A plain value is packed as the only field of its one-field schema, straight from `v` (building a
// {"value": v} dict per item here was a third of the CPU time of building a Mapping of integers).
bool pack_value(SchemaObj* so, bool plain, PyObject* v, std::string& row) {
    return pack_row(so, v, row, 0, plain);
}

}  // namespace

void bind_records(nb::module_& m) {
    m.attr("RECORDS_FORMAT_VERSION") = mmstore::detail::kRecordsFormatVersion;
    auto make = [&](PyType_Spec& spec, PyTypeObject*& out, const char* name) {
        out = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&spec));
        if (out == nullptr) throw nb::python_error();
        m.attr(name) = nb::handle(reinterpret_cast<PyObject*>(out));
    };
    make(schema_spec, g_schema_type, "_SchemaNative");
    make(proxy_spec, g_proxy_type, "RecordProxy");
    make(field_spec, g_field_type, "_Field");
    make(array_spec, g_array_type, "_ArrayNative");
    make(mapping_spec, g_mapping_type, "_MappingNative");
    make(bufowner_spec, g_bufowner_type, "_BufferOwner");
    make(iter_spec, g_iter_type, "_RecordIterator");
    PyTypeObject* values_type = nullptr;
    make(values_spec, values_type, "_FieldValues");

    nb::class_<ArrayBuilderH>(m, "_ArrayBuilder")
        .def("__init__",
             [](ArrayBuilderH* self, const std::string& path, nb::handle so, bool dedup, std::uint64_t dedup_budget,
                unsigned mode) {
                 if (!PyObject_TypeCheck(so.ptr(), g_schema_type)) throw nb::type_error("expected a _SchemaNative");
                 mmstore::BuildOptions o;
                 o.dedup = dedup;
                 o.dedup_budget = dedup_budget;
                 o.mode = mode;
                 new (self) ArrayBuilderH{std::make_unique<mmstore::RecordArrayBuilder>(path, sn(so.ptr()).schema, o),
                                          nb::borrow(so)};
             })
        .def("add_many",
             [](ArrayBuilderH& h, nb::handle iterable, nb::handle progress) {
                 if (!h.b) throw mmstore::Error(ErrorCode::kClosed, "", "builder finished");
                 auto* so = reinterpret_cast<SchemaObj*>(h.so.ptr());
                 PyObject* it = PyObject_GetIter(iterable.ptr());
                 if (it == nullptr) throw nb::python_error();
                 std::string row;
                 std::uint64_t n = 0;
                 while (PyObject* obj = PyIter_Next(it)) {
                     row.clear();
                     const bool ok = pack_row(so, obj, row, 0);
                     Py_DECREF(obj);
                     if (!ok) {
                         Py_DECREF(it);
                         name_item_in_error("RecordArray.build", h.done + n);
                         throw nb::python_error();
                     }
                     h.b->add_row(row);
                     if ((++n & 0x3FFF) == 0 && !progress.is_none()) {
                         PyObject* r = PyObject_CallFunction(progress.ptr(), "K", static_cast<unsigned long long>(n));
                         if (r == nullptr) {
                             Py_DECREF(it);
                             throw nb::python_error();
                         }
                         Py_DECREF(r);
                     }
                 }
                 Py_DECREF(it);
                 if (PyErr_Occurred()) throw nb::python_error();
                 h.done += n;
                 return n;
             },
             nb::arg("iterable"), nb::arg("progress").none())
        .def("finish",
             [](ArrayBuilderH& h) {
                 if (!h.b) throw mmstore::Error(ErrorCode::kClosed, "", "builder finished");
                 const auto n = h.b->finish();
                 h.b.reset();
                 return n;
             })
        .def("abort", [](ArrayBuilderH& h) { h.b.reset(); });

    nb::class_<MappingBuilderH>(m, "_MappingBuilder")
        .def("__init__",
             [](MappingBuilderH* self, const std::string& path, nb::handle so, int key_kind, bool multi, bool approximate,
                bool plain, bool dedup, std::uint64_t dedup_budget, std::uint64_t memory_budget, unsigned mode) {
                 if (!PyObject_TypeCheck(so.ptr(), g_schema_type)) throw nb::type_error("expected a _SchemaNative");
                 mmstore::MappingOptions o;
                 o.dedup = dedup;
                 o.dedup_budget = dedup_budget;
                 o.memory_budget = memory_budget;
                 o.mode = mode;
                 o.key_kind = static_cast<mmstore::KeyKind>(key_kind);
                 o.multi = multi;
                 o.approximate = approximate;
                 o.plain_values = plain;
                 new (self) MappingBuilderH{std::make_unique<mmstore::MappingBuilder>(path, sn(so.ptr()).schema, o),
                                            nb::borrow(so), o.key_kind, plain};
             })
        .def("add_many",
             [](MappingBuilderH& h, nb::handle iterable, nb::handle progress) {
                 if (!h.b) throw mmstore::Error(ErrorCode::kClosed, "", "builder finished");
                 auto* so = reinterpret_cast<SchemaObj*>(h.so.ptr());
                 PyObject* it = PyObject_GetIter(iterable.ptr());
                 if (it == nullptr) throw nb::python_error();
                 std::string row, key;
                 std::uint64_t n = 0;
                 const CodecFlags flags{true};
                 while (PyObject* item = PyIter_Next(it)) {
                     bool ok = false;
                     PyObject *k = nullptr, *v = nullptr;
                     if (!(PyTuple_CheckExact(item) && PyTuple_GET_SIZE(item) == 2)) {
                         // Any other pair (a list, a namedtuple...): as a tuple.
                         PyObject* t = PySequence_Check(item) ? PySequence_Tuple(item) : nullptr;
                         Py_DECREF(item);
                         item = t;
                         if (item == nullptr || PyTuple_GET_SIZE(item) != 2) {
                             if (item != nullptr || !PyErr_Occurred())
                                 PyErr_SetString(PyExc_TypeError, "Mapping.build expects (key, value) pairs");
                             Py_XDECREF(item);
                             Py_DECREF(it);
                             name_item_in_error("Mapping.build", h.done + n);
                             throw nb::python_error();
                         }
                     }
                     k = PyTuple_GET_ITEM(item, 0);
                     v = PyTuple_GET_ITEM(item, 1);
                     if (check_key_kind(h.key_kind, k)) {
                         key.clear();
                         row.clear();
                         ok = encode(k, key, flags, true) && pack_value(so, h.plain, v, row);
                     }
                     Py_DECREF(item);
                     if (!ok) {
                         Py_DECREF(it);
                         name_item_in_error("Mapping.build", h.done + n);
                         throw nb::python_error();
                     }
                     h.b->add_encoded(key, row);
                     if ((++n & 0x3FFF) == 0 && !progress.is_none()) {
                         PyObject* r = PyObject_CallFunction(progress.ptr(), "K", static_cast<unsigned long long>(n));
                         if (r == nullptr) {
                             Py_DECREF(it);
                             throw nb::python_error();
                         }
                         Py_DECREF(r);
                     }
                 }
                 Py_DECREF(it);
                 if (PyErr_Occurred()) throw nb::python_error();
                 h.done += n;
                 return n;
             },
             nb::arg("iterable"), nb::arg("progress").none())
        .def("finish",
             [](MappingBuilderH& h) {
                 if (!h.b) throw mmstore::Error(ErrorCode::kClosed, "", "builder finished");
                 const auto n = h.b->finish();
                 h.b.reset();
                 return n;
             })
        .def("abort", [](MappingBuilderH& h) { h.b.reset(); });

    m.def("_merge_mappings", [](nb::handle a, nb::handle b, const std::string& out, bool dedup, unsigned mode) {
        if (!PyObject_TypeCheck(a.ptr(), g_mapping_type) || !PyObject_TypeCheck(b.ptr(), g_mapping_type))
            throw nb::type_error("merge() takes two mappings");
        mmstore::BuildOptions o;
        o.dedup = dedup;
        o.mode = mode;
        return mmstore::merge(*st_of(a.ptr()).mapping, *st_of(b.ptr()).mapping, out, o);
    });
}

}  // namespace mmstore::py
