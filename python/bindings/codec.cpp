#include "codec.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "mmstore/codec/value.hpp"
#include "mmstore/error.hpp"

namespace mmstore::py {

namespace {

namespace tag = mmstore::codec::tag;

PyObject* g_encode_ext = nullptr;   // mmstore._codec.encode_ext(obj, key, allow_pickle) -> bytes
PyObject* g_decode_ext = nullptr;   // mmstore._codec.decode_ext(data: bytes, allow_pickle) -> object
PyObject* g_error_for_code = nullptr;  // mmstore._errors.error_for_code(code, path, message, pid, errno)
PyObject* g_annotate = nullptr;        // mmstore._errors.annotate(exc, path) -> exc
PyObject* g_decode_failure = nullptr;  // mmstore._errors.decode_failure(exc, path) -> exc

// Replaces the pending exception by fn(exc, path).
void rewrite_error(PyObject* fn, const std::string* path) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value == nullptr) {
        PyErr_Restore(type, value, tb);
        return;
    }
    if (tb != nullptr) PyException_SetTraceback(value, tb);
    PyObject* p = path ? PyUnicode_FromStringAndSize(path->data(), static_cast<Py_ssize_t>(path->size())) : PyUnicode_FromString("");
    PyObject* r = p ? PyObject_CallFunctionObjArgs(fn, value, p, nullptr) : nullptr;
    Py_XDECREF(p);
    if (r == nullptr) {  // keep the original error if the rewrite itself failed
        PyErr_Clear();
        PyErr_Restore(type, value, tb);
        return;
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    Py_DECREF(value);
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(r)), r);
    Py_DECREF(r);
}

constexpr int kMaxDepth = mmstore::codec::kMaxDepth;

inline void put_u32(std::string& out, std::uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }

bool put_len_tagged(std::string& out, std::uint8_t short_base, std::uint8_t long_tag, const char* data, Py_ssize_t n) {
    if (n <= static_cast<Py_ssize_t>(tag::kShortMax)) {
        out.push_back(static_cast<char>(short_base + n));
    } else {
        if (n > 0xFFFFFFFFLL) {
            PyErr_SetString(PyExc_OverflowError, "mmstore cannot encode str or bytes longer than 4 GiB");
            return false;
        }
        out.push_back(static_cast<char>(long_tag));
        put_u32(out, static_cast<std::uint32_t>(n));
    }
    out.append(data, static_cast<std::size_t>(n));
    return true;
}

bool encode_impl(PyObject* o, std::string& out, CodecFlags f, bool key, int depth);

bool encode_ext(PyObject* o, std::string& out, CodecFlags f, bool key) {
    PyObject* pk = f.serializer ? f.serializer : (f.allow_pickle ? Py_True : Py_False);
    PyObject* r = PyObject_CallFunctionObjArgs(g_encode_ext, o, key ? Py_True : Py_False, pk, nullptr);
    if (r == nullptr) return false;
    char* buf;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(r, &buf, &n) != 0) {
        Py_DECREF(r);
        return false;
    }
    out.append(buf, static_cast<std::size_t>(n));
    Py_DECREF(r);
    return true;
}

// -- arbitrary-precision ints <-> little-endian two's complement bytes -------------------------------------
// CPython's public API for this came in 3.13 (PyLong_AsNativeBytes / PyLong_FromNativeBytes). Before it the
// only direct route is the private _PyLong_AsByteArray / _PyLong_FromByteArray, whose 5-argument form is
// the same from 3.9 through 3.12 (3.13 added an argument to the first and made both private for good), so
// that branch is compiled only for those versions. Both run in CI on their versions (tests/python/
// test_codec.py: exact encodings of big ints and their round trips, on every supported Python).

