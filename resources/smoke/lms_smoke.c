/* lms_smoke: the smoke test's host program (LM Studio Unlocked, app/core/builder/hostprog.py).
 *
 * Loads a backend folder's own llama library (libllama.so / llama.dll: the template's, kept) by its path, the
 * way LM Studio's engine does, so the loader finds the ggml libraries next to it (RUNPATH $ORIGIN on Linux,
 * the DLL's own folder on Windows). It loads a GGUF model, generates N tokens greedily, prints the prompt and
 * the text on stdout and, on stderr, every loaded llama/ggml library's path and "decoded N tokens".
 *
 * Nothing is linked at build time: functions are looked up with dlsym/GetProcAddress, typed from their
 * declarations with __typeof__ (gcc, clang, zig cc, mingw-w64). Two ways to get the declarations:
 *  - the tag's own include/llama.h (the normal case: the build has the source tree);
 *  - -DLMS_SMOKE_OPAQUE, no header: every parameter struct is an opaque blob obtained from the library's own
 *    *_default_params() and passed back unchanged. Structs larger than 16 bytes are returned through a hidden
 *    pointer and passed in memory on both Win64 and x86-64 System V, so an oversized blob works for any
 *    version's layout (docs/build-anywhere.md). Used for a folder whose llama.cpp header we do not have.
 *
 * usage: lms_smoke --lib LIBRARY -m MODEL [-n N] [-ngl LAYERS] [PROMPT]     exit 0: N tokens generated
 * (-ngl: layers to offload to a GPU backend; header mode only, the opaque mode keeps the library's default)
 */
#if !defined(_WIN32) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* dladdr, dl_iterate_phdr */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <dlfcn.h>
#include <link.h>
#endif

#ifdef LMS_SMOKE_OPAQUE
#include <stdbool.h>
#include <stdint.h>
typedef struct { unsigned char bytes[1024]; } lms_blob; /* larger than any version's parameter structs */
typedef int32_t llama_token;
struct llama_model;
struct llama_context;
struct llama_vocab;
struct llama_sampler;
void llama_backend_init(void);
lms_blob llama_model_default_params(void);
lms_blob llama_context_default_params(void);
struct llama_model *llama_model_load_from_file(const char *path, lms_blob params);
struct llama_context *llama_init_from_model(struct llama_model *model, lms_blob params);
const struct llama_vocab *llama_model_get_vocab(const struct llama_model *model);
int32_t llama_tokenize(const struct llama_vocab *vocab, const char *text, int32_t text_len,
                                  llama_token *tokens, int32_t n_tokens_max, bool add_special, bool parse_special);
lms_blob llama_batch_get_one(llama_token *tokens, int32_t n_tokens);
int32_t llama_decode(struct llama_context *ctx, lms_blob batch);
/* llama_sampler_chain_params is { bool no_perf; }: small enough to go in a register, so it is spelled out. */
struct llama_sampler_chain_params { bool no_perf; };
struct llama_sampler_chain_params llama_sampler_chain_default_params(void);
struct llama_sampler *llama_sampler_chain_init(struct llama_sampler_chain_params params);
void llama_sampler_chain_add(struct llama_sampler *chain, struct llama_sampler *smpl);
struct llama_sampler *llama_sampler_init_greedy(void);
llama_token llama_sampler_sample(struct llama_sampler *smpl, struct llama_context *ctx, int32_t idx);
bool llama_vocab_is_eog(const struct llama_vocab *vocab, llama_token token);
int32_t llama_token_to_piece(const struct llama_vocab *vocab, llama_token token, char *buf,
                                        int32_t length, int32_t lstrip, bool special);
void llama_sampler_free(struct llama_sampler *smpl);
void llama_free(struct llama_context *ctx);
void llama_model_free(struct llama_model *model);
typedef lms_blob lms_model_params;
typedef lms_blob lms_context_params;
typedef lms_blob lms_batch;
#else
#include "llama.h"
typedef struct llama_model_params lms_model_params;
typedef struct llama_context_params lms_context_params;
typedef struct llama_batch lms_batch;
#endif


/* Every function used, looked up by name in the loaded library. */
#define LMS_FUNCTIONS(X)                                                                                          \
    X(llama_backend_init) X(llama_model_default_params) X(llama_context_default_params)                          \
    X(llama_model_load_from_file) X(llama_init_from_model) X(llama_model_get_vocab) X(llama_tokenize)             \
    X(llama_batch_get_one) X(llama_decode) X(llama_sampler_chain_default_params) X(llama_sampler_chain_init)      \
    X(llama_sampler_chain_add) X(llama_sampler_init_greedy) X(llama_sampler_sample) X(llama_vocab_is_eog)         \
    X(llama_token_to_piece) X(llama_sampler_free) X(llama_free) X(llama_model_free)
#define LMS_DECLARE(name) static __typeof__(&name) p_##name;
LMS_FUNCTIONS(LMS_DECLARE)

