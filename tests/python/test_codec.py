"""The value codec: round trips of every native type through a Dict and through encode/decode, exact bytes
of the documented encodings, canonical set order, the pickle fallback and its refusal, and the
key-equality rule (keys compare by type and value through their encoding)."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import math
import pickle
import struct

import numpy as np
import pytest
from hypothesis import given, settings

import mmstore
from conftest import assert_same, canon, values

# -- round trips -------------------------------------------------------------------------------------------

INTS = [0, 1, -1, 127, 128, 129, -127, -128, -129, 255, 256, -256, 2**31 - 1, -(2**31), 2**55 - 1, 2**55,
        2**55 + 1, -(2**55) - 1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**64 - 1, 2**64, -(2**64),
        2**100, -(2**100), 10**300, -(10**300)]

STRS = ["", "a", "abcdefg", "abcdefgh", "x" * 31, "x" * 32, "é", "éé" * 3, "日本語", "😀", "\x00nul\x00",
        "a" * 1_000_000, "é" * 20]

BYTES = [b"", b"\x00", b"abcdefg", b"abcdefgh", bytes(range(256)), b"\xff" * 31, b"\xff" * 32, b"z" * 100_000]

CONTAINERS = [
    (), (1,), (1, "two", b"3", None, True, 4.5), [], [1, [2, [3, [4]]]], {}, {"a": 1, 2: "b", (3,): [4]},
    {1: 1, 1.0: 2, True: 3}.copy(), set(), {1, 2, 3}, {"a", b"a", (1, 2)}, frozenset(), frozenset({-1, 0, 1}),
    {"nested": {"deep": [(), {}, set(), frozenset({frozenset({1})})]}}, [{"k": {1, 2}}, ({},)],
]

FLOATS = [0.0, -0.0, 1.5, -1.5, 1e308, -1e-308, 5e-324, math.inf, -math.inf, math.pi]


def _roundtrip_dict(path, value, **kw):
    with mmstore.Dict(path, **kw) as d:
        d["v"] = value
        first = d["v"]
    with mmstore.Dict(path, create=False, **kw) as d:
        return first, d["v"]


ALL_SIMPLE = [None, True, False] + INTS + FLOATS + STRS + BYTES + CONTAINERS


@pytest.mark.parametrize("value", ALL_SIMPLE, ids=lambda v: type(v).__name__ + ":" + repr(v)[:24])
def test_native_value_round_trips_through_encode_decode_exactly(value):
    assert_same(mmstore.decode(mmstore.encode(value)), value)


def test_native_values_round_trip_through_a_dict_across_reopen(tmp_path):
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        for i, v in enumerate(ALL_SIMPLE):
            d[i] = v
    with mmstore.Dict(path) as d:
        assert len(d) == len(ALL_SIMPLE)
        for i, v in enumerate(ALL_SIMPLE):
            assert_same(d[i], v)


def test_native_values_round_trip_as_keys(tmp_path):
    hashable = [v for v in ALL_SIMPLE if type(v) not in (list, dict, set)]
    hashable = [v for v in hashable if not (type(v) is tuple and any(type(x) in (list, dict, set) for x in v))]
    with mmstore.Dict(tmp_path / "d.mms") as d:
        for i, k in enumerate(hashable):
            d[k] = i
        # Distinct encodings are distinct keys; the list has no two values with one encoding.
        assert len(d) == len({mmstore.encode(k, True) for k in hashable})
        for i, k in enumerate(hashable):
            assert d[k] == i
            assert k in d
        assert [canon(k) for k in d] == [canon(k) for k in hashable]


def test_nan_round_trips_with_its_bits():
    nan = struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]
    for x in (math.nan, -math.nan, nan):
        y = mmstore.decode(mmstore.encode(x))
        assert math.isnan(y)
        assert struct.pack("<d", y) == struct.pack("<d", x)


def test_negative_zero_keeps_its_sign(tmp_path):
    first, reopened = _roundtrip_dict(tmp_path / "d.mms", -0.0)
    assert math.copysign(1.0, first) == -1.0
    assert math.copysign(1.0, reopened) == -1.0


@settings(max_examples=100, deadline=None)
@given(values)
def test_any_generated_value_round_trips_through_encode_decode(value):
    assert_same(mmstore.decode(mmstore.encode(value)), value)


def test_generated_values_round_trip_through_one_store(tmp_path):
    stored = []
    path = tmp_path / "d.mms"

    @settings(max_examples=100, deadline=None)
    @given(values)
    def put(value):
        with mmstore.Dict(path) as d:
            d[len(d)] = value
            assert_same(d[len(d) - 1], value)
        stored.append(value)

    put()
    with mmstore.Dict(path, create=False) as d:
        assert len(d) == len(stored)
        for i, v in enumerate(stored):
            assert_same(d[i], v)


def test_lone_surrogate_strings_round_trip_as_values_and_keys(tmp_path):
    s = "a\ud800b"
    assert mmstore.decode(mmstore.encode(s)) == s
    assert mmstore.encode(s) != mmstore.encode("a\ufffdb")
    with mmstore.Dict(tmp_path / "d.mms") as d:
        d[s] = s
        d["\udfff"] = 1
        assert d[s] == s
        assert d["\udfff"] == 1
        assert "a\ufffdb" not in d


# -- exact bytes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, b"\x00"),
        (False, b"\x01"),
        (True, b"\x02"),
        (0, b"\x05"),
        (1, b"\x06\x01"),
        (-1, b"\x06\xff"),
        (127, b"\x06\x7f"),
        (128, b"\x07\x80\x00"),
        (-128, b"\x06\x80"),
        (-129, b"\x07\x7f\xff"),
        (2**63 - 1, b"\x0d" + b"\xff" * 7 + b"\x7f"),
        (2**64, b"\x04\x09\x00\x00\x00" + b"\x00" * 8 + b"\x01"),
        (1.5, b"\x03" + struct.pack("<d", 1.5)),
        ("", b"\x20"),
        ("ab", b"\x22ab"),
        ("é", b"\x22\xc3\xa9"),
        ("x" * 31, b"\x3f" + b"x" * 31),
        ("x" * 32, b"\x10\x20\x00\x00\x00" + b"x" * 32),
        (b"ab", b"\x42ab"),
        ((1,), b"\x12\x01\x00\x00\x00\x06\x01"),
        ([1], b"\x13\x01\x00\x00\x00\x06\x01"),
        ({1: 2}, b"\x14\x01\x00\x00\x00\x06\x01\x06\x02"),
        ({3, 1, 2}, b"\x15\x03\x00\x00\x00\x06\x01\x06\x02\x06\x03"),
        (frozenset(), b"\x16\x00\x00\x00\x00"),
    ],
    ids=repr,
)
def test_encoding_has_the_documented_bytes(value, expected):
    assert mmstore.encode(value) == expected


def test_integers_use_the_shortest_twos_complement_form():
    for v in INTS:
        enc = mmstore.encode(v)
        if -(2**63) <= v < 2**63:
            n = 0 if v == 0 else (v.bit_length() if v > 0 else (~v).bit_length()) // 8 + 1
            assert enc == bytes([0x05 + n]) + v.to_bytes(n, "little", signed=True), v
        else:
            n = (v if v > 0 else ~v).bit_length() // 8 + 1
            assert enc == b"\x04" + struct.pack("<I", n) + v.to_bytes(n, "little", signed=True), v


def test_set_encoding_is_canonical_whatever_the_insertion_order():
    assert mmstore.encode({3, 1, 2}) == mmstore.encode({2, 3, 1})
    a = set()
    for x in ["zeta", 5, b"b", (1, "x"), None, -7, "alpha", 2.5]:
        a.add(x)
    b = set()
    for x in [2.5, "alpha", -7, None, (1, "x"), b"b", 5, "zeta"]:
        b.add(x)
    assert mmstore.encode(a) == mmstore.encode(b)
    assert mmstore.encode(frozenset(a)) == mmstore.encode(frozenset(b))
    assert mmstore.encode(frozenset(a)) != mmstore.encode(a)  # set and frozenset stay distinct types


def test_encode_key_refuses_unhashable_values_with_type_error():
    for v in ([1], {"a": 1}, {1}, (1, [2]), np.arange(3)):
        with pytest.raises(TypeError):
            mmstore.encode(v, True)
    assert mmstore.encode((1, 2), True) == mmstore.encode((1, 2))


# -- extension types -----------------------------------------------------------------------------------------

PARIS = None
try:
    import zoneinfo

    PARIS = zoneinfo.ZoneInfo("Europe/Paris")
except Exception:  # tzdata missing
    PARIS = None

TZ_VALUES = [
    dt.datetime(2024, 3, 1, 12, 30, 45, 123456),
    dt.datetime(1, 1, 1),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-8), "PST")),
    dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(seconds=1, microseconds=5))),
    dt.datetime(2024, 11, 3, 1, 30, fold=1),
]


def _check_datetime(got, exp):
    assert type(got) is type(exp)
    assert got == exp
    assert got.replace(tzinfo=None) == exp.replace(tzinfo=None)  # same wall clock, not only same instant
    assert got.fold == exp.fold
    assert got.tzinfo == exp.tzinfo
    if exp.tzinfo is not None:
        assert type(got.tzinfo) is type(exp.tzinfo)
        assert got.tzname() == exp.tzname()
        assert got.utcoffset() == exp.utcoffset()


@pytest.mark.parametrize("value", TZ_VALUES, ids=repr)
def test_datetime_round_trips_with_its_timezone(value, tmp_path):
    _check_datetime(mmstore.decode(mmstore.encode(value)), value)
    first, reopened = _roundtrip_dict(tmp_path / "d.mms", value)
    _check_datetime(first, value)
    _check_datetime(reopened, value)


@pytest.mark.skipif(PARIS is None, reason="tzdata for Europe/Paris is not installed")
def test_zoneinfo_datetime_round_trips_with_its_zone_and_fold(tmp_path):
    summer = dt.datetime(2024, 7, 14, 12, 0, tzinfo=PARIS)
    ambiguous = dt.datetime(2024, 10, 27, 2, 30, tzinfo=PARIS, fold=1)
    for v in (summer, ambiguous):
        got = mmstore.decode(mmstore.encode(v))
        _check_datetime(got, v)
        assert got.tzinfo is PARIS  # ZoneInfo instances are cached per key
    first, reopened = _roundtrip_dict(tmp_path / "d.mms", ambiguous)
    _check_datetime(reopened, ambiguous)
    assert reopened.utcoffset() == dt.timedelta(hours=1)


def test_date_round_trips_and_stays_a_date(tmp_path):
    for v in (dt.date(2024, 2, 29), dt.date(1, 1, 1), dt.date(9999, 12, 31)):
        got = mmstore.decode(mmstore.encode(v))
        assert type(got) is dt.date and got == v
    first, reopened = _roundtrip_dict(tmp_path / "d.mms", dt.date(2000, 1, 1))
    assert type(reopened) is dt.date and reopened == dt.date(2000, 1, 1)


@pytest.mark.parametrize("text", ["0", "-0", "1.10", "1E+3", "-123.456e-7", "NaN", "-NaN", "sNaN", "Infinity",
                                  "-Infinity", "3.141592653589793238462643383279502884197"])
def test_decimal_round_trips_with_its_exact_representation(text, tmp_path):
    v = decimal.Decimal(text)
    got = mmstore.decode(mmstore.encode(v))
    assert type(got) is decimal.Decimal
    assert str(got) == str(v)  # '-0', '1E+3' and 'NaN' keep their form; NaN != NaN so compare text
    first, reopened = _roundtrip_dict(tmp_path / "d.mms", v)
    assert str(reopened) == str(v)


def _arrays():
    a3 = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    return [
        np.arange(10, dtype=np.int8),
        np.arange(10, dtype=np.uint16) * 300,
        np.array([-(2**63), 2**63 - 1], dtype=np.int64),
        np.array([1.5, -0.0, np.inf, np.nan], dtype=np.float32),
        np.linspace(0, 1, 7),
        np.array([1.0, 2.0], dtype=">f8"),  # big-endian dtype kept as such
        np.array([True, False, True]),
        np.array([1 + 2j, -3.5j], dtype=np.complex128),
        np.array([1 + 2j], dtype=np.complex64),
        np.array(["2024-01-01T00:00:00.123456789", "NaT"], dtype="datetime64[ns]"),
        np.array([1, 2], dtype="timedelta64[s]"),
        np.array(["ab", "çé"], dtype="U3"),
        np.array([b"xy", b"z"], dtype="S2"),
        np.zeros((0, 3)),
        a3,
        a3[:, ::2, 1:],  # non-contiguous input
        a3.transpose(2, 0, 1),  # Fortran-ish order
        np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        np.arange(20, dtype=np.float16)[::3],
    ]


@pytest.mark.parametrize("arr", _arrays(), ids=lambda a: f"{a.dtype.str}{a.shape}")
def test_numpy_array_round_trips_with_dtype_and_shape(arr, tmp_path):
    for got in (mmstore.decode(mmstore.encode(arr)), *_roundtrip_dict(tmp_path / "d.mms", arr)):
        assert type(got) is np.ndarray
        assert got.dtype == arr.dtype
        assert got.dtype.str == arr.dtype.str
        assert got.shape == arr.shape
        assert got.tobytes() == np.ascontiguousarray(arr).tobytes()  # -0.0, nan and NaT bits preserved
        if arr.dtype.kind not in "fcmM":
            assert np.array_equal(got, arr)


@pytest.mark.parametrize("arr", [np.array(42.0), np.array(True), np.array(7, dtype=np.int16)], ids=repr)
def test_zero_dimensional_array_round_trips_as_zero_dimensional(arr):
    # Regression: np.ascontiguousarray returns ndim >= 1, so 0-d arrays were encoded with shape (1,).
    got = mmstore.decode(mmstore.encode(arr))
    assert got.dtype == arr.dtype
    assert got.shape == ()
    assert got.item() == arr.item()


def test_numpy_array_is_refused_as_a_key(tmp_path):
    with mmstore.Dict(tmp_path / "d.mms") as d:
        with pytest.raises(TypeError):
            d[np.arange(3)] = 1
        with pytest.raises(TypeError):
            np.arange(3) in d  # noqa: B015
        assert len(d) == 0


def test_numpy_scalars_are_not_native_and_round_trip_by_pickle():
    for v in (np.int64(5), np.float32(1.5)):
        enc = mmstore.encode(v)
        assert enc[0] == 0x1B
        got = mmstore.decode(enc)
        assert type(got) is type(v) and got == v


# -- pickle fallback -------------------------------------------------------------------------------------------


class Color(enum.IntEnum):
    RED = 1
    GREEN = 2


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return type(other) is Point and (self.x, self.y) == (other.x, other.y)

    def __hash__(self):
        return hash((self.x, self.y))


class MyStr(str):
    pass


@pytest.mark.parametrize("value", [Color.GREEN, Point(1, [2]), MyStr("sub"), dt.timedelta(days=3),
                                   complex(1, 2), bytearray(b"ba"), range(3)], ids=repr)
def test_types_without_native_encoding_round_trip_by_pickle_keeping_their_type(value, tmp_path):
    enc = mmstore.encode(value)
    assert enc[0] == 0x1B
    assert pickle.loads(enc[5:]) == value  # tag, u32 length, then a plain pickle
    assert struct.unpack_from("<I", enc, 1)[0] == len(enc) - 5
    for got in (mmstore.decode(enc), *_roundtrip_dict(tmp_path / "d.mms", value)):
        assert type(got) is type(value)
        assert got == value


def test_subclass_key_is_distinct_from_its_base_value(tmp_path):
    with mmstore.Dict(tmp_path / "d.mms") as d:
        d[Color.RED] = "enum"
        d[1] = "int"
        d[MyStr("a")] = "sub"
        d["a"] = "str"
        assert len(d) == 4
        assert d[Color.RED] == "enum" and d[1] == "int"
        assert type(next(iter(d))) is Color


def test_allow_pickle_false_refuses_to_write_a_pickle(tmp_path):
    with mmstore.Dict(tmp_path / "d.mms", allow_pickle=False) as d:
        assert d.allow_pickle is False
        with pytest.raises(mmstore.EncodeError) as info:
            d["p"] = Point(1, 2)
        assert isinstance(info.value, TypeError)
        assert "Point" in str(info.value)
        with pytest.raises(mmstore.EncodeError):
            d[Color.RED] = 1
        with pytest.raises(mmstore.EncodeError):
            d.update({"x": [1, Point(0, 0)]})
        d["native"] = [1, "two", dt.date(2020, 1, 1), decimal.Decimal("1.5")]  # natives are still fine
        assert "p" not in d and "x" not in d
        assert len(d) == 1
    with mmstore.List(tmp_path / "l.mms", allow_pickle=False) as l:
        with pytest.raises(mmstore.EncodeError):
            l.append(Color.RED)
        with pytest.raises(mmstore.EncodeError):
            l.insert(0, Point(1, 1))
        assert len(l) == 0


def test_allow_pickle_false_refuses_to_read_a_stored_pickle(tmp_path):
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d["p"] = Point(3, 4)
        d["ok"] = 1
        d[Color.RED] = "enum key"
    with mmstore.Dict(path, allow_pickle=False) as d:
        assert d["ok"] == 1
        with pytest.raises(mmstore.EncodeError):
            d["p"]
        with pytest.raises(mmstore.EncodeError):
            list(d.keys())  # the enum key is a pickle too
    with mmstore.List(tmp_path / "l.mms") as l:
        l.append(Point(0, 1))
    with mmstore.List(tmp_path / "l.mms", allow_pickle=False) as l:
        with pytest.raises(mmstore.EncodeError):
            l[0]
    with pytest.raises(mmstore.EncodeError):
        mmstore.decode(mmstore.encode(Point(1, 1)), False)
    assert mmstore.decode(mmstore.encode(Point(1, 1)), True) == Point(1, 1)


def test_encode_error_from_a_store_names_its_path(tmp_path):
    # Regression: errors raised by _codec.encode_ext/decode_ext had path '' and no path in the message.
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d["p"] = Point(1, 2)
    with mmstore.Dict(path, allow_pickle=False) as d:
        with pytest.raises(mmstore.EncodeError) as write:
            d["q"] = Point(3, 4)
        with pytest.raises(mmstore.EncodeError) as read:
            d["p"]
    for info in (write, read):
        assert info.value.path == str(path)
        assert str(path) in str(info.value)


def test_unpicklable_value_raises_encode_error(tmp_path):
    with mmstore.Dict(tmp_path / "d.mms") as d:
        with pytest.raises(mmstore.EncodeError):
            d["lambda"] = lambda: 0
        assert "lambda" not in d


def test_nesting_deeper_than_the_limit_is_refused_not_crashing():
    v: list = []
    for _ in range(1000):
        v = [v]
    with pytest.raises(RecursionError):
        mmstore.encode(v)


# -- the key-equality rule -------------------------------------------------------------------------------------


def test_int_float_and_bool_with_equal_values_are_three_distinct_keys(tmp_path):
    # Documented difference from dict: keys compare by type and value (their canonical encoding).
    with mmstore.Dict(tmp_path / "d.mms") as d:
        d[1] = "int"
        assert 1.0 not in d
        assert True not in d
        assert d.get(1.0) is None
        d[1.0] = "float"
        d[True] = "bool"
        assert len(d) == 3
        assert (d[1], d[1.0], d[True]) == ("int", "float", "bool")
        assert [type(k) for k in d] == [int, float, bool]
        d[0.0] = "zero"
        assert -0.0 not in d
        d[-0.0] = "negative zero"
        assert d[0.0] == "zero" and d[-0.0] == "negative zero"
        assert math.copysign(1, list(d)[-1]) == -1
        d[(1, 2)] = "tuple"
        assert (1.0, 2) not in d and (True, 2) not in d
        del d[1]
        assert d[1.0] == "float" and d[True] == "bool"
    with mmstore.Dict(tmp_path / "d.mms") as d:
        assert len(d) == 5
        assert 1 not in d and 1.0 in d


def test_nan_key_is_found_by_any_nan_with_the_same_bits(tmp_path):
    with mmstore.Dict(tmp_path / "d.mms") as d:
        d[math.nan] = "nan"
        assert d[float("nan")] == "nan"  # unlike dict, where nan != nan
        d[(math.nan, 1)] = "tuple"
        assert d[(float("nan"), 1)] == "tuple"
        assert len(d) == 2


def test_memoryview_is_stored_as_the_bytes_it_shows(tmp_path):
    # issue 14: sharedbuffers users store memoryviews; they read back as bytes (a view cannot outlive its buffer).
    import array

    with mmstore.Dict(tmp_path / "m.mms", allow_pickle=False) as d:
        d["short"] = memoryview(b"abc")
        d["long"] = memoryview(b"x" * 100)
        d["typed"] = memoryview(array.array("i", [1, 2]))
        d["strided"] = memoryview(b"abcdef")[::2]
        d[memoryview(b"key")] = 1  # a read-only byte view is hashable: the same key as b"key"
        assert d["short"] == b"abc" and type(d["short"]) is bytes and d["long"] == b"x" * 100
        assert d["typed"] == array.array("i", [1, 2]).tobytes() and d["strided"] == b"ace" and d[b"key"] == 1
        with pytest.raises(TypeError):
            d[memoryview(bytearray(b"w"))] = 1  # writable views are unhashable, as for dict
    with mmstore.List(tmp_path / "l.mms") as lst:
        lst.append(memoryview(b"zz"))
        assert lst[0] == b"zz"
    assert mmstore.decode(mmstore.encode(memoryview(b"q"))) == b"q"
