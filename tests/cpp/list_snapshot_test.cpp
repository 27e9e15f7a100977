// tests/cpp/list_snapshot_test.cpp -- List::Snapshot (list.hpp) and the List half of containers/snapshot.hpp.
//
// A seeded differential test against std::vector: random writes of every kind (append, extend, set, insert,
// erase, pop, clear, reorder, splice, transactions, small and large values, enough to grow the block and to
// cross the 64-element pages) with up to three snapshots open at a time; each snapshot must equal the model
// as copied when it opened, by size, by index and by range. Then: the records are freed after the last
// close and after the holder process is killed, the retired records are reachable for verify() while a
// snapshot is open, another process's writes are invisible, and threads read snapshots under TSan.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mmstore/containers/snapshot.hpp"
#include "mmstore/list.hpp"
#include "test_util.hpp"

namespace {

using mmstore::List;
using Model = std::vector<std::string>;

class ListSnapshotTest : public ::testing::Test {
protected:
    mmstore_test::TempDir dir_;
    std::string path_ = dir_.file("l.mms");
};

std::string enc(const std::string& s) { return mmstore::codec::encode(mmstore::Value::str(s)); }

Model all(const List::Snapshot& s) { return s.range_encoded(0, ~std::uint64_t{0}); }

Model live(const List& l) {
    Model out;
    for (std::uint64_t i = 0; i < l.size(); ++i) out.push_back(l.get_encoded(i));
    return out;
}

TEST_F(ListSnapshotTest, SeededSnapshotsEqualTheModelCopiedAtOpen) {
    List l(path_);
    Model model;
    std::mt19937_64 rng(20261205);
    struct Open {
        std::unique_ptr<List::Snapshot> s;
        Model at_open;
    };
    std::vector<Open> open;
    auto value = [&] {
        // inline words (short), records (longer) and large records
        const unsigned r = rng() % 10;
        const int n = r == 0 ? 600 : r < 4 ? static_cast<int>(8 + rng() % 20) : static_cast<int>(rng() % 6);
        return enc(std::string(n, static_cast<char>('a' + rng() % 26)));
    };
    auto pos = [&](std::size_t n) { return static_cast<std::uint64_t>(rng() % n); };
    for (int step = 0; step < 12000; ++step) {
        const unsigned op = rng() % 100;
        if (op < 30) {
            const std::string v = value();
            l.push_back_encoded(v);
            model.push_back(v);
        } else if (op < 33) {
            std::vector<std::string> vals;
            for (int i = 0, n = static_cast<int>(rng() % 700); i < n; ++i) vals.push_back(value());
            std::vector<std::string_view> views(vals.begin(), vals.end());
            l.push_back_encoded_many(views);
            model.insert(model.end(), vals.begin(), vals.end());
        } else if (op < 55 && !model.empty()) {
            const std::uint64_t i = pos(model.size());
            const std::string v = value();
            l.set_encoded(i, v);
            model[i] = v;
        } else if (op < 62) {
            const std::uint64_t i = pos(model.size() + 1);
            const std::string v = value();
            l.insert_encoded(i, v);
            model.insert(model.begin() + static_cast<std::ptrdiff_t>(std::min<std::uint64_t>(i, model.size())), v);
        } else if (op < 70 && !model.empty()) {
            const std::uint64_t i = pos(model.size());
            l.erase(i);
            model.erase(model.begin() + static_cast<std::ptrdiff_t>(i));
        } else if (op < 76 && !model.empty()) {
            l.pop_back();
            model.pop_back();
        } else if (op == 76 && rng() % 8 == 0) {
            l.clear();
            model.clear();
        } else if (op == 77) {
            // reorder: a random subset in random order (sort, reverse and slice deletion use it)
            std::vector<std::uint64_t> order(model.size());
            std::iota(order.begin(), order.end(), 0);
            std::shuffle(order.begin(), order.end(), rng);
            order.resize(order.size() - order.size() / 8);
            Model next;
            for (auto p : order) next.push_back(model[p]);
            l.reorder(order);
            model = next;
        } else if (op < 81) {
            const std::uint64_t a = pos(model.size() + 1), b = a + pos(model.size() - a + 1);
            std::vector<std::string> vals;
            for (int i = 0, n = static_cast<int>(rng() % 5); i < n; ++i) vals.push_back(value());
            l.splice(a, b, vals);
            model.erase(model.begin() + static_cast<std::ptrdiff_t>(a), model.begin() + static_cast<std::ptrdiff_t>(b));
            model.insert(model.begin() + static_cast<std::ptrdiff_t>(a), vals.begin(), vals.end());
        } else if (op < 84) {
            auto t = l.transaction();
            for (int i = 0; i < 6; ++i) {
                const unsigned k = rng() % 4;
                if (k == 0 && !model.empty()) {
                    const std::uint64_t p = pos(model.size());
                    const std::string v = value();
                    t.set_encoded(p, v);
                    model[p] = v;
                } else if (k == 1 && !model.empty()) {
                    t.pop_back();
                    model.pop_back();
                } else {
                    const std::string v = value();
                    t.push_back_encoded(v);
                    model.push_back(v);
                }
            }
            t.commit();
        } else if (op < 92 && open.size() < 3) {
            open.push_back({std::make_unique<List::Snapshot>(l.snapshot()), model});
        } else if (op < 96 && !open.empty()) {
            const std::size_t i = rng() % open.size();
            ASSERT_EQ(all(*open[i].s), open[i].at_open) << "step " << step;
            open.erase(open.begin() + static_cast<std::ptrdiff_t>(i));
        }
        for (const Open& o : open) {
            ASSERT_EQ(o.s->size(), o.at_open.size()) << "step " << step;
            if (o.at_open.empty()) continue;
            const std::uint64_t i = pos(o.at_open.size());
            ASSERT_EQ(o.s->get_encoded(i), o.at_open[i]) << "step " << step << " index " << i;
            const std::uint64_t a = pos(o.at_open.size());
            const Model part = o.s->range_encoded(a, a + 40);
            ASSERT_EQ(part, Model(o.at_open.begin() + static_cast<std::ptrdiff_t>(a),
                                  o.at_open.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(a + 40, o.at_open.size()))))
                << "step " << step;
        }
        if (step % 1000 == 0) l.verify();  // the retired records and the chains are reachable
    }
    for (const Open& o : open) EXPECT_EQ(all(*o.s), o.at_open);
    open.clear();
    EXPECT_EQ(live(l), model);
    l.push_back_encoded(enc("after"));
    EXPECT_EQ(mmstore::containers::version_keys(l.store()), 0u);
    l.verify();
}

