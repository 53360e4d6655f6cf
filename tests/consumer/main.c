/* main.c — a consumer of the installed library: greedy generation through the C API.
 *
 *   apls_consumer MODEL.gguf [PROMPT] [N_TOKENS]
 *
 * Prints the generated token ids on one line ("ids: 1 2 3"), stopping early at an
 * end-of-generation token as apls.Model.generate does, and the text on a second line. The
 * Python test (tests/test_native.py) compares the ids with the Python API's greedy output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apls/apls.h>

static int check(apls_status st, const char* what) {
    if (st != APLS_STATUS_OK) fprintf(stderr, "apls_consumer: %s: %s\n", what, apls_last_error());
    return st != APLS_STATUS_OK;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [PROMPT] [N_TOKENS]\n", argv[0]);
        return 2;
    }
    const char* prompt = argc > 2 ? argv[2] : "The three primary colors are";
    const int n_gen = argc > 3 ? atoi(argv[3]) : 16;
    int rc = 1;
    apls_model* model = NULL;
    apls_context* ctx = NULL;
    apls_sampler* smpl = NULL;
    int32_t prompt_ids[512];
    int32_t out[1024];
    int32_t n_prompt = 0, n_out = 0;

    if (n_gen <= 0 || n_gen > 1024) {
        fprintf(stderr, "apls_consumer: N_TOKENS must be in [1, 1024]\n");
        return 2;
    }
    if (check(apls_model_load(argv[1], apls_model_default_params(), &model), "load")) goto done;
    if (check(apls_tokenize(model, prompt, strlen(prompt), prompt_ids, 512, true, false, &n_prompt), "tokenize"))
        goto done;

    apls_context_params cp = apls_context_default_params();
    cp.n_ctx = 2048;
    if (check(apls_context_init(model, cp, &ctx), "context")) goto done;
    apls_sampler_params sp = apls_sampler_default_params();
    sp.temperature = 0.0f; /* greedy */
    if (check(apls_sampler_init(&sp, &smpl), "sampler")) goto done;

    apls_batch b = {0};
    b.n_tokens = n_prompt;
    b.token = prompt_ids;
    while (n_out < n_gen) {
        if (check(apls_decode(ctx, &b, NULL), "decode")) goto done;
        int32_t tok = -1;
        if (check(apls_sampler_sample(smpl, apls_get_logits_ith(ctx, 0), apls_model_n_vocab(model), &tok), "sample"))
            goto done;
        if (check(apls_sampler_accept(smpl, tok), "accept")) goto done;
        if (apls_token_is_eog(model, tok)) break;
        out[n_out++] = tok;
        b.n_tokens = 1;
        b.token = &out[n_out - 1];
    }

    printf("ids:");
    for (int i = 0; i < n_out; i++) printf(" %d", out[i]);
    printf("\n");
    char text[8192];
    size_t len = 0;
    if (check(apls_detokenize(model, out, n_out, text, sizeof text - 1, false, &len), "detokenize")) goto done;
    text[len] = '\0';
    printf("text: %s\n", text);
    rc = 0;
done:
    apls_sampler_free(smpl);
    apls_context_free(ctx);
    apls_model_free(model);
    return rc;
}
