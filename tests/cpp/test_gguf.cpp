// test_gguf.cpp — the GGUF reader against images built byte by byte here: every value type
// round-trips, and every class of malformed file is refused with its own message. Run under
// ASan/UBSan (-DAPLS_SANITIZE=ON) the truncation and byte-flip sweeps also prove that no input
// makes the reader touch memory outside the image.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "check.h"
#include "common.h"
#include "gguf.h"

using namespace apls;
using namespace apls::gguf;

namespace {

// ---- a tiny GGUF writer --------------------------------------------------------------------

struct Bytes {
    std::vector<uint8_t> b;
    template <typename T>
    Bytes& put(T v) {
        uint8_t tmp[sizeof(T)];
        std::memcpy(tmp, &v, sizeof(T));
        b.insert(b.end(), tmp, tmp + sizeof(T));
        return *this;
    }
    Bytes& u8(uint8_t v) { return put(v); }
    Bytes& u32(uint32_t v) { return put(v); }
    Bytes& u64(uint64_t v) { return put(v); }
    Bytes& s(const std::string& v) {
        u64(v.size());
        b.insert(b.end(), v.begin(), v.end());
        return *this;
    }
    Bytes& raw(const std::vector<uint8_t>& v) {
        b.insert(b.end(), v.begin(), v.end());
        return *this;
    }
};

// A metadata pair: key, type id, and the encoded value that follows the type.
struct Kv {
    std::string key;
    uint32_t type;
    std::vector<uint8_t> value;
};
// A tensor info, with dims as raw u64 so tests can write negative or huge ones.
struct Ti {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    uint64_t offset;
};

template <typename T>
std::vector<uint8_t> enc(T v) {
    return Bytes().put(v).b;
}
std::vector<uint8_t> enc_str(const std::string& v) { return Bytes().s(v).b; }
// ARRAY payload: element type, count, then the already-encoded elements.
std::vector<uint8_t> enc_arr(uint32_t elem_type, uint64_t n, const std::vector<uint8_t>& elems) {
    return Bytes().u32(elem_type).u64(n).raw(elems).b;
}

Kv kv_u32(const std::string& k, uint32_t v) { return {k, 4, enc(v)}; }
Kv kv_str(const std::string& k, const std::string& v) { return {k, 8, enc_str(v)}; }

struct Image {
    uint32_t version = 3;
    std::vector<Kv> kv;
    std::vector<Ti> ti;
    uint64_t alignment = 32;          // where to pad to (the file's key must agree for a valid file)
    std::vector<uint8_t> data;        // the data section, as is (no trailing pad)
    std::optional<uint64_t> n_tensors_claim;  // claim another count than ti.size()
    std::optional<uint64_t> n_kv_claim;

    std::vector<uint8_t> bytes() const {
        Bytes w;
        w.u32(0x46554747).u32(version);
        w.u64(n_tensors_claim.value_or(ti.size()));
        w.u64(n_kv_claim.value_or(kv.size()));
        for (const Kv& p : kv) w.s(p.key).u32(p.type).raw(p.value);
        for (const Ti& t : ti) {
            w.s(t.name).u32(static_cast<uint32_t>(t.ne.size()));
            for (uint64_t d : t.ne) w.u64(d);
            w.u32(t.type).u64(t.offset);
        }
        while (w.b.size() % alignment) w.u8(0);
        return w.raw(data).b;
    }
};

// The image must outlive the File: keep both together.
struct Parsed {
    std::vector<uint8_t> img;
    std::unique_ptr<File> f;
};
Parsed load(const std::vector<uint8_t>& img) {
    Parsed p{img, nullptr};
    p.f = File::from_memory(p.img.data(), p.img.size());
    return p;
}

// One F32 tensor [4, 2] at 0 and one Q8_0 tensor [32] at 32: a valid base for tensor tests.
Image two_tensors() {
    Image im;
    im.kv = {kv_str("general.architecture", "llama")};
    im.ti = {{"a", {4, 2}, 0, 0}, {"b", {32}, 8, 32}};
    im.data.resize(32 + 34);
    for (size_t i = 0; i < im.data.size(); i++) im.data[i] = static_cast<uint8_t>(i * 7 + 1);
    return im;
}

#define REFUSED(image, substr) CHECK_THROWS(load((image).bytes()), APLS_STATUS_FORMAT, substr)

}  // namespace