#ifdef _WIN32
static HMODULE lib;
static void *lms_sym(const char *name) { return (void *)GetProcAddress(lib, name); }
static int lms_open(const char *path) {
    /* LOAD_WITH_ALTERED_SEARCH_PATH: the DLL's dependencies are looked up in its own folder first. */
    lib = LoadLibraryExA(path, NULL, LOAD_WITH_ALTERED_SEARCH_PATH);
    if (lib == NULL) {
        fprintf(stderr, "lms_smoke: error: cannot load %s (Windows error %lu)\n", path, (unsigned long)GetLastError());
    }
    return lib != NULL;
}
typedef BOOL(WINAPI *lms_enum_fn)(HANDLE, HMODULE *, DWORD, LPDWORD);
static void lms_print_loaded(void) {
    lms_enum_fn en = (lms_enum_fn)(void *)GetProcAddress(GetModuleHandleA("kernel32.dll"), "K32EnumProcessModules");
    HMODULE mods[512];
    DWORD need = 0;
    if (en == NULL || !en(GetCurrentProcess(), mods, sizeof(mods), &need)) {
        return;
    }
    for (DWORD i = 0; i < need / sizeof(HMODULE) && i < 512; i++) {
        char path[MAX_PATH] = {0};
        if (GetModuleFileNameA(mods[i], path, sizeof(path))) {
            const char *base = strrchr(path, '\\');
            base = base ? base + 1 : path;
            if (strstr(base, "ggml") || strstr(base, "llama")) {
                fprintf(stderr, "lms_smoke: loaded %s\n", path);
            }
        }
    }
}
#else
static void *lib;
static void *lms_sym(const char *name) { return dlsym(lib, name); }
static int lms_open(const char *path) {
    lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "lms_smoke: error: cannot load %s: %s\n", path, dlerror());
    }
    return lib != NULL;
}
static int lms_print_one(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    (void)data;
    const char *base = info->dlpi_name ? strrchr(info->dlpi_name, '/') : NULL;
    if (base && (strstr(base, "ggml") || strstr(base, "llama"))) {
        fprintf(stderr, "lms_smoke: loaded %s\n", info->dlpi_name);
    }
    return 0;
}
static void lms_print_loaded(void) { dl_iterate_phdr(lms_print_one, NULL); }
#endif

int main(int argc, char **argv) {
    const char *lib_path = NULL;
    const char *model_path = NULL;
    const char *prompt = "Once upon a time";
    int n_predict = 16;
    int ngl = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-ngl") == 0 && i + 1 < argc) {
            ngl = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--lib") == 0 && i + 1 < argc) {
            lib_path = argv[++i];
        } else if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) {
            model_path = argv[++i];
        } else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            n_predict = atoi(argv[++i]);
        } else {
            prompt = argv[i];
        }
    }
    if (lib_path == NULL || model_path == NULL || n_predict < 1) {
        fprintf(stderr, "usage: %s --lib LIBRARY -m MODEL [-n N] [PROMPT]\n", argv[0]);
        return 2;
    }
    if (!lms_open(lib_path)) {
        return 3;
    }
#define LMS_RESOLVE(name)                                                                                          \
    p_##name = (__typeof__(&name))lms_sym(#name);                                                                 \
    if (p_##name == NULL) {                                                                                       \
        fprintf(stderr, "lms_smoke: error: %s does not export %s\n", lib_path, #name);                            \
        return 3;                                                                                                 \
    }
    LMS_FUNCTIONS(LMS_RESOLVE)

    p_llama_backend_init();
    lms_model_params mparams = p_llama_model_default_params();
#ifndef LMS_SMOKE_OPAQUE
    if (ngl >= 0) {
        mparams.n_gpu_layers = ngl;
    }
#else
    (void)ngl;
#endif
    struct llama_model *model = p_llama_model_load_from_file(model_path, mparams);
    lms_print_loaded();
    if (model == NULL) {
        fprintf(stderr, "lms_smoke: error: unable to load model %s\n", model_path);
        return 1;
    }
    const struct llama_vocab *vocab = p_llama_model_get_vocab(model);
    int32_t len = (int32_t)strlen(prompt);
    int32_t n_prompt = -p_llama_tokenize(vocab, prompt, len, NULL, 0, true, true);
    llama_token *tokens = n_prompt > 0 ? (llama_token *)calloc((size_t)n_prompt, sizeof(llama_token)) : NULL;
    if (tokens == NULL || p_llama_tokenize(vocab, prompt, len, tokens, n_prompt, true, true) < 0) {
        fprintf(stderr, "lms_smoke: error: failed to tokenize the prompt\n");
        return 1;
    }
    lms_context_params cparams = p_llama_context_default_params();
    struct llama_context *ctx = p_llama_init_from_model(model, cparams);
    if (ctx == NULL) {
        fprintf(stderr, "lms_smoke: error: failed to create the llama_context\n");
        return 1;
    }
    struct llama_sampler *smpl = p_llama_sampler_chain_init(p_llama_sampler_chain_default_params());
    p_llama_sampler_chain_add(smpl, p_llama_sampler_init_greedy());

    printf("%s", prompt);
    lms_batch batch = p_llama_batch_get_one(tokens, n_prompt);
    llama_token next;
    int n_decode = 0;
    while (n_decode < n_predict) {
        if (p_llama_decode(ctx, batch) != 0) {
            fprintf(stderr, "lms_smoke: error: llama_decode failed after %d tokens\n", n_decode);
            return 1;
        }
        next = p_llama_sampler_sample(smpl, ctx, -1);
        if (p_llama_vocab_is_eog(vocab, next)) {
            break; /* counted like llama-simple: end-of-generation is not a decoded token */
        }
        n_decode += 1;
        char buf[128];
        int n = p_llama_token_to_piece(vocab, next, buf, sizeof(buf), 0, true);
        if (n < 0) {
            fprintf(stderr, "lms_smoke: error: failed to convert token %d to text\n", (int)next);
            return 1;
        }
        fwrite(buf, 1, (size_t)n, stdout);
        batch = p_llama_batch_get_one(&next, 1);
    }
    printf("\n");
    fflush(stdout);
    fprintf(stderr, "lms_smoke: decoded %d tokens\n", n_decode);
    p_llama_sampler_free(smpl);
    p_llama_free(ctx);
    p_llama_model_free(model);
    free(tokens);
    return 0;
}
