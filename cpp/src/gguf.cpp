// gguf.cpp — the validating GGUF reader (see gguf.h for the layout and the guarantees).
//
// Parsing walks the image once through a Cursor whose every read is checked against the end of
// the image. Counts claimed by the file (metadata pairs, tensors, array elements, string
// lengths) are checked against the bytes that remain *before* anything is allocated for them,
// using the smallest encoding an item can have, so a short file cannot make us reserve memory
// for billions of items.
#include "gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "common.h"

namespace apls::gguf {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32

// Smallest encoding of one element of type t: lets us reject absurd counts up front.
uint64_t min_encoded_size(ValueType t) {
    switch (t) {
        case ValueType::U8:
        case ValueType::I8:
        case ValueType::BOOL:
            return 1;
        case ValueType::U16:
        case ValueType::I16:
            return 2;
        case ValueType::U32:
        case ValueType::I32:
        case ValueType::F32:
            return 4;
        case ValueType::U64:
        case ValueType::I64:
        case ValueType::F64:
            return 8;
        case ValueType::STRING:
            return 8;   // u64 length, possibly empty
        case ValueType::ARRAY:
            return 12;   // u32 element type + u64 count
    }
    return 1;
}

bool valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::F64); }

std::string quoted(const std::string& s) { return "'" + s + "'"; }

}  // namespace

// Bounds-checked little-endian reads over [data, data + size).
class Cursor {
public:
    Cursor(const uint8_t* data, size_t size) : data_(data), size_(size) {}

    size_t pos() const { return pos_; }
    uint64_t remaining() const { return size_ - pos_; }

    // Throws unless n more bytes exist; `what` says what we were reading.
    void need(uint64_t n, const std::string& what) const {
        if (n > remaining())
            fail(APLS_STATUS_FORMAT, "truncated file: need ", n, " bytes for ", what, " at offset ",
                 static_cast<uint64_t>(pos_), ", but the file has ", static_cast<uint64_t>(size_), " bytes");
    }

    template <typename T>
    T read(const std::string& what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, data_ + pos_, sizeof(T));  // unaligned-safe; the host is little-endian
        pos_ += sizeof(T);
        return v;
    }

    // A GGUF string: u64 length then bytes. `where` names the key or tensor for messages.
    std::string read_string(const std::string& what, const std::string& where) {
        uint64_t len = read<uint64_t>(what + " length" + where);
        if (len > remaining())
            fail(APLS_STATUS_FORMAT, "string length ", len, " past the end of the file", where, " (", remaining(),
                 " bytes remain at offset ", static_cast<uint64_t>(pos_), ")");
        std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
        pos_ += static_cast<size_t>(len);
        return s;
    }

    // Whether `count` items of at least `min_item_bytes` each could fit in the remaining bytes.
    bool could_hold(uint64_t count, uint64_t min_item_bytes) const {
        uint64_t total;
        return !mul_overflows(count, min_item_bytes, &total) && total <= remaining();
    }

private:
    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
};

// ---- values --------------------------------------------------------------------------------

const char* value_type_name(ValueType t) {
    switch (t) {
        case ValueType::U8:
            return "UINT8";
        case ValueType::I8:
            return "INT8";
        case ValueType::U16:
            return "UINT16";
        case ValueType::I16:
            return "INT16";
        case ValueType::U32:
            return "UINT32";
        case ValueType::I32:
            return "INT32";
        case ValueType::F32:
            return "FLOAT32";
        case ValueType::BOOL:
            return "BOOL";
        case ValueType::STRING:
            return "STRING";
        case ValueType::ARRAY:
            return "ARRAY";
        case ValueType::U64:
            return "UINT64";
        case ValueType::I64:
            return "INT64";
        case ValueType::F64:
            return "FLOAT64";
    }
    return "?";
}

bool Value::is_integer() const {
    switch (type) {
        case ValueType::U8:
        case ValueType::I8:
        case ValueType::U16:
        case ValueType::I16:
        case ValueType::U32:
        case ValueType::I32:
        case ValueType::U64:
        case ValueType::I64:
            return true;
        default:
            return false;
    }
}

bool Value::is_float() const { return type == ValueType::F32 || type == ValueType::F64; }