// ---- round trips ---------------------------------------------------------------------------

static Image every_type(uint32_t version) {
    Image im;
    im.version = version;
    im.kv = {
        {"u8", 0, enc<uint8_t>(200)},
        {"i8", 1, enc<int8_t>(-100)},
        {"u16", 2, enc<uint16_t>(60000)},
        {"i16", 3, enc<int16_t>(-30000)},
        {"u32", 4, enc<uint32_t>(4000000000u)},
        {"i32", 5, enc<int32_t>(-2000000000)},
        {"f32", 6, enc<float>(1.5f)},
        {"bool_t", 7, enc<uint8_t>(1)},
        {"bool_f", 7, enc<uint8_t>(0)},
        {"str", 8, enc_str("h\xc3\xa9llo")},
        {"empty_str", 8, enc_str("")},
        {"u64", 10, enc<uint64_t>(18000000000000000000ull)},
        {"i64", 11, enc<int64_t>(-9000000000000000000ll)},
        {"f64", 12, enc<double>(-2.25e300)},
        {"arr_i32", 9, enc_arr(5, 3, Bytes().put<int32_t>(-1).put<int32_t>(0).put<int32_t>(7).b)},
        {"arr_str", 9, enc_arr(8, 2, Bytes().s("a").s("bc").b)},
        {"arr_empty", 9, enc_arr(6, 0, {})},
        // [[1, 2], [], [3]] as arrays of UINT16
        {"arr_nested", 9,
         enc_arr(9, 3,
                 Bytes()
                     .raw(enc_arr(2, 2, Bytes().put<uint16_t>(1).put<uint16_t>(2).b))
                     .raw(enc_arr(2, 0, {}))
                     .raw(enc_arr(2, 1, enc<uint16_t>(3)))
                     .b)},
        {"arr_bool", 9, enc_arr(7, 2, {1, 0})},
        {"arr_f64", 9, enc_arr(12, 1, enc<double>(0.125))},
    };
    return im;
}

APLS_TEST(round_trip_every_value_type_v2_v3) {
    for (uint32_t version : {2u, 3u}) {
        Parsed p = load(every_type(version).bytes());
        const File& f = *p.f;
        CHECK(f.version() == version);
        CHECK(f.alignment() == 32);
        CHECK(f.metadata().size() == 20);
        CHECK(f.metadata()[0].first == "u8" && f.metadata()[19].first == "arr_f64");  // file order
        CHECK(f.get_u64("u8") == 200);
        CHECK(f.find("i8")->as_i64("i8") == -100);
        CHECK(f.get_u64("u16") == 60000);
        CHECK(f.find("i16")->as_i64("i16") == -30000);
        CHECK(f.get_u64("u32") == 4000000000u);
        CHECK(f.find("i32")->as_i64("i32") == -2000000000);
        CHECK(f.find("f32")->type == ValueType::F32 && f.get_f64_or("f32", 0) == 1.5);
        CHECK(f.get_bool_or("bool_t", false) == true && f.get_bool_or("bool_f", true) == false);
        CHECK(f.get_string("str") == "h\xc3\xa9llo" && f.get_string("empty_str").empty());
        CHECK(f.get_u64("u64") == 18000000000000000000ull);
        CHECK(f.find("i64")->as_i64("i64") == -9000000000000000000ll);
        CHECK(f.get_f64_or("f64", 0) == -2.25e300);
        const std::vector<Value>* a = f.get_array("arr_i32");
        CHECK(a && a->size() == 3 && (*a)[0].as_i64("x") == -1 && (*a)[2].as_i64("x") == 7);
        CHECK(f.find("arr_i32")->elem_type == ValueType::I32);
        CHECK(f.find("arr_i32")->type_string() == "ARRAY[INT32]");
        a = f.get_array("arr_str");
        CHECK(a && a->size() == 2 && (*a)[1].as_string("x") == "bc");
        CHECK(f.get_array("arr_empty")->empty() && f.find("arr_empty")->elem_type == ValueType::F32);
        const Value* n = f.find("arr_nested");
        CHECK(n->type_string() == "ARRAY[ARRAY]" && n->arr.size() == 3);
        CHECK(n->arr[0].elem_type == ValueType::U16 && n->arr[0].arr.size() == 2 && n->arr[0].arr[1].scalar.u == 2);
        CHECK(n->arr[1].arr.empty() && n->arr[2].arr[0].scalar.u == 3);
        CHECK(f.get_array("arr_bool")->at(0).as_bool("x") && !f.get_array("arr_bool")->at(1).as_bool("x"));
        CHECK(f.get_array("arr_f64")->at(0).as_f64("x") == 0.125);
        CHECK(f.tensors().empty() && f.data_section_size() == 0);
        // Absent keys and wrong types.
        CHECK(f.find("nope") == nullptr && f.get_array("nope") == nullptr);
        CHECK(f.get_u64_or("nope", 5) == 5 && f.get_string_or("nope", "d") == "d");
        CHECK_THROWS(f.get_u64("nope"), APLS_STATUS_FORMAT, "missing key 'nope'");
        CHECK_THROWS(f.get_u64("str"), APLS_STATUS_FORMAT, "key 'str' has type STRING");
        CHECK_THROWS(f.get_u64("i8"), APLS_STATUS_FORMAT, "'i8' is negative");
        CHECK_THROWS(f.find("u64")->as_i64("u64"), APLS_STATUS_FORMAT, "does not fit in int64");
        CHECK_THROWS(f.get_string("u8"), APLS_STATUS_FORMAT, "expected STRING");
        CHECK_THROWS(f.get_bool_or("u8", false), APLS_STATUS_FORMAT, "expected BOOL");
        CHECK_THROWS(f.get_array("u8"), APLS_STATUS_FORMAT, "expected ARRAY");
    }
}

