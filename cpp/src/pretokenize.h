// pretokenize.h — the regex pre-tokenizers of byte-level BPE models, as hand-written matchers.
//
// Each splits text into pieces that BPE then encodes independently. The regexes (facts from the
// models' tokenizer.json files):
//   Gpt2   : 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   SmolLM : every \p{N} code point split off alone (Digits(individual_digits=True)), then Gpt2
//            on the text between them
//   Llama3 : (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
//            | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   Qwen2  : as Llama3 with \p{N} instead of \p{N}{1,3}
// Every regex matches somewhere at every position, so the pieces cover the text exactly.
// Invalid UTF-8 bytes count as code points of no class (they match [^\s\p{L}\p{N}]).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace apls {

enum class PreTokenizer { Gpt2, SmolLM, Llama3, Qwen2 };

// The pre-tokenizer of a tokenizer.ggml.pre name; false if there is none by that name.
// "default" is the GPT-2 regex.
bool pretokenizer_from_name(const std::string& name, PreTokenizer* out);

// The pieces of `text`, in order; their concatenation is `text`.
std::vector<std::string_view> pretokenize(PreTokenizer type, std::string_view text);

}  // namespace apls