TEST_F(ListSnapshotTest, IndexPastTheEndOfTheInstantIsOutOfRange) {
    List l(path_);
    l.push_back_encoded(enc("a"));
    auto s = l.snapshot();
    l.push_back_encoded(enc("b"));
    EXPECT_EQ(s.size(), 1u);
    EXPECT_EQ(s.get_encoded(0), enc("a"));
    EXPECT_THROW(s.get_encoded(1), std::out_of_range);
    s.close();
    EXPECT_THROW(s.size(), mmstore::Error);
}

TEST_F(ListSnapshotTest, RecordsAreKeptWhileOpenAndFreedByTheFirstWriteAfterTheLastClose) {
    List l(path_);
    for (int i = 0; i < 2000; ++i) l.push_back_encoded(enc("value number " + std::to_string(i)));  // records
    EXPECT_EQ(mmstore::containers::version_keys(l.store()), 0u);  // no snapshot: nothing recorded
    {
        auto s = l.snapshot();
        for (int i = 0; i < 100; ++i) l.push_back_encoded(enc("appended " + std::to_string(i)));
        EXPECT_EQ(mmstore::containers::version_keys(l.store()), 0u);  // appends record nothing
        for (int i = 0; i < 2000; i += 100) l.set_encoded(i, enc("x"));  // 20 pages, 20 retired records
        static_assert(100 > mmstore::containers::kListPage);             // (each in a page of its own)
        EXPECT_EQ(mmstore::containers::version_keys(l.store()), 20u + 20u);
        l.clear();  // every record
        const std::uint64_t pages = (2100 + mmstore::containers::kListPage - 1) / mmstore::containers::kListPage;
        EXPECT_EQ(mmstore::containers::version_keys(l.store()), pages + 2100u);  // every page of 2,100 elements
        for (int i = 0; i < 3000; ++i) l.push_back_encoded(enc("new value " + std::to_string(i)));  // would reuse freed records
        EXPECT_EQ(mmstore::containers::version_keys(l.store()), pages + 2100u);
        l.verify();
        EXPECT_EQ(s.size(), 2000u);
        for (int i = 0; i < 2000; ++i) ASSERT_EQ(s.get_encoded(i), enc("value number " + std::to_string(i)));
    }
    l.push_back_encoded(enc("y"));  // an append, too, frees them
    EXPECT_EQ(mmstore::containers::version_keys(l.store()), 0u);
    l.verify();
}