APLS_TEST(tensor_table_and_data) {
    Image im = two_tensors();
    Parsed p = load(im.bytes());
    const File& f = *p.f;
    CHECK(f.tensors().size() == 2);
    const TensorInfo* a = f.find_tensor("a");
    const TensorInfo* b = f.find_tensor("b");
    CHECK(a && b && !f.find_tensor("c"));
    CHECK(a->ne == std::vector<int64_t>({4, 2}) && a->type == TensorType::F32);
    CHECK(a->n_elements == 8 && a->n_bytes == 32 && a->row_bytes() == 16 && a->offset == 0);
    CHECK(b->ne == std::vector<int64_t>({32}) && b->type == TensorType::Q8_0);
    CHECK(b->n_elements == 32 && b->n_bytes == 34 && b->row_bytes() == 34 && b->offset == 32);
    CHECK(f.data_offset() % 32 == 0 && f.data_section_size() == 66);
    CHECK(f.data_offset() + f.data_section_size() == p.img.size());
    CHECK(a->data == f.data_section() && std::memcmp(b->data, im.data.data() + 32, 34) == 0);
    CHECK(std::memcmp(f.data_section(), p.img.data() + f.data_offset(), 66) == 0);
}

APLS_TEST(custom_alignment_zero_dims_and_empty_tensors) {
    Image im;
    im.alignment = 64;
    im.kv = {kv_u32("general.alignment", 64)};
    // A 0-dim (scalar) F32, an empty tensor, and one at offset 64.
    im.ti = {{"scalar", {}, 0, 0}, {"empty", {0, 3}, 0, 64}, {"v", {2}, 1, 64}};
    im.data.resize(68);
    Parsed p = load(im.bytes());
    CHECK(p.f->alignment() == 64 && p.f->data_offset() % 64 == 0);
    CHECK(p.f->find_tensor("scalar")->n_elements == 1 && p.f->find_tensor("scalar")->n_bytes == 4);
    CHECK(p.f->find_tensor("empty")->n_bytes == 0 && p.f->find_tensor("v")->n_bytes == 4);
}

APLS_TEST(no_tensors_without_final_padding) {
    Image im;
    im.kv = {kv_str("k", "v")};
    std::vector<uint8_t> img = im.bytes();
    while (img.back() == 0) img.pop_back();  // a writer that stopped after the metadata
    Parsed p = load(img);
    CHECK(p.f->tensors().empty() && p.f->data_section_size() == 0);
}

