/* apls-simple — the smallest complete program on the C API: load a model, tokenize a prompt,
 * generate greedily with a sampler chain, print the text.
 *
 *   apls-simple MODEL.gguf [PROMPT] [N_TOKENS]
 *
 * Every failing call prints the library's message (apls_last_error) and the program exits 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apls/apls.h"

/* Report a failed call and return non-zero, so that `if (fail(...)) goto done;` reads simply. */
static int failed(apls_status st, const char* what) {
    if (st == APLS_STATUS_OK) return 0;
    fprintf(stderr, "apls-simple: %s failed: %s (%s)\n", what, apls_last_error(), apls_status_name(st));
    return 1;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [PROMPT] [N_TOKENS]\n", argv[0]);
        return 2;
    }
    const char* path = argv[1];
    const char* prompt = argc > 2 ? argv[2] : "The three primary colors are";
    const int n_gen = argc > 3 ? atoi(argv[3]) : 32;
    if (n_gen <= 0) {
        fprintf(stderr, "apls-simple: N_TOKENS must be positive, got '%s'\n", argv[3]);
        return 2;
    }

    int rc = 1;
    apls_model* model = NULL;
    apls_context* ctx = NULL;
    apls_sampler* smpl = NULL;
    int32_t* tokens = NULL;

    if (failed(apls_model_load(path, apls_model_default_params(), &model), "loading the model")) goto done;

    /* Tokenize: ask for the count first (a NULL buffer with n_max 0 reports it in n_prompt). */
    int32_t n_prompt = 0;
    apls_status st = apls_tokenize(model, prompt, strlen(prompt), NULL, 0, true, false, &n_prompt);
    if (st != APLS_STATUS_OK && st != APLS_STATUS_INVALID_ARGUMENT) {
        failed(st, "tokenize");
        goto done;
    }
    tokens = malloc(sizeof(int32_t) * (size_t)(n_prompt + n_gen));
    if (!tokens) {
        fprintf(stderr, "apls-simple: out of memory\n");
        goto done;
    }
    if (failed(apls_tokenize(model, prompt, strlen(prompt), tokens, n_prompt, true, false, &n_prompt), "tokenize"))
        goto done;
    if (n_prompt == 0) {
        fprintf(stderr, "apls-simple: the prompt is empty\n");
        goto done;
    }

    apls_context_params cparams = apls_context_default_params();
    cparams.n_ctx = (uint32_t)(n_prompt + n_gen);
    if ((uint32_t)n_prompt > cparams.n_batch) cparams.n_batch = (uint32_t)n_prompt; /* one prefill batch */
    if (failed(apls_context_init(model, cparams, &ctx), "creating the context")) goto done;

    /* A sampler chain with only the greedy selector (same as apls_sampler_init with temperature 0). */
    if (failed(apls_sampler_chain_init(&smpl), "creating the sampler")) goto done;
    if (failed(apls_sampler_chain_add_greedy(smpl), "adding the greedy selector")) goto done;

    printf("%s", prompt);
    fflush(stdout);

    const int32_t n_vocab = apls_model_n_vocab(model);
    apls_batch batch = {0};
    batch.n_tokens = n_prompt; /* pos, seq_id, logits NULL: sequence 0, continue, last row only */
    batch.token = tokens;
    int n_done = 0;
    for (;;) {
        if (failed(apls_decode(ctx, &batch, NULL), "decode")) goto done;
        const float* logits = apls_get_logits_ith(ctx, 0);
        if (!logits) {
            failed(APLS_STATUS_INTERNAL, "reading the logits");
            goto done;
        }
        int32_t tok = -1;
        if (failed(apls_sampler_sample(smpl, logits, n_vocab, &tok), "sample")) goto done;
        if (failed(apls_sampler_accept(smpl, tok), "accept")) goto done;
        if (apls_token_is_eog(model, tok)) break;

        /* Print the piece. Pieces can split a UTF-8 character; a terminal copes with the bytes
         * arriving in two writes. */
        char piece[256];
        size_t len = 0;
        if (failed(apls_detokenize(model, &tok, 1, piece, sizeof piece, false, &len), "detokenize")) goto done;
        fwrite(piece, 1, len, stdout);
        fflush(stdout);

        tokens[n_prompt + n_done] = tok;
        if (++n_done == n_gen) break;
        batch.n_tokens = 1;
        batch.token = &tokens[n_prompt + n_done - 1];
    }
    printf("\n");
    fprintf(stderr, "apls-simple: %d prompt tokens, %d generated\n", n_prompt, n_done);
    rc = 0;

done:
    /* Free in reverse order: contexts before their model; every *_free accepts NULL. */
    apls_sampler_free(smpl);
    apls_context_free(ctx);
    apls_model_free(model);
    free(tokens);
    return rc;
}