static bool is_signed(ValueType t) {
    return t == ValueType::I8 || t == ValueType::I16 || t == ValueType::I32 || t == ValueType::I64;
}

std::string Value::type_string() const {
    if (type != ValueType::ARRAY) return value_type_name(type);
    return apls::str("ARRAY[", value_type_name(elem_type), "]");
}

[[noreturn]] static void wrong_type(const Value& v, const std::string& key, const char* wanted) {
    fail(APLS_STATUS_FORMAT, "key '", key, "' has type ", v.type_string(), ", expected ", wanted);
}

uint64_t Value::as_u64(const std::string& key) const {
    if (!is_integer()) wrong_type(*this, key, "an integer");
    if (is_signed(type) && scalar.i < 0)
        fail(APLS_STATUS_FORMAT, "key '", key, "' is negative (", scalar.i, "), expected an unsigned value");
    return scalar.u;
}

int64_t Value::as_i64(const std::string& key) const {
    if (!is_integer()) wrong_type(*this, key, "an integer");
    if (!is_signed(type) && scalar.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(APLS_STATUS_FORMAT, "key '", key, "' value ", scalar.u, " does not fit in int64");
    return scalar.i;
}

double Value::as_f64(const std::string& key) const {
    if (is_float()) return scalar.f;
    if (is_integer()) return is_signed(type) ? static_cast<double>(scalar.i) : static_cast<double>(scalar.u);
    wrong_type(*this, key, "a number");
}

bool Value::as_bool(const std::string& key) const {
    if (type != ValueType::BOOL) wrong_type(*this, key, "BOOL");
    return scalar.b;
}

const std::string& Value::as_string(const std::string& key) const {
    if (type != ValueType::STRING) wrong_type(*this, key, "STRING");
    return str;
}

// ---- parsing -------------------------------------------------------------------------------

namespace {

// Reads one value of type t; `where` (" at key 'k'") names the key for messages; `budget`
// counts array elements left under kMaxArrayElements.
void read_value(Cursor& c, ValueType t, Value& out, const std::string& where, int depth, uint64_t& budget) {
    out.type = t;
    out.scalar.u = 0;
    switch (t) {
        case ValueType::U8:
            out.scalar.u = c.read<uint8_t>("UINT8 value" + where);
            return;
        case ValueType::I8:
            out.scalar.i = c.read<int8_t>("INT8 value" + where);
            return;
        case ValueType::U16:
            out.scalar.u = c.read<uint16_t>("UINT16 value" + where);
            return;
        case ValueType::I16:
            out.scalar.i = c.read<int16_t>("INT16 value" + where);
            return;
        case ValueType::U32:
            out.scalar.u = c.read<uint32_t>("UINT32 value" + where);
            return;
        case ValueType::I32:
            out.scalar.i = c.read<int32_t>("INT32 value" + where);
            return;
        case ValueType::U64:
            out.scalar.u = c.read<uint64_t>("UINT64 value" + where);
            return;
        case ValueType::I64:
            out.scalar.i = c.read<int64_t>("INT64 value" + where);
            return;
        case ValueType::F32:
            out.scalar.f = c.read<float>("FLOAT32 value" + where);
            return;
        case ValueType::F64:
            out.scalar.f = c.read<double>("FLOAT64 value" + where);
            return;
        case ValueType::BOOL: {
            uint8_t b = c.read<uint8_t>("BOOL value" + where);
            if (b > 1) fail(APLS_STATUS_FORMAT, "bad bool value ", static_cast<uint32_t>(b), where);
            out.scalar.b = b != 0;
            return;
        }
        case ValueType::STRING:
            out.str = c.read_string("string", where);
            return;
        case ValueType::ARRAY:
            break;
    }
    // Arrays: u32 element type, u64 count, elements. Depth is bounded so that a file of nested
    // arrays cannot exhaust the stack.
    if (depth >= kMaxArrayDepth) fail(APLS_STATUS_FORMAT, "arrays nested deeper than ", kMaxArrayDepth, where);
    uint32_t et = c.read<uint32_t>("array element type" + where);
    if (!valid_value_type(et)) fail(APLS_STATUS_FORMAT, "unknown metadata value type ", et, " in array", where);
    out.elem_type = static_cast<ValueType>(et);
    uint64_t n = c.read<uint64_t>("array length" + where);
    if (!c.could_hold(n, min_encoded_size(out.elem_type)))
        fail(APLS_STATUS_FORMAT, "array of ", n, " ", value_type_name(out.elem_type), " elements", where,
             " runs past the end of the file (", c.remaining(), " bytes remain)");
    if (n > budget)
        fail(APLS_STATUS_FORMAT, "too many metadata array elements", where, " (limit ", kMaxArrayElements,
             " over the file)");
    budget -= n;
    out.arr.resize(static_cast<size_t>(n));
    for (Value& e : out.arr) read_value(c, out.elem_type, e, where, depth + 1, budget);
}

}  // namespace

void File::parse_metadata(Cursor& c, uint64_t n_kv) {
    // Smallest pair: empty key (8) + type (4) + a one-byte value.
    if (!c.could_hold(n_kv, 13))
        fail(APLS_STATUS_FORMAT, "metadata count ", n_kv, " is absurd: the file has ", c.remaining(),
             " bytes left and each pair needs at least 13");
    kv_.reserve(static_cast<size_t>(n_kv));
    uint64_t budget = kMaxArrayElements;
    for (uint64_t i = 0; i < n_kv; i++) {
        std::string key = c.read_string("key", str(" of metadata entry ", i));
        std::string where = " at key " + quoted(key);
        if (kv_index_.count(key)) fail(APLS_STATUS_FORMAT, "duplicate key ", quoted(key));
        uint32_t t = c.read<uint32_t>("value type" + where);
        if (!valid_value_type(t)) fail(APLS_STATUS_FORMAT, "unknown metadata value type ", t, where);
        Value v;
        read_value(c, static_cast<ValueType>(t), v, where, 0, budget);
        kv_index_.emplace(key, kv_.size());
        kv_.emplace_back(std::move(key), std::move(v));
    }
}

void File::parse_tensor_infos(Cursor& c, uint64_t n_tensors) {
    // Smallest tensor info: empty name (8) + n_dims (4) + type (4) + offset (8).
    if (!c.could_hold(n_tensors, 24))
        fail(APLS_STATUS_FORMAT, "tensor count ", n_tensors, " is absurd: the file has ", c.remaining(),
             " bytes left and each tensor info needs at least 24");
    tensors_.reserve(static_cast<size_t>(n_tensors));
    for (uint64_t i = 0; i < n_tensors; i++) {
        TensorInfo ti;
        ti.name = c.read_string("tensor name", str(" of tensor info ", i));
        std::string who = "tensor " + quoted(ti.name);
        if (ti.name.size() > kMaxTensorName)
            fail(APLS_STATUS_FORMAT, who, " name too long (", static_cast<uint64_t>(ti.name.size()), " bytes, at most ",
                 static_cast<uint64_t>(kMaxTensorName), ")");
        if (tensor_index_.count(ti.name)) fail(APLS_STATUS_FORMAT, "duplicate tensor name ", quoted(ti.name));
        uint32_t n_dims = c.read<uint32_t>("n_dims of " + who);
        if (n_dims > kMaxDims) fail(APLS_STATUS_FORMAT, who, " has ", n_dims, " dimensions (at most ", kMaxDims, ")");
        // n_elements in uint64 must also fit int64 (ggml's int64 ne); overflow-checked per dim.
        uint64_t n_el = 1;
        bool overflow = false;
        for (uint32_t d = 0; d < n_dims; d++) {
            int64_t ne = c.read<int64_t>(str("ne[", d, "] of ", who));
            if (ne < 0) fail(APLS_STATUS_FORMAT, who, " has negative dimension ne[", d, "] = ", ne);
            ti.ne.push_back(ne);
            overflow = overflow || mul_overflows(n_el, static_cast<uint64_t>(ne), &n_el);
        }
        if (overflow || n_el > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            fail(APLS_STATUS_FORMAT, who, " dimension overflow (element count does not fit in 64 bits)");
        ti.n_elements = n_el;
        uint32_t type = c.read<uint32_t>("type of " + who);
        TypeTraits tt = type_traits(type);
        if (!tt.name) fail(APLS_STATUS_FORMAT, who, " has unknown type ", type);
        ti.type = static_cast<TensorType>(type);
        uint64_t ne0 = ti.ne.empty() ? 1 : static_cast<uint64_t>(ti.ne[0]);
        if (ne0 % tt.block != 0)
            fail(APLS_STATUS_FORMAT, who, " ne[0] not a multiple of the block size (ne[0] = ", ne0, ", ", tt.name,
                 " blocks hold ", tt.block, ")");
        // ne[0] is a multiple of the block, so n_el is too.
        if (mul_overflows(n_el / tt.block, tt.bytes, &ti.n_bytes))
            fail(APLS_STATUS_FORMAT, who, " dimension overflow (byte size does not fit in 64 bits)");
        ti.offset = c.read<uint64_t>("offset of " + who);
        tensor_index_.emplace(ti.name, tensors_.size());
        tensors_.push_back(std::move(ti));
    }
}

void File::apply_alignment() {
    const Value* v = find("general.alignment");
    if (!v) return;  // GGUF's default, 32 (alignment_'s initial value)
    // ggml and gguf-py both insist on UINT32 here.
    if (v->type != ValueType::U32)
        fail(APLS_STATUS_FORMAT, "bad alignment: general.alignment has type ", v->type_string(), ", expected UINT32");
    uint64_t a = v->scalar.u;
    if (a == 0 || (a & (a - 1)) != 0)
        fail(APLS_STATUS_FORMAT, "bad alignment ", a, ": general.alignment must be a nonzero power of two");
    alignment_ = a;
}

void File::validate_tensor_data() {
    uint64_t section = size_ - data_offset_;
    for (TensorInfo& ti : tensors_) {
        if (ti.offset % alignment_ != 0)
            fail(APLS_STATUS_FORMAT, "tensor ", quoted(ti.name), " offset not aligned (offset ", ti.offset,
                 ", alignment ", alignment_, ")");
        uint64_t end;
        if (add_overflows(ti.offset, ti.n_bytes, &end) || end > section)
            fail(APLS_STATUS_FORMAT, "tensor ", quoted(ti.name), " data [", ti.offset, ", ", ti.offset, "+", ti.n_bytes,
                 ") past the end of the data section (", section, " bytes)");
        ti.data = base_ + data_offset_ + ti.offset;
    }
    // Overlap: sweep in offset order, remembering the tensor that reaches furthest so far.
    std::vector<const TensorInfo*> order;
    for (const TensorInfo& ti : tensors_)
        if (ti.n_bytes > 0) order.push_back(&ti);
    std::sort(order.begin(), order.end(),
              [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
    const TensorInfo* reach = nullptr;
    for (const TensorInfo* ti : order) {
        if (reach && reach->offset + reach->n_bytes > ti->offset)
            fail(APLS_STATUS_FORMAT, "tensors ", quoted(reach->name), " and ", quoted(ti->name), " overlap");
        if (!reach || ti->offset + ti->n_bytes > reach->offset + reach->n_bytes) reach = ti;
    }
}

void File::parse() {
    Cursor c(base_, size_);
    uint32_t magic = c.read<uint32_t>("the magic");
    if (magic != kMagic) fail(APLS_STATUS_FORMAT, "bad magic: not a GGUF file");
    uint32_t version = c.read<uint32_t>("the version");
    // A big-endian file's version 2 or 3 reads as 0x02000000 / 0x03000000 here.
    if (version == 0x02000000u || version == 0x03000000u) fail(APLS_STATUS_FORMAT, "big-endian GGUF is not supported");
    if (version == 1)
        fail(APLS_STATUS_FORMAT, "unsupported GGUF version 1 (v1 used 32-bit counts; re-convert the model)");
    if (version != 2 && version != 3) fail(APLS_STATUS_FORMAT, "unsupported GGUF version ", version);
    version_ = version;
    uint64_t n_tensors = c.read<uint64_t>("the tensor count");
    uint64_t n_kv = c.read<uint64_t>("the metadata count");
    parse_metadata(c, n_kv);
    parse_tensor_infos(c, n_tensors);
    apply_alignment();

    uint64_t end_of_infos = c.pos();
    uint64_t pad = (alignment_ - end_of_infos % alignment_) % alignment_;
    if (add_overflows(end_of_infos, pad, &data_offset_)) fail(APLS_STATUS_FORMAT, "bad alignment ", alignment_);
    if (data_offset_ > size_) {
        // Without tensors there is no data section, and writers may omit the final padding.
        if (!tensors_.empty())
            fail(APLS_STATUS_FORMAT, "truncated file: the data section starts at ", data_offset_, " but the file has ",
                 static_cast<uint64_t>(size_), " bytes");
        data_offset_ = size_;
    }
    validate_tensor_data();
}

// ---- opening -------------------------------------------------------------------------------

File::~File() {
    if (map_) munmap(map_, size_);
}

void File::release(const uint8_t* p, uint64_t n) const {
    if (!map_ || p < base_ || n > size_ || p - base_ > static_cast<ptrdiff_t>(size_ - n)) return;
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
    const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
    if (b < e) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);  // a hint: failure changes nothing
}

std::unique_ptr<File> File::from_memory(const uint8_t* data, size_t size) {
    std::unique_ptr<File> f(new File());
    f->base_ = data;
    f->size_ = size;
    f->parse();
    return f;
}

namespace {

struct Fd {
    int fd;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

[[noreturn]] void io_fail(const char* what, const std::string& path) {
    fail(APLS_STATUS_IO, "cannot ", what, " '", path, "': ", std::strerror(errno));
}

}  // namespace

std::unique_ptr<File> File::open(const std::string& path, bool use_mmap) {
    Fd fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (fd.fd < 0) io_fail("open", path);
    struct stat st;
    if (fstat(fd.fd, &st) != 0) io_fail("stat", path);
    if (!S_ISREG(st.st_mode)) fail(APLS_STATUS_IO, "cannot open '", path, "': not a regular file");
    size_t size = static_cast<size_t>(st.st_size);

    std::unique_ptr<File> f(new File());
    f->path_ = path;
    f->size_ = size;  // before mapping: the destructor unmaps size_ bytes
    if (size == 0) {
        // mmap refuses length 0; an empty image still parses to "truncated file".
    } else if (use_mmap) {
        void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.fd, 0);
        if (p == MAP_FAILED) io_fail("map", path);
        f->map_ = p;
        f->base_ = static_cast<const uint8_t*>(p);
    } else {
        f->owned_.resize(size);
        size_t got = 0;
        while (got < size) {
            ssize_t r = ::read(fd.fd, f->owned_.data() + got, size - got);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) io_fail("read", path);
            if (r == 0) fail(APLS_STATUS_IO, "cannot read '", path, "': file shrank while reading");
            got += static_cast<size_t>(r);
        }
        f->base_ = f->owned_.data();
    }
    f->parse();
    return f;
}

// ---- lookups -------------------------------------------------------------------------------

const Value* File::find(const std::string& key) const {
    auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

static const Value& require(const File& f, const std::string& key) {
    const Value* v = f.find(key);
    if (!v) fail(APLS_STATUS_FORMAT, "missing key '", key, "'");
    return *v;
}

uint64_t File::get_u64(const std::string& key) const { return require(*this, key).as_u64(key); }

uint64_t File::get_u64_or(const std::string& key, uint64_t def) const {
    const Value* v = find(key);
    return v ? v->as_u64(key) : def;
}

double File::get_f64_or(const std::string& key, double def) const {
    const Value* v = find(key);
    return v ? v->as_f64(key) : def;
}

bool File::get_bool_or(const std::string& key, bool def) const {
    const Value* v = find(key);
    return v ? v->as_bool(key) : def;
}

std::string File::get_string(const std::string& key) const { return require(*this, key).as_string(key); }

std::string File::get_string_or(const std::string& key, const std::string& def) const {
    const Value* v = find(key);
    return v ? v->as_string(key) : def;
}

const std::vector<Value>* File::get_array(const std::string& key) const {
    const Value* v = find(key);
    if (!v) return nullptr;
    if (v->type != ValueType::ARRAY) wrong_type(*v, key, "ARRAY");
    return &v->arr;
}

const TensorInfo* File::find_tensor(const std::string& name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

uint64_t TensorInfo::row_bytes() const {
    TypeTraits tt = type_traits(type);
    uint64_t ne0 = ne.empty() ? 1 : static_cast<uint64_t>(ne[0]);
    return ne0 / tt.block * tt.bytes;  // validated at parse time: no overflow, exact division
}

}  // namespace apls::gguf
