// gguf.h — a validating, memory-mapped GGUF (v2, v3) reader.
//
// File layout (little-endian): magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, then n_kv
// metadata pairs (string key, u32 value type, value), then n_tensors tensor infos (string name,
// u32 n_dims, u64 ne[n_dims], u32 type, u64 offset), padding to general.alignment (default 32),
// then the data section. Tensor offsets are relative to the data section and aligned.
//
// Every read is bounds-checked against the mapping: whatever a file holds, the reader either
// returns a fully validated File or throws apls::Error(APLS_STATUS_FORMAT / _IO) with a message
// that names the problem (and the key or tensor concerned). Nothing is allocated from a size the
// file claims before that size is checked against the bytes actually present.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ggml_types.h"

namespace apls::gguf {

enum class ValueType : uint32_t {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    BOOL = 7,
    STRING = 8,
    ARRAY = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
};
// The names gguf-py uses ("UINT32", "FLOAT32", "ARRAY"); "?" for ids that are not a type.
const char* value_type_name(ValueType t);

// Limits that keep a hostile file from exhausting the stack or memory.
constexpr uint32_t kMaxDims = 4;                 // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;                // nesting of ARRAY values
constexpr size_t kMaxTensorName = 64;            // GGML_MAX_NAME, as the GGUF spec requires
// Every array element becomes an 80-byte Value, so a file could make us allocate 80x its size;
// the largest real tokenizers (256k vocab + merges) hold ~1.3M elements over the whole file.
constexpr uint64_t kMaxArrayElements = uint64_t(1) << 22;

// One metadata value. Scalars live in the union; strings in `str`; arrays in `arr`, every
// element of type `elem_type` (arrays may nest).
struct Value {
    ValueType type = ValueType::U8;
    union {
        uint64_t u;
        int64_t i;
        double f;
        bool b;
    } scalar{};
    std::string str;
    ValueType elem_type = ValueType::U8;
    std::vector<Value> arr;

    bool is_integer() const;
    bool is_float() const;
    // "UINT32", "STRING", "ARRAY[STRING]", "ARRAY[ARRAY]"...
    std::string type_string() const;
    // Conversions that throw APLS_STATUS_FORMAT naming `key` when the type does not fit.
    uint64_t as_u64(const std::string& key) const;
    int64_t as_i64(const std::string& key) const;
    double as_f64(const std::string& key) const;
    bool as_bool(const std::string& key) const;
    const std::string& as_string(const std::string& key) const;
};

struct TensorInfo {
    std::string name;
    std::vector<int64_t> ne;   // ne[0] is the contiguous (innermost) dimension, as in ggml
    TensorType type;
    uint64_t offset = 0;       // relative to the data section
    uint64_t n_elements = 0;
    uint64_t n_bytes = 0;      // validated: offset + n_bytes <= data section size
    const uint8_t* data = nullptr;  // into the mapping
    uint64_t row_bytes() const;     // bytes of one ne[0]-row
};

class Cursor;  // gguf.cpp: bounds-checked reads over the image

class File {
public:
    // Map (or, with use_mmap = false, read into an owned buffer) and validate a file. Throws
    // apls::Error (APLS_STATUS_IO if it cannot be opened, APLS_STATUS_FORMAT if malformed).
    static std::unique_ptr<File> open(const std::string& path, bool use_mmap = true);
    // Validate an in-memory image (not copied; must outlive the File). Used by the fuzzers.
    static std::unique_ptr<File> from_memory(const uint8_t* data, size_t size);
    ~File();
    File(const File&) = delete;
    File& operator=(const File&) = delete;

    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    const std::string& path() const { return path_; }

    // Metadata in file order; lookup by key.
    const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
    const Value* find(const std::string& key) const;
    // Typed getters: throw APLS_STATUS_FORMAT naming the key if present with a wrong type;
    // the *_or forms return `def` when absent, the plain forms throw when absent.
    uint64_t get_u64(const std::string& key) const;
    uint64_t get_u64_or(const std::string& key, uint64_t def) const;
    double get_f64_or(const std::string& key, double def) const;
    bool get_bool_or(const std::string& key, bool def) const;
    std::string get_string(const std::string& key) const;
    std::string get_string_or(const std::string& key, const std::string& def) const;
    const std::vector<Value>* get_array(const std::string& key) const;  // nullptr when absent

    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const TensorInfo* find_tensor(const std::string& name) const;

    uint64_t file_size() const { return size_; }
    uint64_t data_offset() const { return data_offset_; }  // start of the data section in the file
    const uint8_t* data_section() const { return base_ + data_offset_; }
    uint64_t data_section_size() const { return size_ - data_offset_; }
    // A hint that [p, p + n) (inside the image) will not be read for a while: when the file is
    // mapped, the whole pages within it are dropped from this process (madvise DONTNEED; a later
    // read maps them from the file again, unchanged). Nothing when the bytes are owned or borrowed.
    void release(const uint8_t* p, uint64_t n) const;

private:
    File() = default;
    void parse();
    void parse_metadata(Cursor& c, uint64_t n_kv);
    void parse_tensor_infos(Cursor& c, uint64_t n_tensors);
    void apply_alignment();
    void validate_tensor_data();

    std::string path_;
    const uint8_t* base_ = nullptr;
    size_t size_ = 0;
    void* map_ = nullptr;       // non-null when we own an mmap (of size_ bytes)
    std::vector<uint8_t> owned_;  // the file's bytes when not mapped
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;   // GGUF's default when general.alignment is absent
    uint64_t data_offset_ = 0;
    std::vector<std::pair<std::string, Value>> kv_;
    std::unordered_map<std::string, size_t> kv_index_;
    std::vector<TensorInfo> tensors_;
    std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace apls::gguf