// Bits of |v| (of ~v for a negative v), by the public int.bit_length(): only reached for ints beyond 64
// bits, where the call is small beside the copy. -1 with a Python error set on failure.
std::int64_t bit_length(PyObject* v, bool negative) {
    PyObject* probe = negative ? PyNumber_Invert(v) : (Py_INCREF(v), v);
    if (probe == nullptr) return -1;
    PyObject* r = PyObject_CallMethod(probe, "bit_length", nullptr);
    Py_DECREF(probe);
    if (r == nullptr) return -1;
    const long long bits = PyLong_AsLongLong(r);
    Py_DECREF(r);
    return bits;
}

// Writes v as n bytes of little-endian two's complement (n is enough: bit_length / 8 + 1).
bool int_to_le_bytes(PyObject* v, unsigned char* out, std::size_t n) {
#if PY_VERSION_HEX >= 0x030D0000
    const Py_ssize_t need = PyLong_AsNativeBytes(v, out, static_cast<Py_ssize_t>(n), Py_ASNATIVEBYTES_LITTLE_ENDIAN);
    if (need < 0) return false;
    if (static_cast<std::size_t>(need) > n) {
        PyErr_SetString(PyExc_SystemError, "mmstore: big int needs more bytes than its bit length allows");
        return false;
    }
    return true;
#else
    return _PyLong_AsByteArray(reinterpret_cast<PyLongObject*>(v), out, n, /*little_endian=*/1, /*is_signed=*/1) == 0;
#endif
}

PyObject* int_from_le_bytes(const unsigned char* b, std::size_t n) {
#if PY_VERSION_HEX >= 0x030D0000
    return PyLong_FromNativeBytes(b, n, Py_ASNATIVEBYTES_LITTLE_ENDIAN);  // signed unless UNSIGNED_BUFFER
#else
    return _PyLong_FromByteArray(b, n, /*little_endian=*/1, /*is_signed=*/1);
#endif
}

bool encode_int(PyObject* o, std::string& out, CodecFlags f, bool key) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) return false;
    if (!overflow) {
        mmstore::codec::append_int(v, out);
        return true;
    }
    // Arbitrary precision: minimal two's complement length, at least 9 bytes here.
    const std::int64_t bits = bit_length(o, overflow < 0);
    if (bits < 0) return false;
    const std::size_t n = static_cast<std::size_t>(bits / 8 + 1);
    if (n > 0xFFFFFFFFu) return encode_ext(o, out, f, key);
    out.push_back(static_cast<char>(tag::kBigInt));
    put_u32(out, static_cast<std::uint32_t>(n));
    const std::size_t at = out.size();
    out.resize(at + n);
    return int_to_le_bytes(o, reinterpret_cast<unsigned char*>(&out[at]), n);
}

