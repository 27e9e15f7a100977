// tests/cpp/nested_snapshot_test.cpp -- snapshots of a SharedDict's nested dicts (Dict::Snapshot::nested,
// containers/snapshot.hpp "Nested tables").
//
// A seeded differential test against a model tree: random writes at three levels (values set and erased in
// the root, in nested dicts and in nested dicts of nested dicts; nested dicts created, replaced by values,
// replaced by fresh nested dicts and deleted; large values; enough keys to rebuild the nested tables) with
// up to three snapshots open at a time. Each snapshot must equal the tree as deep-copied when it opened, by
// lookup and by iteration, at every level, including nested dicts that were deleted or replaced since.
// Then: the retired nested tables are freed after the last close (the arena check of verify() counts them).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "mmstore/containers/snapshot.hpp"
#include "mmstore/shared_dict.hpp"

namespace {

using mmstore::Dict;
using mmstore::NestedDict;
using mmstore::SharedDict;
using mmstore::Value;

struct Tree;
using Node = std::variant<std::string, std::shared_ptr<Tree>>;  // an encoded value, or a nested dict
struct Tree {
    std::map<std::string, Node> m;  // encoded key -> node
};

std::shared_ptr<Tree> deep_copy(const Tree& t) {
    auto out = std::make_shared<Tree>();
    for (const auto& [k, n] : t.m) {
        if (const auto* s = std::get_if<std::string>(&n)) out->m.emplace(k, *s);
        else out->m.emplace(k, deep_copy(*std::get<std::shared_ptr<Tree>>(n)));
    }
    return out;
}

std::string enc(const std::string& s) { return mmstore::codec::encode(Value::str(s)); }

bool is_ref(std::string_view v) {
    const std::uint64_t w = mmstore::containers::inline_word(v);
    return w != 0 && mmstore::containers::is_table_ref(w);
}

// Compares a snapshot view with a model tree, by iteration and by lookup, recursing into nested dicts.
void expect_equal(const Dict::Snapshot& s, const Tree& t, const std::string& where) {
    std::map<std::string, std::string> got;
    s.for_each([&](std::string_view k, std::string_view v) {
        EXPECT_TRUE(got.emplace(k, v).second) << where << ": a key was yielded twice";
    });
    ASSERT_EQ(got.size(), t.m.size()) << where;
    ASSERT_EQ(s.size(), t.m.size()) << where;
    for (const auto& [k, n] : t.m) {
        const auto it = got.find(k);
        ASSERT_NE(it, got.end()) << where << ": missing key";
        const std::optional<std::string> v = s.get_encoded(k);
        ASSERT_TRUE(v.has_value()) << where;
        ASSERT_EQ(*v, it->second) << where;
        if (const auto* str = std::get_if<std::string>(&n)) {
            ASSERT_EQ(*v, *str) << where;
        } else {
            ASSERT_TRUE(is_ref(*v)) << where << ": a nested dict reads back as a plain value";
            expect_equal(s.nested(*v), *std::get<std::shared_ptr<Tree>>(n), where + "/" + k);
        }
    }
}

struct Cleanup {
    std::string name;
    ~Cleanup() { ::unlink(SharedDict::segment_path(name).c_str()); }
};

TEST(NestedSnapshotTest, SeededSnapshotsEqualTheTreeCopiedAtOpenAtEveryLevel) {
    const std::string name = "cxxtest_nsnap_" + std::to_string(::getpid());
    Cleanup cleanup{name};
    SharedDict d(name);
    Tree root;
    std::mt19937_64 rng(20261204);
    struct Open {
        std::unique_ptr<Dict::Snapshot> s;
        std::shared_ptr<Tree> at_open;
    };
    std::vector<Open> open;
    auto value = [&] {
        const int n = rng() % 12 == 0 ? 300 : static_cast<int>(rng() % 10);
        return std::string(n, static_cast<char>('a' + rng() % 26));
    };
    // Writes at level 0 (root), 1 (a nested dict of the root) or 2 (a nested dict of a nested dict). The
    // nested handles are looked up again each time (a replaced dict's handle goes stale).
    for (int step = 0; step < 12000; ++step) {
        const int level = static_cast<int>(rng() % 3);
        const std::string rk = "r" + std::to_string(rng() % 8);
        Tree* t = &root;
        std::optional<NestedDict> nd;
        if (level >= 1) {
            auto it = root.m.find(enc(rk));
            if (it == root.m.end() || !std::holds_alternative<std::shared_ptr<Tree>>(it->second)) {
                nd = d.set_child(Value::str(rk));
                root.m[enc(rk)] = std::make_shared<Tree>();
                it = root.m.find(enc(rk));
            } else {
                nd = d.child(Value::str(rk));
                ASSERT_TRUE(nd.has_value());
            }
            t = std::get<std::shared_ptr<Tree>>(it->second).get();
        }
        if (level == 2) {
            const std::string ck = "c" + std::to_string(rng() % 4);
            auto it = t->m.find(enc(ck));
            if (it == t->m.end() || !std::holds_alternative<std::shared_ptr<Tree>>(it->second)) {
                nd = nd->set_child(Value::str(ck));
                t->m[enc(ck)] = std::make_shared<Tree>();
                it = t->m.find(enc(ck));
            } else {
                nd = nd->child(Value::str(ck));
                ASSERT_TRUE(nd.has_value());
            }
            t = std::get<std::shared_ptr<Tree>>(it->second).get();
        }
        const std::string k = (level == 0 ? "r" : "k") + std::to_string(rng() % (level == 0 ? 8 : 150));
        const unsigned op = rng() % 100;
        if (op < 55) {
            const std::string v = value();
            if (nd) nd->set(Value::str(k), Value::str(v));
            else d.set(Value::str(k), Value::str(v));
            t->m[enc(k)] = enc(v);
        } else if (op < 75) {
            const bool had = t->m.erase(enc(k)) == 1;
            EXPECT_EQ(nd ? nd->erase(Value::str(k)) : d.erase(Value::str(k)), had) << "step " << step;
        } else if (op < 80 && level < 2) {
            if (nd) nd->set_child(Value::str(k));
            else d.set_child(Value::str(k));
            t->m[enc(k)] = std::make_shared<Tree>();
        } else if (op < 88 && open.size() < 3) {
            open.push_back({std::make_unique<Dict::Snapshot>(d.snapshot()), deep_copy(root)});
        } else if (op < 93 && !open.empty()) {
            const std::size_t i = rng() % open.size();
            expect_equal(*open[i].s, *open[i].at_open, "step " + std::to_string(step));
            open.erase(open.begin() + static_cast<std::ptrdiff_t>(i));
        }
        if (::testing::Test::HasFatalFailure()) return;
        // A lookup at a random level of each open snapshot.
        for (const Open& o : open) {
            const std::string r = enc("r" + std::to_string(rng() % 8));
            const auto it = o.at_open->m.find(r);
            const std::optional<std::string> got = o.s->get_encoded(r);
            ASSERT_EQ(got.has_value(), it != o.at_open->m.end()) << "step " << step;
            if (!got) continue;
            if (const auto* str = std::get_if<std::string>(&it->second)) {
                ASSERT_EQ(*got, *str) << "step " << step;
                continue;
            }
            const Tree& child = *std::get<std::shared_ptr<Tree>>(it->second);
            const Dict::Snapshot view = o.s->nested(*got);
            const std::string ck = enc("k" + std::to_string(rng() % 150));
            const auto cit = child.m.find(ck);
            const std::optional<std::string> cgot = view.get_encoded(ck);
            ASSERT_EQ(cgot.has_value(), cit != child.m.end()) << "step " << step;
            if (cgot && std::holds_alternative<std::string>(cit->second))
                ASSERT_EQ(*cgot, std::get<std::string>(cit->second)) << "step " << step;
        }
    }
    for (const Open& o : open) expect_equal(*o.s, *o.at_open, "end");
    open.clear();
    d.set(Value::str("after"), Value::str("x"));  // the first write after the last close frees everything
    EXPECT_EQ(mmstore::containers::version_keys(d.store()), 0u);
    d.verify();  // the arena check: every retired nested table was freed, nothing leaked
}

TEST(NestedSnapshotTest, ADeletedNestedDictStaysReadableWhileTheSnapshotIsOpen) {
    const std::string name = "cxxtest_nsnap2_" + std::to_string(::getpid());
    Cleanup cleanup{name};
    SharedDict d(name);
    NestedDict a = d.set_child(Value::str("a"));
    a.set(Value::str("x"), Value::str(std::string(500, 'x')));
    a.set_child(Value::str("deep")).set(Value::str("y"), Value::integer(7));
    Dict::Snapshot s = d.snapshot();
    d.erase(Value::str("a"));
    d.set_child(Value::str("a")).set(Value::str("x"), Value::str("new"));
    for (int i = 0; i < 2000; ++i) d.set(Value::str("fill" + std::to_string(i)), Value::integer(i));  // reuse freed space
    const std::optional<std::string> ref = s.get_encoded(enc("a"));
    ASSERT_TRUE(ref.has_value());
    const Dict::Snapshot old_a = s.nested(*ref);
    EXPECT_EQ(old_a.get(Value::str("x")), Value::str(std::string(500, 'x')));
    const std::optional<std::string> deep = old_a.get_encoded(enc("deep"));
    ASSERT_TRUE(deep.has_value());
    EXPECT_EQ(old_a.nested(*deep).get(Value::str("y")), Value::integer(7));
    EXPECT_EQ(s.size(), 1u);
    EXPECT_THROW(s.nested(enc("not a ref")), mmstore::Error);
    d.verify();  // retired tables are reachable while the snapshot is open
    s.close();
    EXPECT_THROW(old_a.get(Value::str("x")), mmstore::Error) << "a nested view closes with its snapshot";
    d.set(Value::str("after"), Value::str("x"));
    EXPECT_EQ(mmstore::containers::version_keys(d.store()), 0u);
    d.verify();
}

TEST(NestedSnapshotTest, AWriterKilledBetweenDroppingANestedDictAndRetiringItLosesNothing) {
    // A recording write that drops a nested dict makes room to retire it (record_entry), drops it, then
    // retires it (retire_dropped). A writer killed between the drop and the retire leaves a table only a
    // snapshot references; the recovery must retire it (retire_orphaned_tables) rather than let the arena's
    // rebuild free it for reuse. The child stops exactly there: it holds the lock, records, replaces "a".
    const std::string name = "cxxtest_nsnap3_" + std::to_string(::getpid());
    Cleanup cleanup{name};
    SharedDict d(name);
    NestedDict a = d.set_child(Value::str("a"));
    a.set(Value::str("x"), Value::str(std::string(500, 'x')));
    Dict::Snapshot s = d.snapshot();
    const pid_t child = fork();
    if (child == 0) {
        SharedDict w(name);
        mmstore::containers::Store::WriteGuard g(w.store());
        mmstore::containers::VersionScope vs(w.store());
        if (!vs.recording()) _exit(2);
        const std::uint64_t pos = w.table().find(enc("a"));
        if (pos == mmstore::containers::kNotFound) _exit(3);
        mmstore::containers::record_entry(w.store(), w.table(), pos);
        auto* value = const_cast<std::uint64_t*>(w.table().value_word_ptr(pos));
        __atomic_store_n(value, w.store().put(enc("gone")), __ATOMIC_RELEASE);  // the drop; no retire_dropped
        _exit(0);                                                             // with the lock held
    }
    int st;
    waitpid(child, &st, 0);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
    d.set(Value::str("probe"), Value::integer(1));  // recovers the dead writer's lock
    EXPECT_EQ(d.get_encoded(enc("a")), enc("gone"));
    // Records of every size up to 1.5 KiB: they would take the dropped dict's space (its cell, table and
    // record), had the rebuild freed it.
    for (int round = 0; round < 3; ++round)
        for (int n = 1; n < 1500; n += 3)
            d.set(Value::str("fill" + std::to_string(round) + "-" + std::to_string(n)), Value::str(std::string(n, 'f')));
    const std::optional<std::string> ref = s.get_encoded(enc("a"));
    ASSERT_TRUE(ref.has_value() && is_ref(*ref));
    EXPECT_EQ(s.nested(*ref).get(Value::str("x")), Value::str(std::string(500, 'x')));
    d.verify();
    s.close();
    d.set(Value::str("after"), Value::str("x"));
    EXPECT_EQ(mmstore::containers::version_keys(d.store()), 0u);
    d.verify();
}

}  // namespace
