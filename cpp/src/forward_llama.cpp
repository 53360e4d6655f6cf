// forward_llama.cpp — pending