TEST_F(ListSnapshotTest, ASnapshotOfAKilledProcessIsReclaimed) {
    { List l(path_); l.push_back_encoded(enc("a")); }
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    const pid_t child = fork();
    if (child == 0) {
        List l(path_);
        auto s = l.snapshot();
        (void)!write(ready[1], "x", 1);
        pause();
        _exit(0);
    }
    char c;
    ASSERT_EQ(read(ready[0], &c, 1), 1);
    List l(path_);
    l.set_encoded(0, enc("b"));
    EXPECT_EQ(mmstore::containers::version_keys(l.store()), 1u);  // the child's snapshot is open
    kill(child, SIGKILL);
    int st;
    waitpid(child, &st, 0);
    l.snapshot().close();  // opening reclaims the dead holder's slot
    l.set_encoded(0, enc("c"));
    EXPECT_EQ(mmstore::containers::version_keys(l.store()), 0u);
    close(ready[0]);
    close(ready[1]);
}

TEST_F(ListSnapshotTest, AnotherProcessesWritesAreInvisible) {
    List l(path_);
    Model model;
    for (int i = 0; i < 3000; ++i) {
        model.push_back(enc("v" + std::to_string(i) + std::string(i % 3 == 0 ? 20 : 0, '.')));
        l.push_back_encoded(model.back());
    }
    auto s = l.snapshot();
    const pid_t child = fork();
    if (child == 0) {
        List w(path_);
        for (int i = 0; i < 10000; ++i) {
            const unsigned op = static_cast<unsigned>(i % 5);
            if (op == 0) w.push_back_encoded(enc("new" + std::to_string(i)));
            else if (op == 1) w.set_encoded(static_cast<std::uint64_t>(i) % w.size(), enc("set" + std::to_string(i) + "................"));
            else if (op == 2) w.erase(static_cast<std::uint64_t>(i * 7) % w.size());
            else if (op == 3) w.insert_encoded(static_cast<std::uint64_t>(i * 13) % w.size(), enc("ins"));
            else w.pop_back();
        }
        w.close();
        _exit(0);
    }
    int st;
    waitpid(child, &st, 0);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    EXPECT_NE(live(l), model);
    EXPECT_EQ(all(s), model);
    EXPECT_EQ(s.size(), model.size());
    l.verify();
}

TEST_F(ListSnapshotTest, OpeningWhileAnotherProcessAppendsNeverTearsTheInstant) {
    // Appends run in no VersionScope, so a snapshot takes the length it finds as it opens (open_list_snapshot).
    // Another process alternates append(k) (unrecorded) and set(0, k) (recorded), so at every instant element
    // 0 equals the last element or the one before it: a length read at another instant than the pages breaks
    // that. This process opens snapshots until 2,000 of them overlapped writes.
    {
        List l(path_);
        l.push_back_encoded(enc("0"));
    }
    const pid_t child = fork();
    if (child == 0) {
        List w(path_);
        for (std::uint64_t k = 1;; ++k) {
            w.push_back_encoded(enc(std::to_string(k)));
            w.set_encoded(0, enc(std::to_string(k)));
        }
    }
    mmstore_test::KillOnExit writer{child};  // also when an assertion returns early
    List l(path_);
    auto number = [](const std::string& e) { return std::stoll(mmstore::codec::decode(e).data); };
    int concurrent = 0;
    for (long n = 0; concurrent < 2000; ++n) {
        ASSERT_LT(n, 5'000'000) << "hang guard: the writer stopped";
        auto s = l.snapshot();
        const std::uint64_t size = s.size();
        const long long first = number(s.get_encoded(0)), last = number(s.get_encoded(size - 1));
        ASSERT_TRUE(first == last || first == last - 1) << "snapshot " << n << ": element 0 is " << first
                                                       << ", the last of " << size << " is " << last;
        if (l.size() != size) ++concurrent;
        ASSERT_EQ(number(s.get_encoded(0)), first);
        ASSERT_EQ(s.size(), size);
    }
}