bool encode_items_sorted(PyObject* o, std::string& out, CodecFlags f, std::uint8_t t, int depth) {
    std::vector<std::string> parts;
    parts.reserve(static_cast<std::size_t>(PySet_GET_SIZE(o)));
    PyObject* it = PyObject_GetIter(o);
    if (it == nullptr) return false;
    while (PyObject* item = PyIter_Next(it)) {
        std::string e;
        const bool ok = encode_impl(item, e, f, true, depth + 1);
        Py_DECREF(item);
        if (!ok) {
            Py_DECREF(it);
            return false;
        }
        parts.push_back(std::move(e));
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return false;
    std::sort(parts.begin(), parts.end());
    // Distinct Python elements may share an encoding only if they are equal *and* of one type (1 and True
    // are distinct elements with distinct encodings), so no deduplication is needed.
    out.push_back(static_cast<char>(t));
    put_u32(out, static_cast<std::uint32_t>(parts.size()));
    for (const auto& p : parts) out += p;
    return true;
}

bool encode_impl(PyObject* o, std::string& out, CodecFlags f, bool key, int depth) {
    if (depth > kMaxDepth) {
        PyErr_SetString(PyExc_RecursionError, "mmstore: value nested deeper than 200 levels");
        return false;
    }
    PyTypeObject* t = Py_TYPE(o);
    if (o == Py_None) {
        out.push_back(static_cast<char>(tag::kNone));
        return true;
    }
    if (t == &PyBool_Type) {
        out.push_back(static_cast<char>(o == Py_True ? tag::kTrue : tag::kFalse));
        return true;
    }
    if (t == &PyLong_Type) return encode_int(o, out, f, key);
    if (t == &PyUnicode_Type) {
        Py_ssize_t n;
        const char* s = PyUnicode_AsUTF8AndSize(o, &n);
        if (s == nullptr) {
            // Lone surrogates have no UTF-8 form: fall back to the extension path (pickle).
            PyErr_Clear();
            return encode_ext(o, out, f, key);
        }
        return put_len_tagged(out, tag::kShortStr, tag::kStr, s, n);
    }
    if (t == &PyFloat_Type) {
        const double d = PyFloat_AS_DOUBLE(o);
        out.push_back(static_cast<char>(tag::kFloat));
        out.append(reinterpret_cast<const char*>(&d), 8);
        return true;
    }
    if (t == &PyBytes_Type)
        return put_len_tagged(out, tag::kShortBytes, tag::kBytes, PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o));
    if (t == &PyTuple_Type) {
        const Py_ssize_t n = PyTuple_GET_SIZE(o);
        out.push_back(static_cast<char>(tag::kTuple));
        put_u32(out, static_cast<std::uint32_t>(n));
        for (Py_ssize_t i = 0; i < n; ++i)
            if (!encode_impl(PyTuple_GET_ITEM(o, i), out, f, key, depth + 1)) return false;
        return true;
    }
    if (t == &PyList_Type || t == &PyDict_Type || t == &PySet_Type) {
        if (key) {
            PyErr_Format(PyExc_TypeError, "unhashable type: '%s'", t->tp_name);
            return false;
        }
        if (t == &PySet_Type) return encode_items_sorted(o, out, f, tag::kSet, depth);
        if (t == &PyList_Type) {
            const Py_ssize_t n = PyList_GET_SIZE(o);
            out.push_back(static_cast<char>(tag::kList));
            put_u32(out, static_cast<std::uint32_t>(n));
            for (Py_ssize_t i = 0; i < n; ++i) {
                if (PyList_GET_SIZE(o) != n) {
                    PyErr_SetString(PyExc_RuntimeError, "list changed size during encoding");
                    return false;
                }
                PyObject* item = PyList_GET_ITEM(o, i);
                Py_INCREF(item);
                const bool ok = encode_impl(item, out, f, false, depth + 1);
                Py_DECREF(item);
                if (!ok) return false;
            }
            return true;
        }
        const Py_ssize_t n = PyDict_GET_SIZE(o);
        out.push_back(static_cast<char>(tag::kDict));
        put_u32(out, static_cast<std::uint32_t>(n));
        Py_ssize_t pos = 0, seen = 0;
        PyObject *k, *v;
        while (PyDict_Next(o, &pos, &k, &v)) {
            Py_INCREF(k);
            Py_INCREF(v);
            const bool ok = encode_impl(k, out, f, true, depth + 1) && encode_impl(v, out, f, false, depth + 1);
            Py_DECREF(k);
            Py_DECREF(v);
            if (!ok) return false;
            if (PyDict_GET_SIZE(o) != n) {
                PyErr_SetString(PyExc_RuntimeError, "dict changed size during encoding");
                return false;
            }
            ++seen;
        }
        return true;
    }
    if (t == &PyFrozenSet_Type) return encode_items_sorted(o, out, f, tag::kFrozenSet, depth);
    return encode_ext(o, out, f, key);
}

PyObject* decode_impl(const char* b, std::size_t n, std::size_t& pos, CodecFlags f, int depth);

[[noreturn]] void corrupt(const char* what, std::size_t pos) {
    throw mmstore::FormatError(mmstore::ErrorCode::kCorrupt, "",
                               std::string("corrupt value encoding: ") + what + " at byte " + std::to_string(pos));
}

inline std::uint32_t rd32(const char* b, std::size_t n, std::size_t pos) {
    if (pos + 4 > n) corrupt("truncated length", pos);
    std::uint32_t v;
    std::memcpy(&v, b + pos, 4);
    return v;
}

