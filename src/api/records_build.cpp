// src/api/records_build.cpp -- RecordArrayBuilder, MappingBuilder (out-of-core) and merge().
//
// Both builders stream sections into temporary files next to the destination (memory: one 1 MiB buffer per
// section plus the dedup cache), then assemble the image -- header, schema, section table, sections -- into
// "<path>.tmp-<pid>" and rename it over `path`. A build that fails or is abandoned removes its temporary
// files and leaves `path` untouched.
//
// MappingBuilder, phase 1: each entry (hash, key encoding, packed row) is appended to one of 256 partition
// files chosen by the top 8 bits of its key hash (buffers of at most memory_budget/4 in total). Phase 2,
// partition by partition in hash order: load it (a partition larger than memory_budget/4 is first split
// again on the next 8 bits of the hash), sort its entries by (hash, key, input order), drop repeated keys
// unless multi (the last value wins), and append hashes, keys and values to the output sections. Because
// partitions follow the top hash bits, the output is globally sorted by hash and the bucket directory is
// written in one sequential pass.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <numeric>

#include "mmstore/error.hpp"
#include "mmstore/os/file.hpp"
#include "mmstore/records.hpp"
#include "mmstore/storage/checksum.hpp"
#include "mmstore/storage/header.hpp"
#include "mmstore/containers/frozen_index.hpp"
#include "mmstore/internal/records_format.hpp"
#include "mmstore/internal/temp_file.hpp"

