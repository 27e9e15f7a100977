// bench/cpp/bench_dict.cpp
//
// mmstore::Dict against absl::flat_hash_map<std::string, std::string> (in RAM, the speed ceiling) and
// LMDB (the persistent peer) on 1M byte-string keys ("key%08d", 11 bytes) with 16-byte values.
//
//   Lookup/*     one random get per iteration over a pre-built 1M store; reads the first value byte so
//                every peer pays for reaching its value. items/s = lookups per second.
//   Insert/*     one iteration = 1M inserts, in random order, into a fresh empty store (one write
//                transaction for LMDB, committed inside the timed region; mmstore's close(), which
//                msyncs, is outside it). items/s = inserts per second.
//   GetMany/B    mmstore::Dict::get_many over batches of B random keys; items/s = keys per second.
//   LookupThreads/threads:T   T threads doing Lookup on one shared handle (absl: one shared map); items/s =
//                lookups of all threads per second of wall time.
//
// The 1M store each lookup family reads is built once per process (function-local statics, first touched
// before the timed loop starts), not once per repetition or iteration-count probe. Stores live in a fresh mkdtemp directory under $TMPDIR (default /tmp), removed at exit.
// LMDB is opened as a fair peer for a non-durable mmstore: MDB_NOSYNC | MDB_WRITEMAP | MDB_NOMETASYNC,
// mapsize 4 GiB (a sparse file). bench/run_cpp.py runs this binary and prints the ratio table.
//
// Build: cmake .. -G Ninja -DMMSTORE_BUILD_BENCH=ON -DCMAKE_BUILD_TYPE=Release && ninja mmstore_bench
#include <benchmark/benchmark.h>
#include <lmdb.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "mmstore/dict.hpp"

namespace {

namespace fs = std::filesystem;

constexpr std::size_t kEntries = 1'000'000;
constexpr std::size_t kValueBytes = 16;
constexpr std::size_t kLmdbMapSize = std::size_t{4} << 30;  // 4 GiB: 1M small entries need ~60 MB
constexpr std::uint64_t kSeed = 20240601;

// --- the workload, built once ------------------------------------------------------------------------------
struct Workload {
    std::vector<std::string> keys;          // insertion order: a random permutation of key00000000..
    std::vector<std::string> values;        // values[i] belongs to keys[i]
    // A second, independent permutation of the keys, stored as its own copies so that reading the next key
    // is a sequential access: the random accesses measured are the store's, not the benchmark's.
    std::vector<std::string> lookup_keys;
    std::vector<std::string_view> lookups;  // views of lookup_keys (get_many takes a span of views)

    Workload() {
        std::vector<std::size_t> order(kEntries);
        for (std::size_t i = 0; i < kEntries; ++i) order[i] = i;
        std::mt19937_64 rng(kSeed);
        std::shuffle(order.begin(), order.end(), rng);
        keys.reserve(kEntries);
        values.reserve(kEntries);
        char buf[32];
        for (std::size_t i : order) {
            std::snprintf(buf, sizeof buf, "key%08zu", i);
            keys.emplace_back(buf);
            std::snprintf(buf, sizeof buf, "val-%012zu", i);  // exactly kValueBytes
            values.emplace_back(buf, kValueBytes);
        }
        lookup_keys = keys;
        std::shuffle(lookup_keys.begin(), lookup_keys.end(), rng);
        lookups.assign(lookup_keys.begin(), lookup_keys.end());
    }
};

const Workload& workload() {
    static const Workload w;
    return w;
}

// A scratch directory for the whole process, removed by the static destructor at exit.
struct TempDir {
    fs::path path;
    TempDir() {
        const char* base = std::getenv("TMPDIR");
        std::string tmpl = std::string(base && *base ? base : "/tmp") + "/mmstore-bench-XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    fs::path fresh(const std::string& stem) {  // a new, unused path inside the directory
        static int counter = 0;
        return path / (stem + "-" + std::to_string(counter++));
    }
};

TempDir& tmp() {
    static TempDir t;
    return t;
}

void check_mdb(int rc, const char* what) {
    if (rc != MDB_SUCCESS) throw std::runtime_error(std::string(what) + ": " + mdb_strerror(rc));
}

// --- the peers -----------------------------------------------------------------------------------------------
struct Lmdb {
    MDB_env* env = nullptr;
    MDB_dbi dbi = 0;
    fs::path dir;

