"""Typed records on a Dask cluster: mmstore.dask.read_records and mapping_lookup on a real LocalCluster with two
worker processes."""

import pytest

import mmstore

dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")
distributed = pytest.importorskip("distributed")

from mmstore.dask import mapping_lookup, read_records  # noqa: E402


@mmstore.struct
class Sale:
    shop: str
    amount: int
    price: float


@mmstore.struct
class Shop:
    city: str
    size: int


def _sales(path, n):
    return mmstore.RecordArray.build((Sale(f"s{i % 7}", i, i / 10) for i in range(n)), path, progress=False)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  worker_dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


def test_read_records_partitions_are_row_ranges_computed_on_the_workers(tmp_path, client):
    path = tmp_path / "sales.mma"
    _sales(path, 10_000).close()
    ddf = read_records(path, npartitions=4)
    assert ddf.npartitions == 4 and list(ddf.columns) == ["shop", "amount", "price"]
    assert ddf.divisions == (0, 2500, 5000, 7500, 9999)
    total = client.compute(ddf.amount.sum()).result()
    assert total == sum(range(10_000))
    by_shop = client.compute(ddf.groupby("shop").amount.sum()).result()
    assert by_shop.to_dict() == {f"s{k}": sum(range(k, 10_000, 7)) for k in range(7)}
    df = client.compute(ddf).result()
    assert df.index.tolist() == list(range(10_000)) and df.shop.iloc[9] == "s2" and df.price.iloc[5] == 0.5
    # the workers opened the file themselves; this (client) process never mapped it for the partitions
    opened = client.run(lambda: sorted(p for _, p in __import__("mmstore.dask", fromlist=["x"])._OPEN_FILES))
    assert len(opened) == 2 and any(str(path) in paths for paths in opened.values())
    import mmstore.dask

    assert ("array", str(path)) not in mmstore.dask._OPEN_FILES


def test_read_records_graph_size_does_not_depend_on_the_file_size(tmp_path):
    small, large = tmp_path / "small.mma", tmp_path / "large.mma"
    _sales(small, 100).close()
    _sales(large, 200_000).close()
    import pickle

    g_small = read_records(small, npartitions=3).__dask_graph__()
    g_large = read_records(large, npartitions=3).__dask_graph__()
    assert len(g_small) == len(g_large)
    size_small = len(pickle.dumps(dict(g_small)))
    size_large = len(pickle.dumps(dict(g_large)))
    assert abs(size_small - size_large) < 200  # only the numbers in the row ranges differ


def test_read_records_columns_converts_only_those_fields(tmp_path):
    _sales(tmp_path / "a.mma", 100).close()
    ddf = read_records(tmp_path / "a.mma", npartitions=2, columns=["amount"])
    assert list(ddf.columns) == ["amount"]
    assert ddf.amount.sum().compute(scheduler="sync") == sum(range(100))
    with pytest.raises(KeyError, match="no field 'nope'"):
        read_records(tmp_path / "a.mma", columns=["nope"])


def test_read_records_rejects_bad_arguments(tmp_path):
    _sales(tmp_path / "a.mma", 10).close()
    with pytest.raises(ValueError, match="npartitions"):
        read_records(tmp_path / "a.mma", npartitions=0)
    with pytest.raises(FileNotFoundError):
        read_records(tmp_path / "missing.mma")


def test_mapping_lookup_joins_rows_against_a_mapping_file(tmp_path, client):
    sales = tmp_path / "sales.mma"
    _sales(sales, 1000).close()
    shops = tmp_path / "shops.mmm"
    mmstore.Mapping.build(((f"s{k}", Shop(f"city{k}", k * 10)) for k in range(6)), shops, key=str,
                          schema=Shop.__schema__, progress=False).close()  # no s6: its rows get missing values
    joined = mapping_lookup(read_records(sales, npartitions=3), "shop", shops)
    assert list(joined.columns) == ["shop", "amount", "price", "city", "size"]
    df = client.compute(joined).result()
    assert len(df) == 1000
    assert df.loc[3, "city"] == "city3" and df.loc[3, "size"] == 30
    assert pd.isna(df.loc[6, "city"]) and pd.isna(df.loc[6, "size"])
    per_city = client.compute(joined.groupby("city")["size"].sum()).result()
    assert per_city["city2"] == 20 * len(range(2, 1000, 7))


def test_mapping_lookup_of_plain_values_and_bad_columns(tmp_path):
    sales = tmp_path / "sales.mma"
    _sales(sales, 50).close()
    plain = tmp_path / "plain.mmm"
    mmstore.Mapping.build({f"s{k}": k for k in range(7)}, plain, key=str, progress=False).close()
    ddf = read_records(sales, npartitions=2)
    df = mapping_lookup(ddf, "shop", plain, prefix="shop_").compute(scheduler="sync")
    assert df["shop_value"].tolist() == [i % 7 for i in range(50)]
    with pytest.raises(KeyError, match="no column 'nope'"):
        mapping_lookup(ddf, "nope", plain)
    with pytest.raises(ValueError, match="already exist"):
        mapping_lookup(mapping_lookup(ddf, "shop", plain), "shop", plain)