APLS_TEST(nesting_at_the_limit_is_fine) {
    std::vector<uint8_t> v = enc_arr(0, 1, {42});
    for (int d = 1; d < kMaxArrayDepth; d++) v = enc_arr(9, 1, v);  // kMaxArrayDepth arrays in all
    Image im;
    im.kv = {{"deep", 9, v}};
    Parsed p = load(im.bytes());
    const Value* x = p.f->find("deep");
    for (int d = 0; d < kMaxArrayDepth; d++) x = &x->arr.at(0);
    CHECK(x->type == ValueType::U8 && x->scalar.u == 42);
}

// ---- malformed files -----------------------------------------------------------------------

APLS_TEST(refuses_bad_header) {
    std::vector<uint8_t> img = every_type(3).bytes();
    img[0] = 'X';
    CHECK_THROWS(load(img), APLS_STATUS_FORMAT, "bad magic");
    Image im = every_type(3);
    im.version = 4;
    REFUSED(im, "unsupported GGUF version 4");
    im.version = 0;
    REFUSED(im, "unsupported GGUF version 0");
    im.version = 1;
    REFUSED(im, "unsupported GGUF version 1");
    im.version = 0x03000000;  // version 3 written big-endian
    REFUSED(im, "big-endian GGUF is not supported");
    im.version = 0x02000000;
    REFUSED(im, "big-endian GGUF is not supported");
    CHECK_THROWS(File::from_memory(nullptr, 0), APLS_STATUS_FORMAT, "truncated file");
}

APLS_TEST(refuses_absurd_counts_before_allocating) {
    Image im = two_tensors();
    im.n_tensors_claim = uint64_t(1) << 40;
    REFUSED(im, "tensor count 1099511627776 is absurd");
    im = two_tensors();
    im.n_kv_claim = uint64_t(1) << 40;
    REFUSED(im, "metadata count 1099511627776 is absurd");
    im = two_tensors();
    im.n_kv_claim = ~uint64_t(0) - 1;  // the count * 13 overflows
    REFUSED(im, "metadata count 18446744073709551614 is absurd");
    im = Image();
    im.alignment = 1;  // no padding: the file ends right after the header
    im.n_tensors_claim = 1;
    REFUSED(im, "tensor count 1 is absurd");
    // 2^40-entry arrays of each element size, including strings and arrays.
    for (uint32_t et : {0u, 4u, 8u, 9u, 12u}) {
        Image a;
        a.kv = {{"big", 9, enc_arr(et, uint64_t(1) << 40, {})}};
        REFUSED(a, "array of 1099511627776 ");
        REFUSED(a, "at key 'big' runs past the end of the file");
    }
    // A 10 GB string value, a 2^64-1 string, and a key whose length runs past the end.
    Image s;
    s.kv = {{"s", 8, Bytes().u64(10000000000ull).raw({'a', 'b'}).b}};
    REFUSED(s, "string length 10000000000 past the end of the file at key 's'");
    s.kv = {{"s", 8, Bytes().u64(~0ull).b}};
    REFUSED(s, "string length 18446744073709551615 past the end of the file at key 's'");
    std::vector<uint8_t> img =
        Bytes().u32(0x46554747).u32(3).u64(0).u64(1).u64(1ull << 62).raw(std::vector<uint8_t>(16, 'k')).b;
    CHECK_THROWS(load(img), APLS_STATUS_FORMAT,
                 "string length 4611686018427387904 past the end of the file of metadata entry 0");
    // An array element string that runs past the end names the key.
    Image e;
    e.kv = {{"toks", 9, enc_arr(8, 2, Bytes().s("ok").u64(1000).b)}};
    REFUSED(e, "string length 1000 past the end of the file at key 'toks'");
}

APLS_TEST(refuses_too_many_array_elements_in_total) {
    // Two arrays that each fit the file but together exceed the element budget.
    uint64_t half = kMaxArrayElements / 2 + 1;
    std::vector<uint8_t> zeros(half, 0);
    Image im;
    im.kv = {{"a", 9, enc_arr(0, half, zeros)}, {"b", 9, enc_arr(0, half, zeros)}};
    REFUSED(im, "too many metadata array elements at key 'b'");
}