inline void need(std::size_t n, std::size_t pos, std::uint64_t len) {
    if (len > n || pos > n - len) corrupt("length exceeds buffer", pos);
}

PyObject* decode_impl(const char* b, std::size_t n, std::size_t& pos, CodecFlags f, int depth) {
    if (depth > kMaxDepth) corrupt("nesting deeper than 200", pos);
    if (pos >= n) corrupt("missing tag", pos);
    const auto t = static_cast<std::uint8_t>(b[pos++]);
    if (t >= tag::kInt0 && t <= tag::kInt8) {
        const int len = t - tag::kInt0;
        need(n, pos, len);
        std::uint64_t u = 0;
        std::memcpy(&u, b + pos, len);
        if (len > 0 && len < 8 && (static_cast<std::uint8_t>(b[pos + len - 1]) & 0x80)) u |= ~std::uint64_t{0} << (8 * len);
        pos += len;
        return PyLong_FromLongLong(static_cast<long long>(u));
    }
    if (t >= tag::kShortStr && t < tag::kShortStr + 32) {
        const std::size_t len = t - tag::kShortStr;
        need(n, pos, len);
        PyObject* s = PyUnicode_DecodeUTF8(b + pos, static_cast<Py_ssize_t>(len), "strict");
        pos += len;
        return s;
    }
    if (t >= tag::kShortBytes && t < tag::kShortBytes + 32) {
        const std::size_t len = t - tag::kShortBytes;
        need(n, pos, len);
        PyObject* s = PyBytes_FromStringAndSize(b + pos, static_cast<Py_ssize_t>(len));
        pos += len;
        return s;
    }
    switch (t) {
        case tag::kNone: Py_RETURN_NONE;
        case tag::kFalse: Py_RETURN_FALSE;
        case tag::kTrue: Py_RETURN_TRUE;
        case tag::kFloat: {
            need(n, pos, 8);
            double d;
            std::memcpy(&d, b + pos, 8);
            pos += 8;
            return PyFloat_FromDouble(d);
        }
        case tag::kStr: case tag::kBytes: case tag::kBigInt: {
            const std::uint32_t len = rd32(b, n, pos);
            pos += 4;
            need(n, pos, len);
            PyObject* r = t == tag::kStr ? PyUnicode_DecodeUTF8(b + pos, len, "strict")
                        : t == tag::kBytes ? PyBytes_FromStringAndSize(b + pos, len)
                        : int_from_le_bytes(reinterpret_cast<const unsigned char*>(b + pos), len);
            pos += len;
            return r;
        }
        case tag::kTuple: case tag::kList: case tag::kSet: case tag::kFrozenSet: case tag::kDict: {
            const std::uint32_t count = rd32(b, n, pos);
            pos += 4;
            const std::uint64_t items = t == tag::kDict ? 2ull * count : count;
            if (items > n - pos) corrupt("element count exceeds buffer", pos);
            PyObject* c = t == tag::kTuple ? PyTuple_New(count) : t == tag::kList ? PyList_New(count)
                        : t == tag::kDict ? PyDict_New() : t == tag::kSet ? PySet_New(nullptr) : PyFrozenSet_New(nullptr);
            if (c == nullptr) return nullptr;
            try {
                for (std::uint32_t i = 0; i < count; ++i) {
                    PyObject* x = decode_impl(b, n, pos, f, depth + 1);
                    if (x == nullptr) {
                        Py_DECREF(c);
                        return nullptr;
                    }
                    if (t == tag::kTuple) {
                        PyTuple_SET_ITEM(c, i, x);
                    } else if (t == tag::kList) {
                        PyList_SET_ITEM(c, i, x);
                    } else if (t == tag::kDict) {
                        PyObject* v = decode_impl(b, n, pos, f, depth + 1);
                        const int rc = v == nullptr ? -1 : PyDict_SetItem(c, x, v);
                        Py_DECREF(x);
                        Py_XDECREF(v);
                        if (rc != 0) {
                            Py_DECREF(c);
                            return nullptr;
                        }
                    } else {
                        const int rc = PySet_Add(c, x);
                        Py_DECREF(x);
                        if (rc != 0) {
                            Py_DECREF(c);
                            return nullptr;
                        }
                    }
                }
            } catch (...) {
                Py_DECREF(c);
                throw;
            }
            return c;
        }
        case tag::kDate: case tag::kDateTime: case tag::kDecimal: case tag::kNdArray: case tag::kPickle:
        case tag::kRecord: {
            const std::size_t start = pos - 1;
            const std::size_t end = mmstore::codec::skip(std::string_view(b, n), start, depth);
            pos = end;
            PyObject* data = PyBytes_FromStringAndSize(b + start, static_cast<Py_ssize_t>(end - start));
            if (data == nullptr) return nullptr;
            PyObject* pk = f.serializer ? f.serializer : (f.allow_pickle ? Py_True : Py_False);
            PyObject* r = PyObject_CallFunctionObjArgs(g_decode_ext, data, pk, nullptr);
            Py_DECREF(data);
            return r;
        }
        default: corrupt("unknown tag", pos - 1);
    }
}

}  // namespace