    explicit Lmdb(fs::path d) : dir(std::move(d)) {
        fs::create_directories(dir);
        check_mdb(mdb_env_create(&env), "mdb_env_create");
        check_mdb(mdb_env_set_mapsize(env, kLmdbMapSize), "mdb_env_set_mapsize");
        check_mdb(mdb_env_open(env, dir.c_str(), MDB_NOSYNC | MDB_WRITEMAP | MDB_NOMETASYNC, 0600), "mdb_env_open");
        MDB_txn* txn = nullptr;
        check_mdb(mdb_txn_begin(env, nullptr, 0, &txn), "mdb_txn_begin");
        check_mdb(mdb_dbi_open(txn, nullptr, 0, &dbi), "mdb_dbi_open");
        check_mdb(mdb_txn_commit(txn), "mdb_txn_commit");
    }
    ~Lmdb() {
        mdb_env_close(env);
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    // Timed part of an insert run: one write transaction, committed.
    void insert_all(const Workload& w) {
        MDB_txn* txn = nullptr;
        check_mdb(mdb_txn_begin(env, nullptr, 0, &txn), "mdb_txn_begin");
        for (std::size_t i = 0; i < w.keys.size(); ++i) {
            MDB_val k{w.keys[i].size(), const_cast<char*>(w.keys[i].data())};
            MDB_val v{w.values[i].size(), const_cast<char*>(w.values[i].data())};
            check_mdb(mdb_put(txn, dbi, &k, &v, 0), "mdb_put");
        }
        check_mdb(mdb_txn_commit(txn), "mdb_txn_commit");
    }
};

std::unique_ptr<mmstore::Dict> new_mmstore(const std::string& path) {
    return std::make_unique<mmstore::Dict>(path);
}

void insert_all(mmstore::Dict& d, const Workload& w) {
    for (std::size_t i = 0; i < w.keys.size(); ++i) d.set(w.keys[i], w.values[i]);
}

void insert_all(absl::flat_hash_map<std::string, std::string>& m, const Workload& w) {
    for (std::size_t i = 0; i < w.keys.size(); ++i) m.insert_or_assign(w.keys[i], w.values[i]);
}

// The loaded 1M stores the lookup families read, built on first use.
mmstore::Dict& loaded_mmstore() {
    static std::unique_ptr<mmstore::Dict> d = [] {
        auto p = new_mmstore(tmp().fresh("lookup.mms").string());
        insert_all(*p, workload());
        return p;
    }();
    return *d;
}

absl::flat_hash_map<std::string, std::string>& loaded_absl() {
    static absl::flat_hash_map<std::string, std::string> m = [] {
        absl::flat_hash_map<std::string, std::string> x;
        insert_all(x, workload());
        return x;
    }();
    return m;
}

Lmdb& loaded_lmdb() {
    static std::unique_ptr<Lmdb> db = [] {
        auto p = std::make_unique<Lmdb>(tmp().fresh("lookup.lmdb"));
        p->insert_all(workload());
        return p;
    }();
    return *db;
}

// --- lookups -----------------------------------------------------------------------------------------------
void Lookup_mmstore(benchmark::State& state) {
    const Workload& w = workload();
    const mmstore::Dict& d = loaded_mmstore();
    std::size_t i = 0;
    unsigned sink = 0;
    for (auto _ : state) {
        const std::optional<std::string_view> v = d.get(w.lookups[i]);
        sink += static_cast<unsigned char>((*v)[0]);
        if (++i == w.lookups.size()) i = 0;
    }
    benchmark::DoNotOptimize(sink);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void Lookup_absl(benchmark::State& state) {
    const Workload& w = workload();
    const auto& m = loaded_absl();
    std::size_t i = 0;
    unsigned sink = 0;
    for (auto _ : state) {
        // Debian's abseil is built with its own absl::string_view (not an alias of std::string_view).
        auto it = m.find(absl::string_view(w.lookups[i].data(), w.lookups[i].size()));
        sink += static_cast<unsigned char>(it->second[0]);
        if (++i == w.lookups.size()) i = 0;
    }
    benchmark::DoNotOptimize(sink);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void Lookup_lmdb(benchmark::State& state) {
    const Workload& w = workload();
    Lmdb& db = loaded_lmdb();
    MDB_txn* txn = nullptr;
    check_mdb(mdb_txn_begin(db.env, nullptr, MDB_RDONLY, &txn), "mdb_txn_begin");
    std::size_t i = 0;
    unsigned sink = 0;
    for (auto _ : state) {
        MDB_val k{w.lookups[i].size(), const_cast<char*>(w.lookups[i].data())};
        MDB_val v;
        if (mdb_get(txn, db.dbi, &k, &v) != MDB_SUCCESS) state.SkipWithError("mdb_get missed a key");
        sink += static_cast<unsigned char>(static_cast<const char*>(v.mv_data)[0]);
        if (++i == w.lookups.size()) i = 0;
    }
    mdb_txn_abort(txn);
    benchmark::DoNotOptimize(sink);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// Batched lookups: one iteration = one get_many call over the next B keys of the lookup order.
void GetMany_mmstore(benchmark::State& state) {
    const Workload& w = workload();
    const mmstore::Dict& d = loaded_mmstore();
    const std::size_t batch = static_cast<std::size_t>(state.range(0));
    std::vector<std::optional<std::string_view>> out(batch);
    std::size_t i = 0;
    unsigned sink = 0;
    for (auto _ : state) {
        if (i + batch > w.lookups.size()) i = 0;
        d.get_many(std::span<const std::string_view>(w.lookups.data() + i, batch), out);
        for (const auto& v : out) sink += static_cast<unsigned char>((*v)[0]);
        i += batch;
    }
    benchmark::DoNotOptimize(sink);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}

// Many reader threads on one handle (Dict's thread-safety contract): each thread runs the single-get loop
// from its own starting point in the lookup order. items/s is the sum over threads per second of wall time
// (UseRealTime): with 2 threads on 2 cores it shows how far reads scale, which CPU time cannot show.
// absl, read by the same threads, is the reference for what the machine allows.
void LookupThreads_mmstore(benchmark::State& state) {
    const Workload& w = workload();
    const mmstore::Dict& d = loaded_mmstore();
    std::size_t i = w.lookups.size() / static_cast<std::size_t>(state.threads()) * static_cast<std::size_t>(state.thread_index());
    unsigned sink = 0;
    for (auto _ : state) {
        const std::optional<std::string_view> v = d.get(w.lookups[i]);
        sink += static_cast<unsigned char>((*v)[0]);
        if (++i == w.lookups.size()) i = 0;
    }
    benchmark::DoNotOptimize(sink);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void LookupThreads_absl(benchmark::State& state) {
    const Workload& w = workload();
    const auto& m = loaded_absl();
    std::size_t i = w.lookups.size() / static_cast<std::size_t>(state.threads()) * static_cast<std::size_t>(state.thread_index());
    unsigned sink = 0;
    for (auto _ : state) {
        auto it = m.find(absl::string_view(w.lookups[i].data(), w.lookups[i].size()));
        sink += static_cast<unsigned char>(it->second[0]);
        if (++i == w.lookups.size()) i = 0;
    }
    benchmark::DoNotOptimize(sink);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// --- inserts: each iteration fills a fresh store with all 1M entries -----------------------------------------
void Insert_mmstore(benchmark::State& state) {
    const Workload& w = workload();
    for (auto _ : state) {
        state.PauseTiming();
        const fs::path path = tmp().fresh("insert.mms");
        auto d = new_mmstore(path.string());
        state.ResumeTiming();
        insert_all(*d, w);
        state.PauseTiming();
        if (d->size() != w.keys.size()) state.SkipWithError("mmstore lost keys");
        d->close();
        d.reset();
        fs::remove(path);
        state.ResumeTiming();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * w.keys.size()));
}

void Insert_absl(benchmark::State& state) {
    const Workload& w = workload();
    for (auto _ : state) {
        state.PauseTiming();
        auto m = std::make_unique<absl::flat_hash_map<std::string, std::string>>();
        state.ResumeTiming();
        insert_all(*m, w);
        state.PauseTiming();
        m.reset();
        state.ResumeTiming();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * w.keys.size()));
}

void Insert_lmdb(benchmark::State& state) {
    const Workload& w = workload();
    for (auto _ : state) {
        state.PauseTiming();
        auto db = std::make_unique<Lmdb>(tmp().fresh("insert.lmdb"));
        state.ResumeTiming();
        db->insert_all(w);
        state.PauseTiming();
        db.reset();
        state.ResumeTiming();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * w.keys.size()));
}

}  // namespace

BENCHMARK(Lookup_mmstore);
BENCHMARK(Lookup_absl);
BENCHMARK(Lookup_lmdb);
BENCHMARK(GetMany_mmstore)->Arg(64)->Arg(256);
BENCHMARK(LookupThreads_mmstore)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(LookupThreads_absl)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(Insert_mmstore)->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK(Insert_absl)->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK(Insert_lmdb)->Unit(benchmark::kMillisecond)->Iterations(2);

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