APLS_TEST(refuses_bad_metadata) {
    Image im;
    im.kv = {{"k", 13, enc<uint32_t>(0)}};
    REFUSED(im, "unknown metadata value type 13 at key 'k'");
    im.kv = {{"k", 0xFFFFFFFFu, {}}};
    REFUSED(im, "unknown metadata value type 4294967295 at key 'k'");
    im.kv = {{"k", 9, enc_arr(77, 0, {})}};
    REFUSED(im, "unknown metadata value type 77 in array at key 'k'");
    im.kv = {kv_u32("k", 1), kv_str("x", "y"), kv_str("k", "again")};
    REFUSED(im, "duplicate key 'k'");
    im.kv = {{"flag", 7, {2}}};
    REFUSED(im, "bad bool value 2 at key 'flag'");
    // kMaxArrayDepth + 1 nested arrays.
    std::vector<uint8_t> v = enc_arr(0, 1, {1});
    for (int d = 0; d < kMaxArrayDepth; d++) v = enc_arr(9, 1, v);
    im.kv = {{"deep", 9, v}};
    REFUSED(im, "arrays nested deeper than 8 at key 'deep'");
    // A million-deep nest must fail at the limit, not overflow the stack.
    Bytes deep;
    for (int d = 0; d < 1000000; d++) deep.u32(9).u64(1);
    im.kv = {{"deeper", 9, deep.b}};
    REFUSED(im, "arrays nested deeper than 8 at key 'deeper'");
}

APLS_TEST(refuses_bad_alignment) {
    Image im = two_tensors();
    im.kv.push_back(kv_u32("general.alignment", 0));
    REFUSED(im, "bad alignment 0");
    im.kv.back() = kv_u32("general.alignment", 24);
    REFUSED(im, "bad alignment 24: general.alignment must be a nonzero power of two");
    im.kv.back() = {"general.alignment", 10, enc<uint64_t>(32)};
    REFUSED(im, "bad alignment: general.alignment has type UINT64, expected UINT32");
    im.kv.back() = kv_u32("general.alignment", 0x80000000u);  // valid, but the data is not there
    REFUSED(im, "truncated file: the data section starts at");
}

APLS_TEST(refuses_bad_tensor_infos) {
    Image im = two_tensors();
    im.ti[1].ne = {32, 1, 1, 1, 1};
    REFUSED(im, "tensor 'b' has 5 dimensions (at most 4)");
    im = two_tensors();
    im.ti[0].ne = {4, uint64_t(-5)};
    REFUSED(im, "tensor 'a' has negative dimension ne[1] = -5");
    im = two_tensors();
    im.ti[0].ne = {1ull << 32, 1ull << 32, 2};  // 2^65 elements
    REFUSED(im, "tensor 'a' dimension overflow");
    im.ti[0].ne = {1ull << 62, 2};  // 2^63: fits u64 but not ggml's int64
    REFUSED(im, "tensor 'a' dimension overflow");
    im.ti[0].ne = {1ull << 62};
    im.ti[0].type = 28;  // F64: 2^62 * 8 bytes overflows
    REFUSED(im, "tensor 'a' dimension overflow");
    im = two_tensors();
    im.ti[0].type = 77;
    REFUSED(im, "tensor 'a' has unknown type 77");
    im.ti[0].type = 4;  // the retired Q4_2
    REFUSED(im, "tensor 'a' has unknown type 4");
    im = two_tensors();
    im.ti[1].ne = {33};
    REFUSED(im, "tensor 'b' ne[0] not a multiple of the block size");
    im.ti[1].ne = {16, 2};  // 32 elements, but rows of 16
    REFUSED(im, "tensor 'b' ne[0] not a multiple of the block size");
    im = two_tensors();
    im.ti[1].name = "a";
    REFUSED(im, "duplicate tensor name 'a'");
    im = two_tensors();
    im.ti[1].name = std::string(65, 'n');
    REFUSED(im, "name too long");
    im = two_tensors();
    im.ti[1].offset = 33;
    REFUSED(im, "tensor 'b' offset not aligned");
    im = two_tensors();
    im.ti[1].offset = 64;
    REFUSED(im, "tensor 'b' data [64, 64+34) past the end of the data section (66 bytes)");
    im.ti[1].offset = ~0ull - 31;  // aligned, and offset + n_bytes overflows
    REFUSED(im, "tensor 'b' data [");
    im = two_tensors();
    im.ti[0].ne = {1ull << 60};  // a 2^60-element tensor in a 66-byte data section
    REFUSED(im, "tensor 'a' data [0, 0+4611686018427387904) past the end of the data section");
    im = two_tensors();
    im.ti[1].offset = 0;
    REFUSED(im, "tensors 'a' and 'b' overlap");
    // A big tensor overlapping a later one that does not touch its immediate successor.
    im = two_tensors();
    im.data.resize(200);
    im.ti = {{"big", {40}, 0, 0}, {"x", {2}, 0, 32}, {"y", {2}, 0, 128}, {"z", {2}, 0, 96}};
    REFUSED(im, "tensors 'big' and 'x' overlap");
    im.ti[0].ne = {8};  // big now ends at 32: only z/y order matters and they are disjoint
    Parsed ok = load(im.bytes());
    CHECK(ok.f->tensors().size() == 4);
}