bool encode(PyObject* o, std::string& out, CodecFlags flags, bool key) {
    if (encode_impl(o, out, flags, key, 0)) return true;
    if (flags.path != nullptr) rewrite_error(g_annotate, flags.path);
    return false;
}

PyObject* decode(const char* p, std::size_t n, CodecFlags flags) {
    try {
        std::size_t pos = 0;
        PyObject* r = decode_impl(p, n, pos, flags, 0);
        if (r != nullptr && pos != n) {
            Py_DECREF(r);
            corrupt("trailing bytes after value", pos);
        }
        if (r == nullptr) rewrite_error(g_decode_failure, flags.path);
        return r;
    } catch (...) {
        set_error_from_exception();
        if (flags.path != nullptr) rewrite_error(g_annotate, flags.path);
        return nullptr;
    }
}

bool init_codec() {
    PyObject* codec = PyImport_ImportModule("mmstore._codec");
    if (codec == nullptr) return false;
    g_encode_ext = PyObject_GetAttrString(codec, "encode_ext");
    g_decode_ext = PyObject_GetAttrString(codec, "decode_ext");
    Py_DECREF(codec);
    PyObject* errors = PyImport_ImportModule("mmstore._errors");
    if (errors == nullptr) return false;
    g_error_for_code = PyObject_GetAttrString(errors, "error_for_code");
    g_annotate = PyObject_GetAttrString(errors, "annotate");
    g_decode_failure = PyObject_GetAttrString(errors, "decode_failure");
    Py_DECREF(errors);
    return g_encode_ext && g_decode_ext && g_error_for_code && g_annotate && g_decode_failure;
}

void raise_error(int code, const std::string& path, const std::string& message_in, int pid, int sys_errno) {
    // Messages always name the store: "<path>: <problem>".
    const std::string message =
        (!path.empty() && message_in.rfind(path, 0) != 0) ? path + ": " + message_in : message_in;
    PyObject* exc = PyObject_CallFunction(g_error_for_code, "is#s#ii", code, path.data(), (Py_ssize_t)path.size(),
                                          message.data(), (Py_ssize_t)message.size(), pid, sys_errno);
    if (exc == nullptr) return;  // the call's own error stays set
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc)), exc);
    Py_DECREF(exc);
}

void set_error_from_exception() noexcept {
    try {
        throw;
    } catch (const mmstore::LockedError& e) {
        raise_error(static_cast<int>(e.code()), e.path(), e.what(), e.holder_pid());
    } catch (const mmstore::Error& e) {
        raise_error(static_cast<int>(e.code()), e.path(), e.what(), 0, e.sys_errno());
    } catch (const std::out_of_range& e) {
        PyErr_SetString(PyExc_IndexError, e.what());
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (...) {
        PyErr_SetString(PyExc_RuntimeError, "unknown C++ exception in mmstore");
    }
}

}  // namespace mmstore::py
