// fuzz_gguf.cpp — the GGUF reader on arbitrary bytes: parse and validate the image, read every
// metadata value through the typed getters, touch every tensor's first and last byte, fill the
// hyperparameters, load the tokenizer, and load the whole model through the C API (weights and
// tensor table checked) and decode one token with it.
//
// Invariants beyond "no crash, no sanitizer report": every refusal is an apls::Error whose
// status is FORMAT or UNSUPPORTED (never INTERNAL, never another exception) with a non-empty
// message; every accepted tensor lies inside the data section.
#include <sys/mman.h>
#include <unistd.h>

#include <memory>

#include "apls/apls.h"
#include "fuzz_util.h"
#include "gguf.h"
#include "hparams.h"
#include "vocab.h"

namespace {

using apls_fuzz::Bytes;

void expect_refusal(const apls::Error& e, const char* stage) {
    FUZZ_CHECK(e.status() == APLS_STATUS_FORMAT || e.status() == APLS_STATUS_UNSUPPORTED,
               std::string(stage) + " refused with status " + apls_status_name(e.status()) + ": " + e.what());
    FUZZ_CHECK(e.what()[0] != 0, std::string(stage) + " refused without a message");
}

// Every typed getter on one value: each either returns or throws FORMAT naming the key.
void read_value(const apls::gguf::Value& v, const std::string& key, int depth) {
    (void)v.type_string();
    try {
        (void)v.as_u64(key);
    } catch (const apls::Error& e) {
        expect_refusal(e, "as_u64");
    }
    try {
        (void)v.as_i64(key);
    } catch (const apls::Error& e) {
        expect_refusal(e, "as_i64");
    }
    try {
        (void)v.as_f64(key);
    } catch (const apls::Error& e) {
        expect_refusal(e, "as_f64");
    }
    try {
        (void)v.as_bool(key);
    } catch (const apls::Error& e) {
        expect_refusal(e, "as_bool");
    }
    try {
        (void)v.as_string(key);
    } catch (const apls::Error& e) {
        expect_refusal(e, "as_string");
    }
    FUZZ_CHECK(depth <= apls::gguf::kMaxArrayDepth, "array nesting past the limit was accepted");
    for (const auto& e : v.arr) {
        FUZZ_CHECK(e.type == v.elem_type, "array element of another type than the array's");
        read_value(e, key, depth + 1);
    }
}

void check_file(const apls::gguf::File& f, const uint8_t* data, size_t size) {
    for (const auto& kv : f.metadata()) {
        FUZZ_CHECK(f.find(kv.first) == &kv.second, "lookup by key finds another entry");
        read_value(kv.second, kv.first, 0);
    }
    FUZZ_CHECK(f.data_offset() <= size, "data section starts past the end");
    for (const auto& t : f.tensors()) {
        FUZZ_CHECK(f.find_tensor(t.name) == &t, "lookup by name finds another tensor");
        FUZZ_CHECK(t.offset % f.alignment() == 0, "unaligned tensor accepted");
        FUZZ_CHECK(t.data >= data + f.data_offset() && t.n_bytes <= size_t(data + size - t.data),
                   "tensor '" + t.name + "' outside the data section");
        (void)t.row_bytes();
        if (t.n_bytes > 0) {  // ASan sees these reads: the image is exactly the fuzzer's buffer
            volatile uint8_t first = t.data[0], last = t.data[t.n_bytes - 1];
            (void)first;
            (void)last;
        }
    }
}

void use_vocab(const apls::Vocab& v) {
    static const char* const kTexts[] = {"Hello world, 123!", "<|im_start|>user\n\xff\xfe<s> </s>", " \t\n  x"};
    for (const char* t : kTexts) {
        for (bool special : {false, true}) {
            std::vector<int32_t> ids = v.tokenize(t, true, special);
            for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < v.n_tokens(), "token id out of range");
            (void)v.detokenize(ids, special);
        }
    }
    for (int32_t id = 0; id < v.n_tokens() && id < 512; ++id) (void)v.token_to_piece(id, true);
}

// The C API path: the image as a file (read, not mapped, so ASan sees the buffer's end).
void load_model(const uint8_t* data, size_t size) {
    static int fd = memfd_create("fuzz_gguf", 0);
    static const std::string path = "/proc/self/fd/" + std::to_string(fd);
    if (fd < 0 || ftruncate(fd, 0) != 0 || (size > 0 && pwrite(fd, data, size, 0) != ssize_t(size))) {
        std::perror("memfd");
        std::abort();
    }
    apls_model_params mp = apls_model_default_params();
    mp.use_mmap = false;
    apls_model* m = nullptr;
    apls_status st = apls_model_load(path.c_str(), mp, &m);
    if (st != APLS_STATUS_OK) {
        FUZZ_CHECK(st == APLS_STATUS_FORMAT || st == APLS_STATUS_UNSUPPORTED,
                   std::string("apls_model_load: ") + apls_status_name(st) + ": " + apls_last_error());
        FUZZ_CHECK(m == nullptr && apls_last_error()[0] != 0, "failed load without a message");
        return;
    }
    char buf[64];
    (void)apls_model_meta_val_str(m, "general.architecture", buf, sizeof(buf));
    apls_context_params cp = apls_context_default_params();
    cp.n_ctx = 16;
    cp.n_batch = 4;
    cp.n_threads = 1;
    apls_context* ctx = nullptr;
    st = apls_context_init(m, cp, &ctx);
    if (st == APLS_STATUS_OK) {
        const int32_t tok[2] = {0, apls_model_n_vocab(m) - 1};
        apls_batch b = {2, tok, nullptr, nullptr, nullptr, nullptr};
        st = apls_decode(ctx, &b, nullptr);
        FUZZ_CHECK(st == APLS_STATUS_OK, std::string("decode on a loaded model: ") + apls_last_error());
        const float* row = apls_get_logits_ith(ctx, 0);
        FUZZ_CHECK(row != nullptr, "no logits row after a decode");
        volatile float last = row[apls_model_n_vocab(m) - 1];
        (void)last;
        apls_context_free(ctx);
    } else {
        FUZZ_CHECK(st != APLS_STATUS_INTERNAL, std::string("context init: ") + apls_last_error());
    }
    apls_model_free(m);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::unique_ptr<apls::gguf::File> f;
    try {
        f = apls::gguf::File::from_memory(data, size);
    } catch (const apls::Error& e) {
        expect_refusal(e, "gguf parse");
        return 0;
    }
    check_file(*f, data, size);
    try {
        (void)apls::HParams::from_gguf(*f);
    } catch (const apls::Error& e) {
        expect_refusal(e, "hparams");
    }
    if (f->find("tokenizer.ggml.model")) {
        try {
            use_vocab(*apls::Vocab::from_gguf(*f));
        } catch (const apls::Error& e) {
            expect_refusal(e, "vocab");
        }
    }
    if (f->find("general.architecture")) load_model(data, size);
    return 0;
}