namespace mmstore {

using detail::load;
using internal::TempFile;

namespace {

constexpr std::size_t kBufBytes = TempFile::kBufBytes;

std::string temp_prefix(const std::string& path) {
    static std::atomic<std::uint64_t> counter{0};
    return path + ".tmp-" + std::to_string(os::current_pid()) + "-" + std::to_string(counter.fetch_add(1)) + "-";
}

// The heap of variable values, with the bounded dedup cache: an open-addressing table of
// (hash, heap offset, copy of the bytes) reset when its bytes exceed the budget.
class HeapWriter {
public:
    HeapWriter(std::string path, unsigned mode, bool dedup, std::uint64_t budget)
        : out_(std::move(path), mode), dedup_(dedup), budget_(budget) {
        const char none = 0;
        out_.append(&none, 1);  // offset 0 is None
        if (dedup_) reset();
    }
    std::uint64_t add(std::string_view v) {
        if (v.size() == 1 && v[0] == 0) return 0;
        if (!dedup_ || v.size() > budget_ / 4) return append(v);
        const std::uint64_t h = hash64(v.data(), v.size());
        std::size_t i = h & mask_;
        while (slots_[i].len != 0) {
            const Slot& s = slots_[i];
            if (s.hash == h && s.len == v.size() && std::memcmp(bytes_.data() + s.at, v.data(), v.size()) == 0) return s.off;
            i = (i + 1) & mask_;
        }
        const std::uint64_t off = append(v);
        // The budget covers the copies and the table: reset (forget everything) when either would exceed it.
        const std::uint64_t table_bytes = (mask_ + 1) * sizeof(Slot);
        if (bytes_.size() + v.size() + table_bytes > budget_ || used_ + 1 > (mask_ + 1) / 2) {
            if (used_ + 1 > (mask_ + 1) / 2 && bytes_.size() + v.size() + 2 * table_bytes <= budget_) grow();
            else reset();
            i = h & mask_;
            while (slots_[i].len != 0) i = (i + 1) & mask_;
        }
        slots_[i] = Slot{h, off, bytes_.size(), static_cast<std::uint32_t>(v.size())};
        bytes_.append(v);
        ++used_;
        return off;
    }
    TempFile& file() { return out_; }
    void drop_cache() {
        std::vector<Slot>().swap(slots_);
        std::string().swap(bytes_);
    }

private:
    struct Slot {
        std::uint64_t hash, off, at;
        std::uint32_t len;  // 0 = empty (empty values are never cached: every encoding is >= 1 byte)
    };
    std::uint64_t append(std::string_view v) {
        const std::uint64_t off = out_.size();
        out_.append(v);
        return off;
    }
    void reset() {
        slots_.assign(1024, Slot{0, 0, 0, 0});
        mask_ = 1023;
        used_ = 0;
        bytes_.clear();
    }
    void grow() {
        std::vector<Slot> old;
        old.swap(slots_);
        slots_.assign(old.size() * 2, Slot{0, 0, 0, 0});
        mask_ = slots_.size() - 1;
        for (const auto& s : old)
            if (s.len) {
                std::size_t i = s.hash & mask_;
                while (slots_[i].len) i = (i + 1) & mask_;
                slots_[i] = s;
            }
    }
    TempFile out_;
    bool dedup_;
    std::uint64_t budget_;
    std::vector<Slot> slots_;
    std::string bytes_;
    std::size_t mask_ = 0, used_ = 0;
};

[[noreturn]] void bad_row(const std::string& why) { throw_format(ErrorCode::kCorrupt, "", "malformed packed record: " + why); }

// Checks a packed row against its schema (header, slots, value bounds).
void validate_row(const Schema& s, std::string_view row) {
    if (row.size() < s.row_header_size() || row.size() > 0xFFFFFFFFu) bad_row("shorter than the schema's fixed part");
    if (load<std::uint32_t>(row.data()) != row.size()) bad_row("length field differs from the record size");
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (is_fixed(s.field(i).type)) continue;
        const auto at = load<std::uint32_t>(row.data() + s.row_offset(i));
        if (at == 0) continue;
        if (at < s.row_header_size()) bad_row("value offset inside the fixed part");
        detail::value_end(row.data(), row.size(), at);
    }
}

// The column sections of one record set.
class ColumnsWriter {
public:
    ColumnsWriter(const Schema& s, const std::string& prefix, const BuildOptions& o)
        : s_(s), heap_(prefix + "heap", o.mode, o.dedup, o.dedup_budget) {
        for (std::size_t i = 0; i < s.size(); ++i) {
            cols_.emplace_back(prefix + "c" + std::to_string(i), o.mode);
            pres_.emplace_back();
            if (is_fixed(s.field(i).type)) pres_.back() = std::make_unique<TempFile>(prefix + "p" + std::to_string(i), o.mode);
            pending_.push_back(0);
            any_null_.push_back(false);
        }
    }
    // `row` already validated.
    void add(std::string_view row) {
        const char* r = row.data();
        for (std::size_t i = 0; i < s_.size(); ++i) {
            const bool present = static_cast<std::uint8_t>(r[4 + i / 8]) >> (i % 8) & 1;
            const auto t = s_.field(i).type;
            if (is_fixed(t)) {
                static const char kZero[8] = {};
                cols_[i].append(present ? r + s_.row_offset(i) : kZero, fixed_width(t));
                if (present) pending_[i] |= static_cast<std::uint8_t>(1u << (n_ % 8));
                else any_null_[i] = true;
                if (n_ % 8 == 7) {
                    pres_[i]->put(pending_[i]);
                    pending_[i] = 0;
                }
            } else {
                const auto at = load<std::uint32_t>(r + s_.row_offset(i));
                std::uint64_t off = 0;
                if (present && at != 0) {
                    const std::size_t end = detail::value_end(r, row.size(), at);
                    off = heap_.add(std::string_view(r + at, end - at));
                }
                cols_[i].put(off);
            }
        }
        ++n_;
    }
    std::uint64_t count() const noexcept { return n_; }
    // Flushes and lists the sections (id, width, file).
    void sections(std::vector<std::tuple<std::uint32_t, std::uint32_t, TempFile*>>& out) {
        heap_.drop_cache();
        for (std::size_t i = 0; i < s_.size(); ++i) {
            const auto t = s_.field(i).type;
            cols_[i].flush();
            out.emplace_back(detail::kSectionColumn + i, is_fixed(t) ? fixed_width(t) : 8, &cols_[i]);
            if (is_fixed(t) && any_null_[i]) {
                if (n_ % 8) pres_[i]->put(pending_[i]);
                pres_[i]->flush();
                out.emplace_back(detail::kSectionPresence + i, 1, pres_[i].get());
            }
        }
        heap_.file().flush();
        out.emplace_back(detail::kSectionHeap, 0, &heap_.file());
    }

private:
    const Schema& s_;
    HeapWriter heap_;
    std::vector<TempFile> cols_;
    std::vector<std::unique_ptr<TempFile>> pres_;
    std::vector<std::uint8_t> pending_;
    std::vector<bool> any_null_;
    std::uint64_t n_ = 0;
};

std::uint64_t align_up(std::uint64_t x) { return (x + detail::kSectionAlign - 1) / detail::kSectionAlign * detail::kSectionAlign; }

// Writes the final image to `prefix + "out"`, then renames it to `path`.
void assemble(const std::string& path, const std::string& prefix, const BuildOptions& o, std::uint32_t kind,
              detail::RecordsHeader rh, const std::string& schema_blob,
              const std::vector<std::tuple<std::uint32_t, std::uint32_t, TempFile*>>& secs) {
    const std::string tmp = prefix + "out";
    auto out = os::File::open(tmp, true, true, true, o.mode);
    rh.schema_off = detail::kSchemaOffset;
    rh.schema_len = schema_blob.size();
    rh.table_off = align_up(rh.schema_off + rh.schema_len);
    rh.nsections = static_cast<std::uint32_t>(secs.size());
    std::vector<detail::SectionSlot> table;
    std::uint64_t pos = align_up(rh.table_off + 32ull * secs.size());
    for (const auto& [id, width, f] : secs) {
        table.push_back(detail::SectionSlot{id, width, pos, f->size(), 0});
        pos = align_up(pos + f->size());
    }
    rh.file_size = pos;
    out.resize(pos);
    // Copy the sections, checksumming on the way.
    std::string buf(4 << 20, '\0');
    for (std::size_t k = 0; k < secs.size(); ++k) {
        TempFile* f = std::get<2>(secs[k]);
        Hasher st;
        for (std::uint64_t done = 0; done < f->size();) {
            const std::size_t n = f->file().pread(buf.data(), std::min<std::uint64_t>(buf.size(), f->size() - done), done);
            if (n == 0) throw_error(ErrorCode::kIo, f->path(), "temporary file shorter than written");
            st.update(buf.data(), n);
            out.pwrite_all(buf.data(), n, table[k].offset + done);
            done += n;
        }
        table[k].checksum = st.digest();
    }
    out.pwrite_all(schema_blob.data(), schema_blob.size(), rh.schema_off);
    out.pwrite_all(table.data(), table.size() * 32, rh.table_off);
    {
        Hasher st;
        st.update(schema_blob.data(), schema_blob.size());
        st.update(table.data(), table.size() * 32);
        rh.meta_checksum = st.digest();
    }
    rh.checksum = hash64(&rh, offsetof(detail::RecordsHeader, checksum));
    out.pwrite_all(&rh, sizeof rh, detail::kRecordsHeaderOffset);
    storage::FileHeader fh{};
    std::memcpy(fh.magic, storage::kMagic, 8);
    fh.format_version = storage::kRecordsFormatVersion;
    fh.kind = kind;
    fh.byte_order = storage::kByteOrderMark;
    fh.word_size = 8;
    fh.page_size = storage::kPageSize;
    fh.checksum = hash64(&fh, offsetof(storage::FileHeader, checksum));
    out.pwrite_all(&fh, sizeof fh, 0);
    out.fsync();
    out.close();
    os::rename_file(tmp, path);
    os::fsync_parent_dir(path);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// RecordArrayBuilder

struct RecordArrayBuilder::Impl {
    std::string path, prefix;
    BuildOptions opts;
    ColumnsWriter cols;
    bool done = false;
    Impl(std::string p, const Schema& s, BuildOptions o)
        : path(std::move(p)), prefix(temp_prefix(path)), opts(std::move(o)), cols(s, prefix, opts) {}
    ~Impl() { os::remove_with_prefix(prefix); }
};

RecordArrayBuilder::RecordArrayBuilder(std::string path, SchemaPtr schema, BuildOptions options) : schema_(std::move(schema)) {
    os::check_path(path);  // before any temporary is made from it
    if (!schema_) throw_error(ErrorCode::kInvalidArgument, path, "RecordArrayBuilder needs a schema");
    impl_ = std::make_unique<Impl>(std::move(path), *schema_, std::move(options));
}

RecordArrayBuilder::~RecordArrayBuilder() = default;

void RecordArrayBuilder::add_row(std::string_view row) {
    if (impl_->done) throw_error(ErrorCode::kClosed, impl_->path, "builder already finished");
    validate_row(*schema_, row);
    impl_->cols.add(row);
    if (impl_->opts.progress && (impl_->cols.count() & 0xFFFF) == 0) impl_->opts.progress(impl_->cols.count());
}

std::uint64_t RecordArrayBuilder::count() const noexcept { return impl_->cols.count(); }

std::uint64_t RecordArrayBuilder::finish() {
    if (impl_->done) throw_error(ErrorCode::kClosed, impl_->path, "builder already finished");
    impl_->done = true;
    std::vector<std::tuple<std::uint32_t, std::uint32_t, TempFile*>> secs;
    impl_->cols.sections(secs);
    detail::RecordsHeader rh{};
    rh.count = impl_->cols.count();
    assemble(impl_->path, impl_->prefix, impl_->opts, static_cast<std::uint32_t>(storage::StoreKind::kRecordArray), rh,
             schema_->encode(), secs);
    if (impl_->opts.progress) impl_->opts.progress(rh.count);
    return rh.count;
}

// ---------------------------------------------------------------------------------------------------------
// MappingBuilder

namespace {
constexpr int kPartBits = 8;
constexpr std::size_t kParts = std::size_t{1} << kPartBits;
// Partition entry: u64 hash, u32 key length, u32 row length, key bytes, row bytes.
constexpr std::size_t kEntryHead = 16;
}  // namespace

struct MappingBuilder::Impl {
    std::string path, prefix;
    MappingOptions opts;
    const Schema& schema;
    std::vector<std::unique_ptr<TempFile>> parts;
    std::vector<std::string> bufs;
    std::size_t chunk;
    std::uint64_t n_in = 0;
    bool done = false;
    int temp_counter = 0;

    Impl(std::string p, const Schema& s, MappingOptions o)
        : path(std::move(p)), prefix(temp_prefix(path)), opts(std::move(o)), schema(s) {
        parts.resize(kParts);
        bufs.resize(kParts);
        chunk = std::clamp<std::uint64_t>(opts.memory_budget / 4 / kParts, 4096, kBufBytes);
    }
    ~Impl() { os::remove_with_prefix(prefix); }

    std::string temp_name(const char* what) { return prefix + what + std::to_string(temp_counter++); }

    void add(std::uint64_t h, std::string_view key, std::string_view row) {
        const std::size_t p = h >> (64 - kPartBits);
        std::string& b = bufs[p];
        const std::uint32_t kl = static_cast<std::uint32_t>(key.size()), rl = static_cast<std::uint32_t>(row.size());
        char head[kEntryHead];
        std::memcpy(head, &h, 8);
        std::memcpy(head + 8, &kl, 4);
        std::memcpy(head + 12, &rl, 4);
        b.append(head, kEntryHead);
        b.append(key);
        b.append(row);
        if (b.size() >= chunk) flush(p);
        ++n_in;
        if (opts.progress && (n_in & 0xFFFF) == 0) opts.progress(n_in);
    }
    void flush(std::size_t p) {
        if (!parts[p]) parts[p] = std::make_unique<TempFile>(temp_name("part"), opts.mode);
        parts[p]->append(bufs[p]);
        parts[p]->flush();
        bufs[p].clear();
    }
};

MappingBuilder::MappingBuilder(std::string path, SchemaPtr schema, MappingOptions options) : schema_(std::move(schema)) {
    os::check_path(path);  // before any temporary is made from it
    if (!schema_) throw_error(ErrorCode::kInvalidArgument, path, "MappingBuilder needs a schema");
    if (options.plain_values && (schema_->size() != 1 || schema_->field(0).name != "value"))
        throw_error(ErrorCode::kInvalidArgument, path, "plain values need a schema of one field named 'value'");
    impl_ = std::make_unique<Impl>(std::move(path), *schema_, std::move(options));
}

MappingBuilder::~MappingBuilder() = default;

std::uint64_t MappingBuilder::count() const noexcept { return impl_->n_in; }

void MappingBuilder::add_encoded(std::string_view key, std::string_view row) {
    if (impl_->done) throw_error(ErrorCode::kClosed, impl_->path, "builder already finished");
    if (key.empty()) throw_error(ErrorCode::kInvalidArgument, impl_->path, "empty key encoding");
    validate_row(*schema_, row);
    impl_->add(hash64(key.data(), key.size()), key, row);
}

void MappingBuilder::add_hashed(std::uint64_t hash, std::string_view row) {
    if (impl_->done) throw_error(ErrorCode::kClosed, impl_->path, "builder already finished");
    if (!impl_->opts.approximate) throw_error(ErrorCode::kInvalidArgument, impl_->path, "add_hashed needs an approximate map");
    validate_row(*schema_, row);
    impl_->add(hash, {}, row);
}

namespace {

struct Phase2 {
    std::function<std::string()> new_temp;
    const MappingOptions& o;
    ColumnsWriter& cols;
    containers::FrozenIndexWriter& index;

    void emit(std::uint64_t h, std::string_view key, std::string_view row) {
        index.add(h, key);
        cols.add(row);
    }

    // Sorts and emits the entries of one in-memory partition.
    void process(const std::string& data) {
        struct Ent {
            std::uint64_t hash;
            std::uint64_t off;
        };
        std::vector<Ent> ents;
        for (std::size_t p = 0; p < data.size();) {
            const auto h = load<std::uint64_t>(data.data() + p);
            const auto kl = load<std::uint32_t>(data.data() + p + 8), rl = load<std::uint32_t>(data.data() + p + 12);
            ents.push_back(Ent{h, p});
            p += kEntryHead + kl + rl;
        }
        auto key_of = [&](const Ent& e) {
            return std::string_view(data.data() + e.off + kEntryHead, load<std::uint32_t>(data.data() + e.off + 8));
        };
        auto row_of = [&](const Ent& e) {
            return std::string_view(data.data() + e.off + kEntryHead + load<std::uint32_t>(data.data() + e.off + 8),
                                    load<std::uint32_t>(data.data() + e.off + 12));
        };
        // Offsets increase with input order, so (hash, key, off) orders equal keys by arrival.
        std::sort(ents.begin(), ents.end(), [&](const Ent& a, const Ent& b) {
            if (a.hash != b.hash) return a.hash < b.hash;
            const int c = key_of(a).compare(key_of(b));
            return c != 0 ? c < 0 : a.off < b.off;
        });
        for (std::size_t i = 0; i < ents.size(); ++i) {
            if (!o.multi && i + 1 < ents.size() && ents[i + 1].hash == ents[i].hash && key_of(ents[i + 1]) == key_of(ents[i]))
                continue;  // a later value for the same key wins
            emit(ents[i].hash, key_of(ents[i]), row_of(ents[i]));
        }
    }

    // A partition file of `size` bytes whose entries share their top `shift` hash bits.
    void partition(const TempFile& f, int shift) {
        const std::uint64_t size = f.size();
        if (size <= o.memory_budget / 4 || shift + kPartBits > 64) {
            std::string data(size, '\0');
            if (f.file().pread(data.data(), size, 0) != size) throw_error(ErrorCode::kIo, f.path(), "short read");
            process(data);
            return;
        }
        // Split on the next hash bits, streaming.
        std::vector<std::unique_ptr<TempFile>> sub(kParts);
        std::string buf, carry;
        const std::size_t block = std::min<std::uint64_t>(o.memory_budget / 8, 64ull << 20);
        for (std::uint64_t done = 0; done < size;) {
            buf.assign(carry);
            const std::size_t want = std::min<std::uint64_t>(block, size - done);
            const std::size_t at = buf.size();
            buf.resize(at + want);
            if (f.file().pread(buf.data() + at, want, done) != want) throw_error(ErrorCode::kIo, f.path(), "short read");
            done += want;
            std::size_t p = 0;
            while (p + kEntryHead <= buf.size()) {
                const std::size_t len = kEntryHead + load<std::uint32_t>(buf.data() + p + 8) + load<std::uint32_t>(buf.data() + p + 12);
                if (p + len > buf.size()) break;
                const auto h = load<std::uint64_t>(buf.data() + p);
                const std::size_t s = (h << shift) >> (64 - kPartBits);
                if (!sub[s]) sub[s] = std::make_unique<TempFile>(new_temp(), o.mode);
                sub[s]->append(buf.data() + p, len);
                p += len;
            }
            carry.assign(buf, p, std::string::npos);
        }
        std::string().swap(buf);
        for (auto& s : sub)
            if (s) {
                s->flush();
                s->release_buffer();
            }
        for (auto& s : sub)
            if (s) {
                partition(*s, shift + kPartBits);
                const std::string name = s->path();
                s.reset();
                os::remove_file(name);
            }
    }
};

}  // namespace

std::uint64_t MappingBuilder::finish() {
    auto& im = *impl_;
    if (im.done) throw_error(ErrorCode::kClosed, im.path, "builder already finished");
    im.done = true;
    for (std::size_t p = 0; p < kParts; ++p)
        if (!im.bufs[p].empty()) im.flush(p);
    std::vector<std::string>().swap(im.bufs);
    for (auto& p : im.parts)
        if (p) p->release_buffer();
    const std::uint32_t bits = containers::FrozenIndex::bucket_bits_for(im.n_in);
    // The partitions hold every key, so their total size bounds the key heap: u32 key offsets fit below 4 GiB.
    std::uint64_t part_bytes = 0;
    for (auto& p : im.parts)
        if (p) part_bytes += p->size();
    const bool wide = !im.opts.approximate && (part_bytes >= (std::uint64_t{1} << 32) || im.opts.wide_keys);
    containers::FrozenIndexWriter index(im.prefix, im.opts.mode, im.opts.approximate, wide, bits);
    // Phase 2 holds one partition (<= memory_budget/4, plus its sort index) and the dedup cache at once.
    BuildOptions value_opts = im.opts;
    value_opts.dedup_budget = std::min(value_opts.dedup_budget, im.opts.memory_budget / 4);
    ColumnsWriter cols(*schema_, im.prefix + "v", value_opts);
    Phase2 ph{[&im] { return im.temp_name("sub"); }, im.opts, cols, index};
    for (auto& p : im.parts)
        if (p) {
            ph.partition(*p, kPartBits);
            const std::string name = p->path();
            p.reset();
            os::remove_file(name);
        }
    std::vector<std::tuple<std::uint32_t, std::uint32_t, TempFile*>> secs;
    cols.sections(secs);
    index.finish(secs);
    detail::RecordsHeader rh{};
    rh.count = index.count();
    rh.flags = (im.opts.multi ? detail::kFlagMulti : 0) | (im.opts.approximate ? detail::kFlagApproximate : 0) |
               (im.opts.plain_values ? detail::kFlagPlainValues : 0) | (wide ? detail::kFlagWideKeys : 0);
    rh.bucket_bits = bits;
    rh.key_kind = static_cast<std::uint8_t>(im.opts.key_kind);
    assemble(im.path, im.prefix, im.opts, static_cast<std::uint32_t>(storage::StoreKind::kMapping), rh,
             schema_->encode(), secs);
    if (im.opts.progress) im.opts.progress(im.n_in);
    return rh.count;
}

std::uint64_t merge(const Mapping& a, const Mapping& b, const std::string& out, BuildOptions options) {
    os::check_path(out);
    if (!(a.schema() == b.schema()) || a.multi() != b.multi() || a.approximate() != b.approximate() ||
        a.plain_values() != b.plain_values())
        throw_error(ErrorCode::kInvalidArgument, out, "merge: the mappings differ in schema or options");
    MappingOptions mo;
    static_cast<BuildOptions&>(mo) = std::move(options);
    mo.multi = a.multi();
    mo.approximate = a.approximate();
    mo.plain_values = a.plain_values();
    mo.key_kind = a.key_kind() == b.key_kind() ? a.key_kind() : KeyKind::kObject;
    MappingBuilder builder(out, std::make_shared<const Schema>(a.schema()), mo);
    for (const Mapping* m : {&a, &b})
        for (std::uint64_t e = 0; e < m->size(); ++e) {
            const std::string row = m->value(e).to_row();
            if (m->approximate()) {
                // The stored hash is the full 64-bit key hash.
                builder.add_hashed(m->key_hash_bits(e), row);
            } else {
                builder.add_encoded(m->key_encoded(e), row);
            }
        }
    return builder.finish();
}

}  // namespace mmstore
