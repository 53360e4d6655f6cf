// gguf.cpp — pending