TEST_F(ListSnapshotTest, AWriterKilledWithASnapshotOpenLeavesItWhole) {
    List l(path_);
    Model model;
    for (int i = 0; i < 1500; ++i) {
        model.push_back(enc("element " + std::to_string(i)));
        l.push_back_encoded(model.back());
    }
    auto s = l.snapshot();
    for (int round = 0; round < 5; ++round) {
        const pid_t child = fork();
        if (child == 0) {
            List w(path_);
            for (std::uint64_t i = 0;; ++i) {
                w.set_encoded(i % w.size(), enc("overwritten " + std::to_string(i)));
                if (i % 3 == 0) w.insert_encoded(i % w.size(), enc("x"));
                if (i % 3 == 1) w.erase(i % w.size());
            }
        }
        usleep(20000 + 15000 * round);
        kill(child, SIGKILL);
        int st;
        waitpid(child, &st, 0);
        l.push_back_encoded(enc("recovered"));  // the next writer recovers the dead one's lock
        ASSERT_EQ(all(s), model) << "round " << round;
        l.verify();
    }
}

TEST_F(ListSnapshotTest, AWriterKilledBetweenDroppingARecordAndRetiringItLosesNothing) {
    // A recording write drops a record from the list, then retires it (release_word, over the placeholder
    // record_list made). A writer killed between the two leaves a record only a snapshot's page references;
    // the recovery must retire it (retire_orphaned_words) rather than let the arena's rebuild free it for
    // reuse. The child stops exactly there: it holds the lock, records, drops element 7, and exits.
    List l(path_);
    for (int i = 0; i < 100; ++i) l.push_back_encoded(enc("original " + std::string(8, static_cast<char>('a' + i % 26))));
    auto s = l.snapshot();
    const pid_t child = fork();
    if (child == 0) {
        List w(path_);
        mmstore::containers::Store::WriteGuard g(w.store());
        mmstore::containers::VersionScope vs(w.store());
        if (!vs.recording()) _exit(2);
        auto* slot = reinterpret_cast<std::uint64_t*>(w.sequence().at(7));
        const std::uint64_t old = *slot;
        mmstore::containers::record_list(w.store(), w.sequence(), 7, 8, {&old, 1});
        __atomic_store_n(slot, w.store().put(enc("x")), __ATOMIC_RELEASE);  // the drop; release_word never runs
        _exit(0);                                                          // with the lock held
    }
    int st;
    waitpid(child, &st, 0);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    l.set_encoded(50, enc("y"));  // recovers the dead writer's lock
    EXPECT_EQ(l.get_encoded(7), enc("x"));
    // Records of the same size as the dropped one: they would take its space, had the rebuild freed it.
    for (int i = 0; i < 200; ++i) l.set_encoded(60 + i % 30, enc("replaced " + std::string(7, static_cast<char>('a' + i % 26))));
    EXPECT_EQ(s.get_encoded(7), enc("original " + std::string(8, 'h')));
    l.verify();
    s.close();
    l.set_encoded(0, enc("z"));  // the version table goes, the retired record with it
    EXPECT_EQ(mmstore::containers::version_keys(l.store()), 0u);
    l.verify();
}

TEST_F(ListSnapshotTest, ListSnapshotsReadInThreadsWhileAnotherThreadWrites) {
    // Under TSan (scripts/sanitize.sh: "Thread" in the name).
    { List l(path_); for (int i = 0; i < 600; ++i) l.push_back_encoded(enc("0")); }
    std::atomic<bool> stop{false};
    std::atomic<bool> reader_left{false};  // a reader that failed an assertion returned early
    std::atomic<int> passes{0};
    std::thread writer([&] {
        List w(path_);
        for (int round = 1; passes < 40 && !reader_left; ++round) {
            for (std::uint64_t i = 0; i < 600; ++i) w.set_encoded(i, enc(std::to_string(round) + "-long-enough-for-a-record"));
            w.insert_encoded(static_cast<std::uint64_t>(round) % 600, enc("i"));
            w.pop_back();
        }
        stop = true;
    });
    auto reader = [&] {
        mmstore_test::SetOnExit left{reader_left};
        List r(path_);
        int rounds = 0;
        while (!stop || rounds == 0) {
            auto s = r.snapshot();
            const Model first = all(s);
            ASSERT_TRUE(first.size() == 600u || first.size() == 601u) << first.size();  // between insert and pop
            for (std::uint64_t i = 0; i < first.size(); i += 37) ASSERT_EQ(s.get_encoded(i), first[i]) << "index " << i;
            ASSERT_EQ(all(s), first);
            ++rounds;
            if (!stop) ++passes;
        }
    };
    std::thread r1(reader), r2(reader);
    writer.join();
    r1.join();
    r2.join();
}

}  // namespace