// ---- robustness sweeps (meaningful under ASan/UBSan) --------------------------------------

static Image sweep_image() {
    Image im = two_tensors();
    im.kv.push_back({"toks", 9, enc_arr(8, 3, Bytes().s("a").s("").s("xyz").b)});
    im.kv.push_back(
        {"nest", 9, enc_arr(9, 2, Bytes().raw(enc_arr(4, 1, enc<uint32_t>(9))).raw(enc_arr(8, 1, enc_str("q"))).b)});
    im.kv.push_back({"f", 6, enc<float>(0.5f)});
    im.kv.push_back({"b", 7, {1}});
    return im;
}

APLS_TEST(every_truncation_is_refused) {
    std::vector<uint8_t> full = sweep_image().bytes();
    Parsed whole = load(full);
    CHECK(whole.f->tensors().size() == 2);
    for (size_t n = 0; n < full.size(); n++) {
        std::vector<uint8_t> cut(full.begin(), full.begin() + n);  // exactly n bytes on the heap
        CHECK_THROWS(File::from_memory(cut.data(), cut.size()), APLS_STATUS_FORMAT, "");
    }
}

APLS_TEST(byte_flips_never_crash) {
    std::vector<uint8_t> full = sweep_image().bytes();
    int accepted = 0, refused = 0;
    for (size_t i = 0; i < full.size(); i++) {
        for (uint8_t x : {uint8_t(0x00), uint8_t(0xFF), uint8_t(0x80), uint8_t(full[i] ^ 1), uint8_t(full[i] + 40)}) {
            std::vector<uint8_t> img(full);
            img[i] = x;
            try {
                File::from_memory(img.data(), img.size());
                accepted++;
            } catch (const Error& e) {
                CHECK(e.status() == APLS_STATUS_FORMAT);
                refused++;
            }
        }
    }
    CHECK(accepted > 0 && refused > 0);
}

// ---- files ---------------------------------------------------------------------------------

APLS_TEST(open_maps_or_reads_files) {
    std::vector<uint8_t> img = sweep_image().bytes();
    char path[] = "/tmp/apls_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, img.data(), img.size()) == static_cast<ssize_t>(img.size()));
    close(fd);
    for (bool mmap : {true, false}) {
        auto f = File::open(path, mmap);
        CHECK(f->path() == path && f->file_size() == img.size());
        CHECK(f->get_string("general.architecture") == "llama");
        CHECK(std::memcmp(f->find_tensor("b")->data, img.data() + f->data_offset() + 32, 34) == 0);
    }
    // A malformed file on disk: FORMAT, with the file unmapped again (ASan's leak check).
    img[0] = 'g';
    FILE* fp = std::fopen(path, "wb");
    std::fwrite(img.data(), 1, img.size(), fp);
    std::fclose(fp);
    CHECK_THROWS(File::open(path), APLS_STATUS_FORMAT, "bad magic");
    CHECK_THROWS(File::open(path, false), APLS_STATUS_FORMAT, "bad magic");
    fp = std::fopen(path, "wb");
    std::fclose(fp);
    CHECK_THROWS(File::open(path), APLS_STATUS_FORMAT, "truncated file");
    unlink(path);
    CHECK_THROWS(File::open(path), APLS_STATUS_IO, "cannot open");
    CHECK_THROWS(File::open("/tmp"), APLS_STATUS_IO, "not a regular file");
}

APLS_TEST_MAIN()
